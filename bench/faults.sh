#!/usr/bin/env bash
# Faults under load (issue 12): a cluster of two gateways and a control plane
# on a private redis-server, ten tenants each serving the spin-sdk 5 hello,
# and closed-loop load spread over their hostnames on both gateways while:
#   1. Redis is stopped for a few seconds and started again;
#   2. the control plane is kill -9'd in the middle of deploys to one app
#      (not under load) and started again;
#   3. gateway 1 is replaced by a new process with Pingora's graceful upgrade
#      (--upgrade, then SIGQUIT to the old one: the listening sockets are
#      handed over).
# Each phase reports the requests made, failed and refused; the promise is
# zero failed and zero refused for the apps that were not being changed.
# Usage: bench/faults.sh [seconds per phase] [connections]   (from the repo root)
set -euo pipefail
secs=${1:-20}
conns=${2:-16}
out=${OUT:-bench/results/faults}
mkdir -p "$out"
cargo build --release -q -p gateway -p okra -p loadtest
cargo build -q -p test-programs
gw=target/release/gateway
cp=target/release/control-plane
okra=target/release/okra
lt=target/release/loadtest
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null; rm -rf "$work"' EXIT

redis_port=16491
store=redis://127.0.0.1:$redis_port
api=127.0.0.1:18681
start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --appendonly yes --dir "$work" \
    >>"$out/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis did not start" >&2
  exit 1
}
start_control_plane() {
  OKRA_ADMIN_TOKEN=bench "$cp" --store "$store" --api-listen "$api" --data-dir "$work/cp" \
    >>"$out/control-plane.log" 2>&1 &
  cp_pid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://$api/v1/openapi.json" && return; sleep 0.1; done
  echo "the control plane did not start" >&2
  exit 1
}
start_gateway() { # start_gateway N [extra flags]: listens on 1868N
  local n=$1
  shift
  "$gw" --store "$store" --no-api --listen "127.0.0.1:1868$((n + 1))" \
    --metrics-listen "127.0.0.1:1969$n" --data-dir "$work/gw$n" --threads 2 "$@" \
    >>"$out/gateway$n.log" 2>&1 &
  pids+=($!)
  eval "gw${n}_pid=$!"
}
wait_served() { # wait_served PORT HOST
  for _ in $(seq 300); do
    curl -sf -o /dev/null -H "Host: $2" "127.0.0.1:$1/" && return
    sleep 0.05
  done
  echo "$2 was never served on :$1" >&2
  exit 1
}

start_redis
start_control_plane
start_gateway 1
start_gateway 2

mkdir -p "$work/app"
cp test-programs/guests/target/wasm32-wasip2/release/hello5_guest.wasm "$work/app/hello.wasm"
sed 's|^source = .*|source = "hello.wasm"|' bench/apps/hello5.toml >"$work/app/spin.toml"
export OKRA_SERVER=http://$api
hosts=()
for i in $(seq 0 9); do
  token=$("$okra" --token bench tenants create "t$i" | sed -n 's/^Its token (shown only now): //p')
  OKRA_TOKEN=$token OKRA_TENANT=t$i "$okra" deploy "$work/app" --app web --no-build >/dev/null
  hosts+=(--host "web.t$i.localhost")
  [ "$i" = 0 ] && changing_token=$token
done
for i in $(seq 0 9); do
  wait_served 18682 "web.t$i.localhost"
  wait_served 18683 "web.t$i.localhost"
done

load() { # load NAME PORT: closed-loop load on one gateway for the phase
  "$lt" --target "http://127.0.0.1:$2" "${hosts[@]}" --path / -c "$conns" -d "${secs}s" \
    --max-failed-ratio 1 --quiet --json "$out/$1.json" >/dev/null 2>&1
}
report() { # report NAME
  python3 - "$out/$1.json" "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
refused = sum(n for cause, n in r.get("failures", {}).items() if "refused" in cause)
print(f"{sys.argv[2]:<28} {r['requests']:>8} requests  {r['failed']:>4} failed  {refused:>4} refused  {r['throughput_rps']:>8.0f} req/s")
EOF
}

echo "machine: $(nproc) cores; two gateways --threads 2, loadtest -c$conns per gateway, ${secs}s a phase"
# 1. Redis goes away and comes back.
load redis-restart-gw1 18682 &
l1=$!
load redis-restart-gw2 18683 &
l2=$!
sleep $((secs / 4))
kill "$redis_pid"
sleep 3
start_redis
wait "$l1" "$l2"
report redis-restart-gw1
report redis-restart-gw2

# 2. The control plane dies in the middle of deploys (to t0/web, which is
#    not part of what is checked).
load control-plane-kill-gw1 18682 &
l1=$!
(
  for i in $(seq 50); do
    OKRA_TOKEN=$changing_token OKRA_TENANT=t0 "$okra" deploy "$work/app" --app web --no-build \
      >/dev/null 2>&1 || true
  done
) &
deploys=$!
sleep $((secs / 4))
kill -9 "$cp_pid"
kill "$deploys" 2>/dev/null || true
start_control_plane
wait "$l1"
report control-plane-kill-gw1
"$okra" --token bench apps show web --tenant t0 >/dev/null && echo "control plane back; t0/web readable"

# 3. Gateway 1 is replaced under load by a graceful upgrade.
load graceful-upgrade-gw1 18682 &
l1=$!
sleep $((secs / 4))
old=$gw1_pid
start_gateway 1 --upgrade
sleep 2
kill -QUIT "$old"
wait "$l1"
report graceful-upgrade-gw1
