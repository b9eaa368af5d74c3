#!/usr/bin/env bash
# What one key-value call costs a request: the spin-sdk 5 test guest's /hello
# (no store call) against /kv-get and /kv-set (one call each, on one key), on
# the embedded backend (SQLite under --data-dir) and on a private Redis
# (--store redis://…), all in one run, closed loop with loadtest.
# Usage: bench/kv.sh [seconds] [connections]   (from the repo root)
set -euo pipefail
secs=${1:-10}
conns=${2:-32}
cargo build --release -q -p gateway -p loadtest
[ -f test-programs/guests/target/wasm32-wasip2/release/sdk5_guest.wasm ] || cargo build -q -p test-programs
for port in 18182 19192 16399; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "127.0.0.1:$port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done
gw=$PWD/target/release/gateway
lt=$PWD/target/release/loadtest
out=$(mktemp -d)
redis-server --port 16399 --bind 127.0.0.1 --save '' --appendonly no --dir "$out" >"$out/redis.log" 2>&1 &
redis=$!
pid=
trap 'kill $redis ${pid:-} 2>/dev/null || true' EXIT

echo "machine: $(nproc) cores, $(uname -r); gateway release --threads 2; loadtest -c$conns -d${secs}s after a 2s warm-up"
printf '%-9s %-8s %10s %8s %8s %7s %9s\n' backend path req/s p50 p99 failed vs_hello
for backend in embedded redis; do
  store=()
  [ "$backend" = redis ] && store=(--store redis://127.0.0.1:16399)
  "$gw" --listen 127.0.0.1:18182 --metrics-listen 127.0.0.1:19192 --threads 2 --no-api \
    --data-dir "$out/data-$backend" "${store[@]}" --app kv.localhost=bench/apps/kv.toml \
    >"$out/gateway-$backend.log" 2>&1 &
  pid=$!
  until curl -sf -o /dev/null -H 'Host: kv.localhost' 127.0.0.1:18182/hello; do
    kill -0 $pid || { echo "gateway died; see $out/gateway-$backend.log"; exit 1; }
    sleep 0.05
  done
  curl -sf -o /dev/null -H 'Host: kv.localhost' '127.0.0.1:18182/kv-set?store=default&key=k&value=v'
  hello_rps=
  for path in '/hello' '/kv-get?store=default&key=k' '/kv-set?store=default&key=k&value=v'; do
    "$lt" --target http://127.0.0.1:18182 --host kv.localhost --path "$path" \
      -c "$conns" -d "${secs}s" --warmup 2s --quiet --json "$out/run.json" >/dev/null
    read -r rps p50 p99 failed < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("%.0f %d %d %d" % (r["throughput_rps"], r["latency_us"]["p50"], r["latency_us"]["p99"], r["failed"]))' "$out/run.json")
    [ -z "$hello_rps" ] && hello_rps=$rps
    printf '%-9s %-8s %10s %6sus %6sus %7s %9s\n' "$backend" "${path%%\?*}" "$rps" "$p50" "$p99" "$failed" \
      "$(python3 -c "print('%.2f' % ($rps / $hello_rps))")"
  done
  kill $pid
  wait $pid 2>/dev/null || true
  pid=
done
