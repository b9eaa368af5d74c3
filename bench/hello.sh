#!/usr/bin/env bash
# First figures for the hello components: requests/s through the gateway for
# a spin-sdk 5 (wasi:http 0.2) hello, the spin-sdk 7 (wasi:http 0.3) example
# hello and a static response, plus `wasmtime serve` on the same .wasm when `wasmtime`
# (48.0.8) is on PATH; then the instantiate histogram's p50/p99.
# Usage: bench/hello.sh [seconds] [connections]   (run from the repo root after `cargo test`)
set -euo pipefail
secs=${1:-10}
conns=${2:-32}
gw=target/release/gateway
[ -x "$gw" ] || cargo build --release -p gateway
# The same .wasm files the gateway serves: no Spin-specific imports, so
# `wasmtime serve` can run them too.
p2=test-programs/guests/target/wasm32-wasip2/release/hello5_guest.wasm
p3=examples/hello/target/wasm32-wasip2/release/hello.wasm
[ -f "$p2" ] && [ -f "$p3" ] || cargo build -p test-programs

"$gw" --listen 127.0.0.1:18180 --metrics-listen 127.0.0.1:19190 --threads 2 \
  --app k.localhost=test-programs/apps/kitchen.toml --app hello.localhost=examples/hello/spin.toml \
  >/tmp/okra-bench.log 2>&1 &
gw_pid=$!
trap 'kill $gw_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:18180/.well-known/spin/health && break; sleep 0.1; done

run() { # name url [host]
  local out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" ${3:+-H "Host: $3"} "$2")
  printf '%-28s %12s req/s  p50 %s\n' "$1" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(wrk_latency "$out")"
}
wrk_latency() { awk '/Latency/ {print $2; exit}' <<<"$1"; }

echo "machine: $(nproc) cores, $(uname -r); wrk -t2 -c$conns -d${secs}s; gateway: release profile"
run "okra static response" http://127.0.0.1:18180/static k.localhost
run "okra hello p2 (spin-sdk 5)" http://127.0.0.1:18180/hello5/ k.localhost
run "okra hello p3 (spin-sdk 7)" http://127.0.0.1:18180/ hello.localhost

if command -v wasmtime >/dev/null; then
  for w in "$p2:p2" "$p3:p3"; do
    wasmtime serve -Scli --addr 127.0.0.1:18280 "${w%%:*}" >/dev/null 2>&1 &
    ws=$!
    sleep 2
    run "wasmtime serve ${w##*:}" http://127.0.0.1:18280/
    kill $ws
  done
else
  echo "wasmtime serve: skipped (install with: cargo install wasmtime-cli@48.0.8)"
fi

curl -s 127.0.0.1:19190/metrics | python3 bench/instantiate_quantiles.py
