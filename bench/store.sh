#!/usr/bin/env bash
# Does serving an app from the store (deployed through the API, hot-swappable
# snapshot) cost anything against the same app given with --app? One gateway
# serves examples/hello both ways; wrk alternates between the two hosts.
# Usage: bench/store.sh [seconds] [connections]   (GW=path/to/gateway to pick a build;
# default target/release/gateway). Needs wrk and the okra binary next to GW.
set -euo pipefail
secs=${1:-10}
conns=${2:-32}
gw=${GW:-target/release/gateway}
okra=$(dirname "$gw")/okra
[ -x "$gw" ] && [ -x "$okra" ] || cargo build --release -p gateway -p okra --bins
data=$(mktemp -d)
trap 'kill $gw_pid 2>/dev/null || true; rm -rf "$data"' EXIT
OKRA_ADMIN_TOKEN=bench "$gw" --listen 127.0.0.1:18280 --metrics-listen 127.0.0.1:19290 \
  --api-listen 127.0.0.1:18281 --threads 2 --store "file:$data" \
  --app static.localhost=examples/hello/spin.toml >/tmp/okra-store-bench.log 2>&1 &
gw_pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:18280/.well-known/spin/health && break; sleep 0.1; done
export OKRA_SERVER=http://127.0.0.1:18281
token=$("$okra" --token bench tenants create bench | sed -n 's/^Its token (shown only now): //p')
OKRA_TOKEN=$token OKRA_TENANT=bench "$okra" deploy examples/hello --no-build >/dev/null
for _ in $(seq 100); do curl -sf -o /dev/null -H 'Host: hello.bench.localhost' 127.0.0.1:18280/ && break; sleep 0.05; done

rps() { wrk -t2 -c"$conns" -d"${secs}s" -H "Host: $1" http://127.0.0.1:18280/ | awk '/Requests\/sec/ {print $2}'; }
for round in 1 2; do
  a=$(rps static.localhost)
  b=$(rps hello.bench.localhost)
  printf 'round %s: --app %10s req/s   store %10s req/s   store/--app %s\n' "$round" "$a" "$b" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')"
done
