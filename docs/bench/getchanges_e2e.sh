#!/bin/bash
# getChanges end to end against a syncd binary (docs/benchmarks.md):
#   docs/bench/getchanges_e2e.sh SYNCD_BINARY LABEL
# Starts SYNCD_BINARY (-auth trust) on a scratch database (gc_e2e_LABEL) and vhost
# ($VHOST, default gc_e2e); for 10,000 and then 100,000 items, creates a user whose
# personal workspace a device fills through the protocol (folders of 99 files with two
# chunks each, commits of 1,000 items), then sends N (default 20) getChanges of it
# unchanged (all but the first from the server's cache), then N more, each right after
# a real commit of one new file (committed, notified, then the timed request).
# FILL=sql writes the items straight into the read model instead (same shape, at
# workspace version 0; the workspace itself, the user and the commits are real): the
# server then holds no decided state of those items, so its RSS is that of getChanges.
# DECODE=fast|json also decodes each unchanged reply as a device would (untimed in the
# latencies, its p50 reported apart; see getchanges_e2e.go).
set -euo pipefail
BIN=$1; LABEL=$2; N=${N:-20}; VHOST=${VHOST:-gc_e2e}; FILL=${FILL:-protocol}; DECODE=${DECODE:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
(cd "$ROOT" && go build -o "$TMP/getchanges_e2e" docs/bench/getchanges_e2e.go && go build -o "$TMP/syncctl" ./cmd/syncctl)
DB=gc_e2e_$LABEL
PG="psql -h 127.0.0.1 -U postgres -q"
$PG -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
$PG -c "CREATE DATABASE $DB"
DSN="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
curl -sf -u guest:guest -X PUT "http://127.0.0.1:15672/api/vhosts/$VHOST"
curl -sf -u guest:guest -X PUT -H 'content-type: application/json' \
  -d '{"configure":".*","write":".*","read":".*"}' "http://127.0.0.1:15672/api/permissions/$VHOST/guest"
AMQP="amqp://guest:guest@127.0.0.1:5672/$VHOST"
"$BIN" -pg "$DSN" -amqp "$AMQP" -auth trust -http '' -log-level warn >"/tmp/gc_syncd_$LABEL.log" 2>&1 &
PID=$!
# The vhost goes too: vhosts left with many durable queues slow RabbitMQ's next boot.
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; $PG -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; curl -sf -u guest:guest -X DELETE "http://127.0.0.1:15672/api/vhosts/$VHOST"; rm -rf "$TMP"' EXIT
for _ in $(seq 100); do
  n=$(curl -s -u guest:guest "http://127.0.0.1:15672/api/queues/$VHOST/ISyncService" |
    python3 -c 'import sys,json; print(json.load(sys.stdin).get("consumers",0))' 2>/dev/null || echo 0)
  [ "$n" != "0" ] && break; sleep 0.2
done
for items in 10000 100000; do
  USER_ID=$("$TMP/syncctl" --pg "$DSN" user add --no-broker-account --name "bench $items" --email "bench$items@example.invalid" |
    awk '$1 == "user" {print $2}')
  fill=$items
  if [ "$FILL" = sql ]; then
    fill=0
    $PG -d "$DB" <<SQL
INSERT INTO proj_workspaces.items (workspace_id, item_id, version, ws_version, device_id, parent_id, parent_version,
  temp_id, status, modified_at, checksum, chunks, size, is_folder, filename, mimetype)
SELECT m.workspace_id, 1000000000 + g, 1, 0, '$USER_ID', CASE WHEN g % 100 = 0 THEN NULL ELSE 1000000000 + g - g % 100 END, NULL,
  NULL, 'NEW', now() - g * interval '1 second', g * 7919,
  CASE WHEN g % 100 = 0 THEN '{}'::text[] ELSE ARRAY[md5(g::text) || 'abcdefgh', md5((-g)::text) || 'abcdefgh'] END,
  g % 10000, g % 100 = 0, CASE WHEN g % 100 = 0 THEN 'folder ' || g ELSE 'file ' || g || '.txt' END,
  CASE WHEN g % 100 = 0 THEN 'inode/directory' ELSE 'text/plain' END
FROM generate_series(0, $items - 1) g, proj_workspaces.members m WHERE m.user_id = '$USER_ID';
ANALYZE proj_workspaces.items;
SQL
  fi
  echo "$LABEL $items items, unchanged:      $("$TMP/getchanges_e2e" -amqp "$AMQP" -user "$USER_ID" -fill "$fill" -n "$N" -pid $PID ${DECODE:+-decode "$DECODE"})"
  echo "$LABEL $items items, after a commit: $("$TMP/getchanges_e2e" -amqp "$AMQP" -user "$USER_ID" -n "$N" -pid $PID -commit)"
done
