#!/bin/bash
# amqp_ab.sh BINDIR TAG [syncctl bench args...]
#
# Runs BINDIR/syncd (built with `go build -o BINDIR/ ./cmd/...`) on a fresh database and
# vhost of the private broker of docs/bench/private_rabbitmq.sh (AMQP 19621, management
# 19623), drives it for 20 s with BINDIR/syncctl bench (no baselines), and prints one
# line: the bench's commits/s and p99, and the broker's CPU (process amqbeam.smp) per
# commit between 8 s and 16 s into the run, commits counted from syncd's
# syncd_requests_total{method="commit"}. PORT (default 19620) is syncd's HTTP port.
# Alternate two builds: amqp_ab.sh /tmp/old old --scenario spread; amqp_ab.sh /tmp/new new …
set -u
BIN=$1; TAG=$2; shift 2
PORT=${PORT:-19620}; VH=amq_ab_$TAG; DB=amq_ab_$TAG
API=http://127.0.0.1:19623/api
curl -sf -u guest:guest -X PUT "$API/vhosts/$VH" >/dev/null
curl -sf -u guest:guest -X PUT -H 'content-type: application/json' -d '{"configure":".*","write":".*","read":".*"}' "$API/permissions/$VH/guest" >/dev/null
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
DSN="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
AMQP="amqp://guest:guest@127.0.0.1:19621/$VH"
$BIN/syncd -pg "$DSN" -amqp "$AMQP" -http 127.0.0.1:$PORT -pprof -log-level warn >/tmp/syncd_$DB.log 2>&1 &
SPID=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.2; done
PORT=$PORT python3 - >/tmp/amq_ab_$TAG.cpu <<'PY' &
import os, time, urllib.request
def ticks(name):
    t = 0
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try: s = open('/proc/%s/stat' % p).read()
        except OSError: continue
        if '(%s)' % name not in s: continue
        f = s[s.rindex(')') + 2:].split(); t += int(f[11]) + int(f[12])
    return t
def commits():
    n = 0
    for l in urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ['PORT']).read().decode().splitlines():
        if l.startswith('syncd_requests_total{') and 'method="commit"' in l: n += float(l.split()[-1])
    return n
time.sleep(8)
c0, b0 = commits(), ticks('amqbeam.smp')
time.sleep(8)
c1, b1 = commits(), ticks('amqbeam.smp')
hz = os.sysconf('SC_CLK_TCK')
print('window commits %d  broker %.3f ms/commit' % (c1 - c0, (b1 - b0) * 1000 / hz / (c1 - c0)))
PY
OUT=$($BIN/syncctl bench --rabbitmq-api http://guest:guest@127.0.0.1:19623 --pg "$DSN" --amqp "$AMQP" --vhost "$VH" \
	--metrics-url http://127.0.0.1:$PORT/metrics --duration 20s --baselines=false "$@" 2>&1)
wait %2 2>/dev/null
kill $SPID; wait $SPID 2>/dev/null
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
curl -sf -u guest:guest -X DELETE "$API/vhosts/$VH" >/dev/null
echo "$TAG $(echo "$OUT" | grep -o '[0-9.]*/s' | head -1) $(echo "$OUT" | grep -o 'p99 *[0-9.]* ms' | head -1) $(cat /tmp/amq_ab_$TAG.cpu)"
