#!/bin/bash
# Every goal of issue 14 measured in one go against this checkout (docs/benchmarks.md,
# "Issue 14's goals: where each stands"):
#   docs/bench/goals.sh LABEL [OUTDIR]
# Builds syncd and syncctl from this checkout, then, each on a scratch database
# (goals_LABEL_*) and vhost of the local PostgreSQL and RabbitMQ (management API on
# 15672), runs:
#   1. syncctl bench --scenario sequential,spread,hot,notify (8 s each, baselines
#      including the guaranteed floor, --local-cpu);
#   2. spread over 32 workspaces (8 s, no baselines, --local-cpu);
#   3. getchanges of 10,000 and of 100,000 items (20 reads each; RSS after), syncd as
#      configured by default, then 100,000 again with -memory-limit 67108864;
#   4. the rebuild of the workspaces model over 1,000,000 generated events
#      (BenchmarkRebuild, SYNC_BENCH_EVENTS=1000000) unless REBUILD=0.
# Each step's output goes to OUTDIR (default /tmp/goals_LABEL); a summary of the figures
# the goals name is printed at the end. syncd's HTTP port is PORT (default 19790); DUR
# (default 8s) is each commit scenario's duration.
# Run it on an otherwise idle machine: every figure is bound by the shared cores.
set -uo pipefail
LABEL=$1; OUT=${2:-/tmp/goals_$LABEL}; PORT=${PORT:-19790}; DUR=${DUR:-8s}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
API=http://127.0.0.1:15672/api
mkdir -p "$OUT/bin"
(cd "$ROOT" && go build -o "$OUT/bin/" ./cmd/syncd ./cmd/syncctl) || exit 1

# bench NAME SYNCD_ARGS BENCH_ARGS...: one syncd on its own database and vhost, one bench.
bench() {
	local name=$1 sargs=$2; shift 2
	local db=goals_${LABEL}_$name
	curl -sf -u guest:guest -X PUT "$API/vhosts/$db" >/dev/null
	curl -sf -u guest:guest -X PUT -H 'content-type: application/json' \
		-d '{"configure":".*","write":".*","read":".*"}' "$API/permissions/$db/guest" >/dev/null
	psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
	local dsn="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" amqp="amqp://guest:guest@127.0.0.1:5672/$db"
	# shellcheck disable=SC2086
	"$OUT/bin/syncd" -pg "$dsn" -amqp "$amqp" -http 127.0.0.1:$PORT -log-level warn $sargs >"$OUT/$name.syncd.log" 2>&1 &
	local pid=$!
	for _ in $(seq 1 150); do curl -sf http://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.2; done
	echo "== $name: $(uptime)" >"$OUT/$name.txt"
	"$OUT/bin/syncctl" bench --pg "$dsn" --amqp "$amqp" --vhost "$db" --rabbitmq-api http://guest:guest@127.0.0.1:15672 \
		--metrics-url http://127.0.0.1:$PORT/metrics "$@" 2>&1 | grep -v '^time=' >>"$OUT/$name.txt"
	kill $pid; wait $pid 2>/dev/null
	psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
	curl -sf -u guest:guest -X DELETE "$API/vhosts/$db" >/dev/null
	cat "$OUT/$name.txt"
}

bench commits "" --scenario sequential,spread,hot,notify --duration $DUR --local-cpu
bench spread32 "" --scenario spread --workspaces 32 --duration $DUR --baselines=false --local-cpu
bench gc10k "" --scenario getchanges --items 10000 --baselines=false
bench gc100k "" --scenario getchanges --items 100000 --baselines=false
bench gc100klim "-memory-limit 67108864" --scenario getchanges --items 100000 --baselines=false
if [ "${REBUILD:-1}" != 0 ]; then
	(cd "$ROOT/projections" && SYNC_BENCH_LOG=1 SYNC_BENCH_EVENTS=1000000 go test -run '^$' -bench 'Rebuild/Rebuild/workspaces' \
		-benchtime 1x -v -timeout 30m . 2>&1 | grep -E 'events/s|Benchmark|replay|finish' | tail -8 >"$OUT/rebuild.txt")
	cat "$OUT/rebuild.txt"
fi
echo "== summary ($LABEL)"
grep -hE '^[a-z]+:|server |g-floor|machine CPU|server CPU|RSS' "$OUT"/commits.txt "$OUT"/spread32.txt "$OUT"/gc*.txt
grep -h '^Benchmark' "$OUT/rebuild.txt" 2>/dev/null
