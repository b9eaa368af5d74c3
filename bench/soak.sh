#!/usr/bin/env bash
# Soak (issue 12): one gateway, 100 tenants each serving the spin-sdk 5 test
# guest with a private component to chain to, and an open-loop mix of hello
# (80 %), outbound HTTP to a local upstream (10 %) and in-process chaining
# (10 %) at 70 % of the peak this mix reaches, for MINUTES minutes. The
# promise: zero failed requests, and RSS after the warm-up minute grows by
# less than 5 %.
# Usage: bench/soak.sh [minutes] [connections]   (from the repo root)
set -euo pipefail
minutes=${1:-10}
conns=${2:-32}
out=${OUT:-bench/results/soak}
mkdir -p "$out"
cargo build --release -q -p gateway -p okra -p loadtest
cargo build -q -p test-programs
gw=target/release/gateway
okra=target/release/okra
lt=target/release/loadtest
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

upstream=18791
mkdir -p "$work/upstream"
echo "upstream says hi" >"$work/upstream/index.html"
python3 -m http.server "$upstream" --bind 127.0.0.1 --directory "$work/upstream" \
  >"$out/upstream.log" 2>&1 &
pids+=($!)

mkdir -p "$work/app"
cp test-programs/guests/target/wasm32-wasip2/release/sdk5_guest.wasm "$work/app/guest.wasm"
cat >"$work/app/spin.toml" <<EOF
spin_manifest_version = 2
[application]
name = "soak"
[[trigger.http]]
route = "/t/..."
component = "front"
[[trigger.http]]
route = { private = true }
component = "back"
[component.front]
source = "guest.wasm"
allowed_outbound_hosts = ["http://back.spin.internal", "http://127.0.0.1:$upstream"]
[component.back]
source = "guest.wasm"
EOF
cat >"$work/mix.toml" <<EOF
[hosts]
pattern = "web.t{i}.localhost"
count = 100
[[request]]
path = "/t/hello"
weight = 8
[[request]]
path = "/t/fetch?url=http://127.0.0.1:$upstream/"
weight = 1
[[request]]
path = "/t/fetch?url=http://back.spin.internal/t/hello"
weight = 1
EOF

OKRA_ADMIN_TOKEN=bench "$gw" --listen 127.0.0.1:18780 --metrics-listen 127.0.0.1:19780 \
  --api-listen 127.0.0.1:18781 --threads 2 --store "file:$work/data" --block-networks none \
  --max-concurrent-requests 1000 >"$out/gateway.log" 2>&1 &
gw_pid=$!
pids+=($gw_pid)
for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:18780/.well-known/spin/health && break; sleep 0.1; done
export OKRA_SERVER=http://127.0.0.1:18781
for i in $(seq 0 99); do
  token=$("$okra" --token bench tenants create "t$i" | sed -n 's/^Its token (shown only now): //p')
  OKRA_TOKEN=$token OKRA_TENANT=t$i "$okra" deploy "$work/app" --app web --no-build >/dev/null
done
for _ in $(seq 300); do
  curl -sf -o /dev/null -H 'Host: web.t99.localhost' 127.0.0.1:18780/t/hello && break
  sleep 0.05
done

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$gw_pid/status"; }
"$lt" --target http://127.0.0.1:18780 --scenario "$work/mix.toml" -c "$conns" -d 10s --warmup 2s \
  --max-failed-ratio 1 --quiet --json "$out/peak.json" >/dev/null
peak=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["throughput_rps"]))' "$out/peak.json")
rate=$((peak * 70 / 100))
echo "machine: $(nproc) cores; peak of the mix ${peak} req/s; soaking at ${rate} req/s for ${minutes} min"
"$lt" --target http://127.0.0.1:18780 --scenario "$work/mix.toml" -c "$conns" --rate "$rate" \
  -d "${minutes}m" --max-failed-ratio 1 --quiet --json "$out/soak.json" >/dev/null &
load=$!
: >"$out/rss.txt"
while kill -0 "$load" 2>/dev/null; do
  echo "$SECONDS $(rss_mib)" >>"$out/rss.txt"
  sleep 10
done
wait "$load" || true
python3 - "$out/soak.json" "$out/rss.txt" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
samples = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
start = samples[0][0]
after_warmup = [rss for t, rss in samples if t - start >= 60]
base, last = after_warmup[0], after_warmup[-1]
print(f"{r['requests']} requests, {r['failed']} failed ({r['failures']}), "
      f"{r['throughput_rps']:.0f} req/s, p50 {r['latency_us']['p50']} us, p99 {r['latency_us']['p99']} us")
print(f"RSS after warm-up {base:.1f} MiB, at the end {last:.1f} MiB, max {max(after_warmup):.1f} MiB: "
      f"growth {100 * (last - base) / base:+.1f} %")
EOF
