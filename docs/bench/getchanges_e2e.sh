#!/bin/bash
# getChanges end to end against a syncd binary (docs/benchmarks.md):
#   docs/bench/getchanges_e2e.sh SYNCD_BINARY LABEL
# Starts SYNCD_BINARY on a scratch database (gc_e2e_LABEL) and vhost (gc_e2e), writes a
# workspace of 10,000 and one of 100,000 items straight into its read model (folders of
# 99 files with two chunks each), and sends N (default 20) getChanges of each, first
# unchanged (cached), then each after a rewrite of the workspace row (cache misses).
set -euo pipefail
BIN=$1; LABEL=$2; N=${N:-20}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLIENT=$(mktemp -d)/getchanges_e2e
(cd "$ROOT" && go build -o "$CLIENT" docs/bench/getchanges_e2e.go)
DB=gc_e2e_$LABEL
PG="psql -h 127.0.0.1 -U postgres -q"
$PG -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
DSN="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
curl -sf -u guest:guest -X PUT http://127.0.0.1:15672/api/vhosts/gc_e2e
curl -sf -u guest:guest -X PUT -H 'content-type: application/json' \
  -d '{"configure":".*","write":".*","read":".*"}' http://127.0.0.1:15672/api/permissions/gc_e2e/guest
AMQP="amqp://guest:guest@127.0.0.1:5672/gc_e2e"
"$BIN" -pg "$DSN" -amqp "$AMQP" -auth trust -http '' -log-level warn >"/tmp/gc_syncd_$LABEL.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; $PG -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"' EXIT
for _ in $(seq 100); do
  n=$(curl -s -u guest:guest http://127.0.0.1:15672/api/queues/gc_e2e/ISyncService |
    python3 -c 'import sys,json; print(json.load(sys.stdin).get("consumers",0))' 2>/dev/null || echo 0)
  [ "$n" != "0" ] && break; sleep 0.2
done
USER_ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
for items in 10000 100000; do
  WS=$(python3 -c 'import uuid; print(uuid.uuid4())')
  $PG -d "$DB" <<SQL
INSERT INTO proj_workspaces.workspaces (workspace_id, name, owner_id, is_shared, is_encrypted, created_at, version)
  VALUES ('$WS', 'bench', '$USER_ID', false, false, now(), $items / 1000 + 1);
INSERT INTO proj_workspaces.members (workspace_id, user_id, name, stream_version) VALUES ('$WS', '$USER_ID', 'bench', 0);
INSERT INTO proj_workspaces.items (workspace_id, item_id, version, ws_version, device_id, parent_id, parent_version,
  temp_id, status, modified_at, checksum, chunks, size, is_folder, filename, mimetype)
SELECT '$WS', 1000 + g, 1, 1 + g / 1000, '$USER_ID', CASE WHEN g % 100 = 0 THEN NULL ELSE 1000 + g - g % 100 END, NULL,
  NULL, 'NEW', now() - g * interval '1 second', g * 7919,
  CASE WHEN g % 100 = 0 THEN '{}'::text[] ELSE ARRAY[md5(g::text) || 'abcdefgh', md5((-g)::text) || 'abcdefgh'] END,
  g % 10000, g % 100 = 0, CASE WHEN g % 100 = 0 THEN 'folder ' || g ELSE 'file ' || g || '.txt' END,
  CASE WHEN g % 100 = 0 THEN 'inode/directory' ELSE 'text/plain' END
FROM generate_series(0, $items - 1) g;
ANALYZE proj_workspaces.items;
SQL
  echo "$LABEL $items items, unchanged: $("$CLIENT" -amqp "$AMQP" -user "$USER_ID" -ws "$WS" -n "$N" -pid $PID)"
  echo "$LABEL $items items, misses:    $("$CLIENT" -amqp "$AMQP" -user "$USER_ID" -ws "$WS" -n "$N" -pid $PID -bump "$DSN")"
done
