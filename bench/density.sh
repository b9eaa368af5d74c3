#!/usr/bin/env bash
# Tenant density (issue 6): one gateway serving N apps, each on its own
# hostname t<i>.localhost with its own App (routes, limits, concurrency
# slots, instance-pre) loaded from the spin-sdk 5 hello's manifest. The same
# .wasm bytes compile once (the compile cache is keyed by content), which is
# what a node does when tenants deploy the same component.
# For each N: time to load, RSS idle and after load, the first request to 20
# tenants never requested before, and a uniform closed-loop run over all N
# hosts (throughput, p50, p99, failures).
# Usage: bench/density.sh [seconds] [connections]   COUNTS="1 100 10000" by default
set -euo pipefail
secs=${1:-10}
conns=${2:-32}
counts=${COUNTS:-"1 100 10000"}
out=${OUT:-bench/results/latest}
mkdir -p "$out"
cargo build --release -q -p gateway -p loadtest
cargo build -q -p test-programs
# Refuse to measure some other process that already holds the port.
if curl -s -o /dev/null --max-time 1 127.0.0.1:18181/; then
  echo "127.0.0.1:18181 is already in use; stop whatever listens there first" >&2
  exit 1
fi
gw=$PWD/target/release/gateway
lt=$PWD/target/release/loadtest
manifest=$PWD/bench/apps/hello5.toml

rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

echo "machine: $(nproc) cores, $(uname -r); gateway release --threads 2; loadtest -c$conns -d${secs}s"
printf '%8s %8s %9s %9s %11s %11s %10s %9s %9s %7s\n' tenants load_s rss_idle rss_load cold_p50 cold_max req/s p50 p99 failed
for n in $counts; do
  cfg=$out/density-$n.toml
  python3 - "$n" "$manifest" >"$cfg" <<'EOF'
import sys
n, manifest = int(sys.argv[1]), sys.argv[2]
print('listen = "127.0.0.1:18181"\nmetrics_listen = "127.0.0.1:19191"\nthreads = 2')
for i in range(n):
    print(f'[[apps]]\nhost = "t{i}.localhost"\nmanifest = "{manifest}"')
EOF
  started=$(date +%s.%N)
  "$gw" --config "$cfg" >"$out/density-$n.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  until curl -sf -o /dev/null -H 'Host: t0.localhost' 127.0.0.1:18181/; do
    kill -0 $pid || { echo "gateway died; see $out/density-$n.log"; exit 1; }
    sleep 0.05
  done
  load_s=$(python3 -c "import time; print('%.1f' % (time.time() - $started))")
  idle=$(rss_mib $pid)
  # Cold tenants: the last 20 hosts (or all but t0), each requested once.
  cold=$(python3 - "$n" <<'EOF'
import random, sys
n = int(sys.argv[1])
print(" ".join(f"t{i}.localhost" for i in range(max(1, n - 20), n)) or "t0.localhost")
EOF
)
  cold_times=$(for h in $cold; do curl -s -o /dev/null -w '%{time_total}\n' -H "Host: $h" 127.0.0.1:18181/; done)
  read -r cold_p50 cold_max < <(python3 -c '
import sys
t = sorted(float(x) * 1e3 for x in sys.stdin.read().split())
print("%.2fms %.2fms" % (t[len(t) // 2], t[-1]))' <<<"$cold_times")
  "$lt" --target http://127.0.0.1:18181 --host-pattern 't{i}.localhost' --host-count "$n" \
    --path / -c "$conns" -d "${secs}s" --warmup 2s --quiet --json "$out/density-$n.json" >/dev/null
  loaded=$(rss_mib $pid)
  python3 - "$out/density-$n.json" "$n" "$load_s" "$idle" "$loaded" "$cold_p50" "$cold_max" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n, load_s, idle, loaded, c50, cmax = sys.argv[2:]
l = r["latency_us"]
print("%8s %8s %8sM %8sM %11s %11s %10.0f %7dus %7dus %7d" % (
    n, load_s, idle, loaded, c50, cmax, r["throughput_rps"], l["p50"], l["p99"], r["failed"]))
EOF
  kill $pid
  wait $pid 2>/dev/null || true
done
