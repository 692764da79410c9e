#!/usr/bin/env bash
# 1, 2, 3 syncd processes on scripts/cluster (offset 100), syncctl bench spread per run
# (docs/scaling.md). Stops its syncd processes at the end and leaves the cluster up:
# CLUSTER_PORT_OFFSET=100 scripts/cluster down removes it.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CLUSTER_PORT_OFFSET=100
eval "$(scripts/cluster up 2>${OUT:-/tmp}/cluster-up.log)"
B=${BIN:-/tmp/scale-bin} # holds syncd and syncctl: go build -o "$B/" ./cmd/syncd ./cmd/syncctl
declare -A PIDS
start() { # start I
  local i=$1
  $B/syncd -pg "$SYNCD_PG_DSN" -amqp "$SYNCD_AMQP_URL" -http 127.0.0.1:$((19570+i)) >${OUT:-/tmp}/syncd-$i.log 2>&1 &
  PIDS[$i]=$!
  for _ in $(seq 1 120); do curl -fsS -m 2 http://127.0.0.1:$((19570+i))/readyz >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "syncd $i not ready" >&2; exit 1
}
stop() { local i=$1; kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; unset "PIDS[$i]"; }
ensure() { # ensure N: exactly syncd 1..N running
  local n=$1 i
  for i in 1 2 3; do
    if ((i <= n)) && [[ -z ${PIDS[$i]:-} ]]; then start $i; fi
    if ((i > n)) && [[ -n ${PIDS[$i]:-} ]]; then stop $i; fi
  done
}
trap 'for i in "${!PIDS[@]}"; do stop $i; done' EXIT
API="http://guest:guest@127.0.0.1:15781,http://guest:guest@127.0.0.1:15782"
for n in 1 2 3 3 2 1; do
  ensure $n
  echo "=== run n=$n $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  $B/syncctl --pg "$SYNC_PG_DSN" bench --amqp amqp://guest:guest@127.0.0.1:5781/ --rabbitmq-api "$API" --vhost / \
    --scenario spread --duration 20s --baselines=false --metrics-url http://127.0.0.1:19571/metrics 2>&1 | tail -n 25
done
