#!/usr/bin/env bash
# Outbound HTTP through a tenant pool, against a plain client in the same run.
#
# The upstream is a second gateway answering a static response on
# 127.0.0.1:18380 (a real keep-alive HTTP/1.1 server that needs no wasm).
# Three wrk runs, same machine, same duration:
#   1. plain client -> upstream, directly            (the upstream's capacity)
#   2. client -> gateway -> guest hello, no outbound (the wasm request alone)
#   3. client -> gateway -> guest -> tenant pool -> upstream
# then the pool's connection reuse from the gateway's metrics.
# Usage: bench/outbound.sh [seconds] [connections]   (run from the repo root after `cargo test`)
set -euo pipefail
secs=${1:-10}
conns=${2:-32}
gw=target/release/gateway
[ -x "$gw" ] || cargo build --release -p gateway
[ -f test-programs/guests/target/wasm32-wasip2/release/sdk5_guest.wasm ] || cargo build -p test-programs

"$gw" --listen 127.0.0.1:18380 --metrics-listen 127.0.0.1:19380 --threads 1 \
  --app 127.0.0.1=test-programs/apps/kitchen.toml >/tmp/okra-bench-upstream.log 2>&1 &
up_pid=$!
"$gw" --listen 127.0.0.1:18180 --metrics-listen 127.0.0.1:19190 --threads 2 --block-networks none \
  --app out.localhost=bench/apps/outbound.toml --app k.localhost=test-programs/apps/kitchen.toml \
  >/tmp/okra-bench.log 2>&1 &
gw_pid=$!
trap 'kill $up_pid $gw_pid 2>/dev/null || true' EXIT
for port in 18380 18180; do
  for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:$port/.well-known/spin/health && break; sleep 0.1; done
done
# The guest's requests carry Host 127.0.0.1:18380, so the upstream serves that host.
upstream=http://127.0.0.1:18380/static
curl -sf "$upstream" >/dev/null
fetch="http://127.0.0.1:18180/p2/t/fetch?url=http://127.0.0.1:18380/static"

run() { # name url host
  local out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" -H "Host: $3" "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  printf '%-44s %12s req/s  p50 %s\n' "$1" "$rps" "$(awk '/Latency/ {print $2; exit}' <<<"$out")"
}

echo "machine: $(nproc) cores, $(uname -r); wrk -t2 -c$conns -d${secs}s; gateway: release profile"
run "plain client -> upstream" "$upstream" 127.0.0.1
run "gateway -> guest hello (no outbound)" http://127.0.0.1:18180/p2/t/hello k.localhost
run "gateway -> guest -> pool -> upstream" "$fetch" out.localhost

curl -s 127.0.0.1:19190/metrics | python3 -c '
import sys, re
ok = opened = 0
for line in sys.stdin:
    if re.match(r"okra_outbound_requests_total\{.*outcome=\"ok\"", line):
        ok += int(float(line.split()[-1]))
    if line.startswith("okra_outbound_pool_connects_total{"):
        opened += int(float(line.split()[-1]))
print("outbound requests %d, connections opened %d, reuse ratio %.4f" % (ok, opened, 1 - opened / max(ok, 1)))
'
