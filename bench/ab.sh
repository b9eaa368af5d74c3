#!/usr/bin/env bash
# Before/after for one tuning change (issue 6): two gateways, A and B, serve the
# same app on their own ports; closed-loop loadtest runs alternate A, B, A, B…
# so both see the same machine noise, and each round prints B/A. Only one
# gateway is under load at a time (the idle one takes no CPU).
#   A_GW / B_GW     gateway binaries (default target/release/gateway; copy the
#                   "before" build aside to compare code changes)
#   A_ARGS / B_ARGS extra gateway flags, e.g. "--config bench/tuning/b.toml"
#   APP             manifest (default bench/apps/hello5.toml), PATH_ (default /)
# Usage: bench/ab.sh [rounds] [seconds] [connections]   (from the repo root)
set -euo pipefail
rounds=${1:-5}
secs=${2:-6}
conns=${3:-32}
out=${OUT:-bench/results/ab}
mkdir -p "$out"
a_gw=${A_GW:-target/release/gateway}
b_gw=${B_GW:-target/release/gateway}
app=${APP:-bench/apps/hello5.toml}
path=${PATH_:-/}
lt=target/release/loadtest
for port in 18180 18181; do
  if curl -s -o /dev/null --max-time 1 "127.0.0.1:$port/"; then
    echo "127.0.0.1:$port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
start() { # start NAME BINARY PORT ARGS
  # shellcheck disable=SC2086 # ARGS is a list of flags
  "$2" --listen "127.0.0.1:$3" --metrics-listen "127.0.0.1:$(($3 + 1010))" --threads 2 \
    --app "ab.localhost=$app" $4 >"$out/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf -o /dev/null "127.0.0.1:$3/.well-known/spin/health" && return
    sleep 0.1
  done
  echo "gateway $1 did not start; see $out/$1.log" >&2
  exit 1
}
start a "$a_gw" 18180 "${A_ARGS:-}"
start b "$b_gw" 18181 "${B_ARGS:-}"

run() { # run NAME PORT ROUND: prints req/s
  "$lt" --target "http://127.0.0.1:$2" --host ab.localhost --path "$path" -c "$conns" \
    -d "${secs}s" --warmup 1s --quiet --json "$out/$1-$3.json" >/dev/null
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["throughput_rps"]), r["failed"])' \
    "$out/$1-$3.json"
}
echo "A: $a_gw ${A_ARGS:-}"
echo "B: $b_gw ${B_ARGS:-}"
ratios=()
for i in $(seq "$rounds"); do
  read -r a a_failed < <(run a 18180 "$i")
  read -r b b_failed < <(run b 18181 "$i")
  r=$(python3 -c "print('%.3f' % ($b / $a))")
  ratios+=("$r")
  echo "round $i: A $a req/s ($a_failed failed)  B $b req/s ($b_failed failed)  B/A $r"
done
python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print("B/A median %.3f (min %.3f, max %.3f)" % (statistics.median(v), min(v), max(v)))' "${ratios[@]}"
for side in a b; do
  port=$([ $side = a ] && echo 19190 || echo 19191)
  printf '%s instantiate: ' "$side"
  curl -s "127.0.0.1:$port/metrics" | python3 bench/instantiate_quantiles.py | tr '\n' ' '
  echo
done
