#!/usr/bin/env bash
# The seed blog's frontend -> book-api call three ways, in one run on one
# gateway (release, 2 threads), each measured with wrk for the same time:
#   1. book-api alone, GET /api                  (one component, the floor)
#   2. frontend -> book-api by chaining          (examples/bookserver as written)
#   3. frontend -> book-api by self-route        (http://self.alt/api, via the peers)
#   4. frontend -> book-api by plain HTTP        (http://books-http.localhost:18190/api,
#                                                 external, through the tenant pool)
# Usage: bench/chaining.sh [seconds] [connections]   (from the repo root after `cargo test`)
set -euo pipefail
secs=${1:-10}
conns=${2:-32}
gw=target/release/gateway
[ -x "$gw" ] || cargo build --release -p gateway
[ -f examples/bookserver/target/wasm32-wasip2/release/frontend.wasm ] ||
  cargo build --release --target wasm32-wasip2 --manifest-path examples/bookserver/Cargo.toml

"$gw" --listen 127.0.0.1:18190 --metrics-listen 127.0.0.1:19191 --threads 2 \
  --block-networks none --resolve books-http.localhost=127.0.0.1 \
  --max-concurrent-requests 1000 --outbound-max-connections 1000 \
  --app books.localhost=examples/bookserver/spin.toml \
  --app books-self.localhost=bench/apps/bookserver-self.toml \
  --app books-http.localhost=bench/apps/bookserver-http.toml \
  >/tmp/okra-bench-chaining.log 2>&1 &
gw_pid=$!
trap 'kill $gw_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:18190/.well-known/spin/health && break; sleep 0.1; done
for host in books books-self books-http; do
  curl -sf -H "Host: $host.localhost" 127.0.0.1:18190/ >/dev/null
done

run() { # name host path
  local out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Host: $2" "http://127.0.0.1:18190$3")
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '%-34s %10s req/s  p50 %8s  p99 %8s  non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${errors:-0}"
}

echo "machine: $(nproc) cores, $(uname -r); wrk -t2 -c$conns -d${secs}s; gateway: release profile"
run "book-api alone (GET /api)" books-self.localhost /api
run "frontend -> book-api, chaining" books.localhost /
run "frontend -> book-api, self-route" books-self.localhost /
run "frontend -> book-api, plain HTTP" books-http.localhost /
curl -s 127.0.0.1:19191/metrics | grep '^okra_outbound_requests_total' || true
