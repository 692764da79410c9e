#!/bin/bash
# getChanges end to end against a syncd binary (docs/benchmarks.md):
#   docs/bench/getchanges_e2e.sh SYNCD_BINARY LABEL
# Starts SYNCD_BINARY (-auth trust) on a scratch database (gc_e2e_LABEL) and vhost
# ($VHOST, default gc_e2e); for 10,000 and then 100,000 items, creates a user whose
# personal workspace a device fills through the protocol (folders of 99 files with two
# chunks each, commits of 1,000 items), then sends N (default 20) getChanges of it
# unchanged (all but the first from the server's cache), then N more, each right after
# a real commit of one new file (committed, notified, then the timed request).
set -euo pipefail
BIN=$1; LABEL=$2; N=${N:-20}; VHOST=${VHOST:-gc_e2e}
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
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; $PG -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; rm -rf "$TMP"' EXIT
for _ in $(seq 100); do
  n=$(curl -s -u guest:guest "http://127.0.0.1:15672/api/queues/$VHOST/ISyncService" |
    python3 -c 'import sys,json; print(json.load(sys.stdin).get("consumers",0))' 2>/dev/null || echo 0)
  [ "$n" != "0" ] && break; sleep 0.2
done
for items in 10000 100000; do
  USER_ID=$("$TMP/syncctl" --pg "$DSN" user add --no-broker-account --name "bench $items" --email "bench$items@example.invalid" |
    awk '$1 == "user" {print $2}')
  echo "$LABEL $items items, unchanged:      $("$TMP/getchanges_e2e" -amqp "$AMQP" -user "$USER_ID" -fill "$items" -n "$N" -pid $PID)"
  echo "$LABEL $items items, after a commit: $("$TMP/getchanges_e2e" -amqp "$AMQP" -user "$USER_ID" -n "$N" -pid $PID -commit)"
done
