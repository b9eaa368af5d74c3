#!/usr/bin/env bash
# The benchmark suite (issue 6), every figure from one run on one machine:
#   - okra's static response (the ceiling), okra hello p2 (spin-sdk 5) and p3
#     (spin-sdk 7), and `wasmtime serve` 48.0.8 on the same .wasm files when
#     `wasmtime` is on PATH;
#   - the load curve: okra hello p2 open loop at 25 %, 50 % and 75 % of the
#     closed-loop peak just measured;
#   - wrk on the static and p2 targets, to validate loadtest (when wrk is installed);
#   - the p50 of okra_wasm_instantiate_seconds.
# Reports (JSON) and plots (SVG) go to $out (default bench/results/latest).
# Usage: bench/suite.sh [seconds] [connections]   (from the repo root)
set -euo pipefail
secs=${1:-10}
conns=${2:-32}
out=${OUT:-bench/results/latest}
mkdir -p "$out"
cargo build --release -q -p gateway -p loadtest
cargo build -q -p test-programs # builds the guests
# Refuse to measure some other process that already holds the port.
if curl -s -o /dev/null --max-time 1 127.0.0.1:18180/; then
  echo "127.0.0.1:18180 is already in use; stop whatever listens there first" >&2
  exit 1
fi
gw=target/release/gateway
lt=target/release/loadtest
p2=test-programs/guests/target/wasm32-wasip2/release/hello5_guest.wasm
p3=examples/hello/target/wasm32-wasip2/release/hello.wasm

"$gw" --listen 127.0.0.1:18180 --metrics-listen 127.0.0.1:19190 --threads 2 \
  --app k.localhost=test-programs/apps/kitchen.toml --app hello.localhost=examples/hello/spin.toml \
  >"$out/gateway.log" 2>&1 &
gw_pid=$!
ws_pid=
trap 'kill $gw_pid $ws_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:18180/.well-known/spin/health && break; sleep 0.1; done

# load NAME URL HOST PATH [extra loadtest flags...]: one closed-loop run; prints req/s.
load() {
  local name=$1 url=$2 host=$3 path=$4
  shift 4
  "$lt" --target "$url" --host "$host" --path "$path" -c "$conns" -d "${secs}s" --warmup 2s \
    --quiet --json "$out/$name.json" --plot-dir "$out/$name" --title "$name" "$@" >/dev/null
  summary "$name"
}
summary() {
  python3 - "$out/$1.json" "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_us"]
print("%-26s %9.0f req/s  p50 %6dus  p99 %6dus  failed %d" % (
    sys.argv[2], r["throughput_rps"], l["p50"], l["p99"], r["failed"]))
EOF
}
rps() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_rps"])' "$out/$1.json"; }
ratio() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }

echo "machine: $(nproc) cores, $(uname -r); gateway release --threads 2; loadtest -c$conns -d${secs}s on the same cores"
load okra-static http://127.0.0.1:18180 k.localhost /static
load okra-p2 http://127.0.0.1:18180 k.localhost /hello5/
load okra-p3 http://127.0.0.1:18180 hello.localhost /

have_wasmtime=
if command -v wasmtime >/dev/null; then
  have_wasmtime=1
  for w in "$p2:p2" "$p3:p3"; do
    wasmtime serve -Scli --addr 127.0.0.1:18280 "${w%%:*}" >/dev/null 2>&1 &
    ws_pid=$!
    for _ in $(seq 100); do curl -s -o /dev/null 127.0.0.1:18280/ && break; sleep 0.1; done
    load "wasmtime-${w##*:}" http://127.0.0.1:18280 127.0.0.1:18280 /
    kill $ws_pid
    wait $ws_pid 2>/dev/null || true
    ws_pid=
  done
else
  echo "wasmtime serve: skipped (install with: cargo install wasmtime-cli@48.0.8)"
fi

echo "ratios:"
echo "  okra p2 / static           $(ratio "$(rps okra-p2)" "$(rps okra-static)")"
if [ -n "$have_wasmtime" ]; then
  echo "  okra p2 / wasmtime p2      $(ratio "$(rps okra-p2)" "$(rps wasmtime-p2)")"
  echo "  okra p3 / wasmtime p3      $(ratio "$(rps okra-p3)" "$(rps wasmtime-p3)")"
fi

echo "load curve, okra p2, open loop (latency from when each request was due):"
peak=$(rps okra-p2)
for pct in 25 50 75; do
  rate=$(python3 -c "print(round($peak * $pct / 100))")
  load "okra-p2-open-$pct" http://127.0.0.1:18180 k.localhost /hello5/ --rate "$rate"
done

if command -v wrk >/dev/null; then
  echo "loadtest vs wrk (closed loop, same connections and duration):"
  for t in "okra-static:/static" "okra-p2:/hello5/"; do
    name=${t%%:*}
    w=$(wrk -t2 -c"$conns" -d"${secs}s" -H "Host: k.localhost" "http://127.0.0.1:18180${t#*:}" |
      awk '/Requests\/sec/ {print $2}')
    l=$(rps "$name")
    printf '  %-24s loadtest %9.0f  wrk %9.0f  loadtest/wrk %s\n' "$name" "$l" "$w" "$(ratio "$l" "$w")"
  done
else
  echo "wrk: skipped (apt-get install -y wrk)"
fi

curl -s 127.0.0.1:19190/metrics | python3 bench/instantiate_quantiles.py
