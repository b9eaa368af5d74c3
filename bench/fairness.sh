#!/usr/bin/env bash
# Fairness between tenants (issue 12, item 6): does a hostile tenant flooding
# its loop, alloc and panic routes at full concurrency slow a quiet tenant's
# hello down? One gateway, two tenants deployed through the API with the same
# spin-sdk 5 test guest. The quiet tenant's latency is measured alone, then
# while the hostile one floods (its own max_concurrent_requests in flight).
# Target: quiet p50 within 2x and p99 within 5x of its unloaded values.
# The run is repeated with CPU turns effectively off (--cpu-parallelism 1000)
# to show what they change.
# Usage: bench/fairness.sh [seconds] [quiet connections] [flood connections]
set -euo pipefail
secs=${1:-10}
quiet_c=${2:-4}
flood_c=${3:-100}
out=${OUT:-bench/results/fairness}
mkdir -p "$out"
cargo build --release -q -p gateway -p okra -p loadtest
cargo build -q -p test-programs
gw=target/release/gateway
okra=target/release/okra
[ -x "$okra" ] || cargo build --release -q -p okra --bin okra
lt=target/release/loadtest
guest=$(ls test-programs/guests/target/wasm32-wasip2/release/sdk5_guest.wasm)
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

mkdir -p "$work/app"
cp "$guest" "$work/app/guest.wasm"
cat >"$work/app/spin.toml" <<'EOF'
spin_manifest_version = 2
[application]
name = "guest"
[[trigger.http]]
route = "/t/..."
component = "guest"
[component.guest]
source = "guest.wasm"
EOF
cat >"$work/flood.toml" <<'EOF'
[[request]]
path = "/t/loop"
weight = 1
[[request]]
path = "/t/alloc"
weight = 1
[[request]]
path = "/t/panic"
weight = 1
EOF

quiet() { # quiet NAME: prints "p50_us p99_us req/s failed"
  "$lt" --target http://127.0.0.1:18480 --host web.quiet.localhost --path /t/hello \
    -c "$quiet_c" -d "${secs}s" --warmup 2s --quiet --json "$out/$1.json" >/dev/null
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); l=r["latency_us"]; print(l["p50"], l["p99"], round(r["throughput_rps"]), r["failed"])' \
    "$out/$1.json"
}

run() { # run NAME GATEWAY-FLAGS
  local name=$1 flags=$2
  # shellcheck disable=SC2086 # flags is a list
  OKRA_ADMIN_TOKEN=bench "$gw" --listen 127.0.0.1:18480 --metrics-listen 127.0.0.1:19490 \
    --api-listen 127.0.0.1:18481 --threads 2 --store "file:$work/data-$name" \
    --cpu-time-ms 2000 --request-timeout-ms 5000 $flags >"$out/$name-gateway.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:18480/.well-known/spin/health && break; sleep 0.1; done
  export OKRA_SERVER=http://127.0.0.1:18481
  for tenant in quiet hostile; do
    token=$("$okra" --token bench tenants create "$tenant" | sed -n 's/^Its token (shown only now): //p')
    OKRA_TOKEN=$token OKRA_TENANT=$tenant "$okra" deploy "$work/app" --app web --no-build >/dev/null
    for _ in $(seq 200); do
      curl -sf -o /dev/null -H "Host: web.$tenant.localhost" 127.0.0.1:18480/t/hello && break
      sleep 0.05
    done
  done
  read -r alone_p50 alone_p99 alone_rps _ < <(quiet "$name-alone")
  "$lt" --target http://127.0.0.1:18480 --host web.hostile.localhost --scenario "$work/flood.toml" \
    -c "$flood_c" -d "$((secs + 6))s" --max-failed-ratio 1 --quiet --json "$out/$name-flood.json" \
    >/dev/null 2>&1 &
  local flood=$!
  sleep 3
  read -r busy_p50 busy_p99 busy_rps busy_failed < <(quiet "$name-flooded")
  wait "$flood" || true
  printf '%-22s quiet alone p50 %6s us p99 %7s us (%s req/s); flooded p50 %7s us p99 %8s us (%s req/s, %s failed): p50 x%s, p99 x%s\n' \
    "$name" "$alone_p50" "$alone_p99" "$alone_rps" "$busy_p50" "$busy_p99" "$busy_rps" "$busy_failed" \
    "$(python3 -c "print('%.2f' % ($busy_p50 / $alone_p50))")" \
    "$(python3 -c "print('%.2f' % ($busy_p99 / $alone_p99))")"
  kill "${pids[-1]}"
  wait "${pids[-1]}" 2>/dev/null || true
}

echo "machine: $(nproc) cores; gateway --threads 2; quiet -c$quiet_c, flood -c$flood_c, ${secs}s"
run cpu-turns ""
run cpu-turns-off "--cpu-parallelism 1000"
