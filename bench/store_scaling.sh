#!/usr/bin/env bash
# Does a deploy get slower as the store fills up? (issue 12, item 7.) For each
# store (file, then a private redis-server), one gateway with its API: a
# deploy's latency is measured with 1 tenant in the store, then again after
# 10,000 more tenants (each with an app and a custom domain) were created
# through the API. Reports the median and p90 of DEPLOYS deploys each time
# and the ratio full/empty; the target is a ratio of at most 2.
# Usage: bench/store_scaling.sh [tenants] [deploys]   (from the repo root;
# GW=path/to/gateway, default target/release/gateway; needs curl and redis-server)
set -euo pipefail
tenants=${1:-10000}
deploys=${2:-30}
gw=${GW:-target/release/gateway}
[ -x "$gw" ] || cargo build --release -p gateway --bin gateway
out=${OUT:-bench/results/store-scaling}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

api=127.0.0.1:18381
admin=bench-admin

# A static app: validating it compiles nothing, so what is measured is the
# API and the store.
mkdir -p "$work/app"
cat >"$work/app/spin.toml" <<'EOF'
spin_manifest_version = 2
[application]
name = "web"
[[trigger.http]]
route = "/..."
static_response = { body = "hello" }
EOF
tar czf "$work/app.tgz" -C "$work/app" spin.toml

call() { # call METHOD PATH TOKEN [curl args...]: prints the body
  local method=$1 path=$2 token=$3
  shift 3
  curl -sf -X "$method" -H "Authorization: Bearer $token" "http://$api$path" "$@"
}
new_tenant() { # new_tenant NAME: prints its token
  call POST /v1/tenants "$admin" -H 'content-type: application/json' -d "{\"name\":\"$1\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
deploy_times() { # deploy_times TOKEN N: prints one latency (ms) per deploy
  for _ in $(seq "$2"); do
    curl -sf -o /dev/null -w '%{time_total}\n' -X PUT -H "Authorization: Bearer $1" \
      --data-binary "@$work/app.tgz" "http://$api/v1/tenants/probe/apps/web" |
      awk '{ printf "%.3f\n", $1 * 1000 }'
  done
}
summary() { # summary FILE: "median p90" in ms
  python3 -c 'import statistics,sys; v=sorted(float(x) for x in open(sys.argv[1])); print("%.2f %.2f" % (statistics.median(v), v[int(len(v)*0.9)-1]))' "$1"
}
fill() { # fill N: N tenants, each with a deployed app and a domain, 8 clients at once
  python3 - "$1" "$api" "$admin" "$work/app.tgz" <<'PY'
import http.client, json, sys, threading
count, api, admin, bundle = int(sys.argv[1]), sys.argv[2], sys.argv[3], open(sys.argv[4], "rb").read()
host, port = api.split(":")
def worker(ids):
    conn = http.client.HTTPConnection(host, int(port))
    def call(method, path, token, body=None, ctype=None):
        headers = {"Authorization": f"Bearer {token}"}
        if ctype:
            headers["Content-Type"] = ctype
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        assert r.status < 300, (method, path, r.status, data)
        return data
    for i in ids:
        token = json.loads(call("POST", "/v1/tenants", admin, json.dumps({"name": f"t{i}"}), "application/json"))["token"]
        call("PUT", f"/v1/tenants/t{i}/apps/web", token, bundle, "application/octet-stream")
        call("PUT", f"/v1/tenants/t{i}/apps/web/domains/t{i}.example.com", token)
threads = [threading.Thread(target=worker, args=(range(k, count, 8),)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
PY
}

measure() { # measure NAME STORE-URL
  local name=$1 store=$2
  OKRA_ADMIN_TOKEN=$admin "$gw" --listen 127.0.0.1:18380 --metrics-listen 127.0.0.1:19390 \
    --api-listen "$api" --threads 2 --store "$store" --data-dir "$work/$name-data" \
    >"$out/$name-gateway.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf -o /dev/null "http://$api/v1/openapi.json" && break; sleep 0.1; done
  local token
  token=$(new_tenant probe)
  deploy_times "$token" 3 >/dev/null # warm up
  deploy_times "$token" "$deploys" >"$out/$name-1.txt"
  local started=$SECONDS
  fill "$tenants"
  echo "$name: created $tenants tenants in $((SECONDS - started)) s"
  # Measure in steady state, not while the gateway still builds the apps
  # the fill just deployed: wait until its served version stops moving.
  local last="" now="" still=0
  while [ "$still" -lt 3 ]; do
    now=$(curl -s 127.0.0.1:19390/metrics | awk '/^okra_config_version / {print $2}')
    if [ "$now" = "$last" ]; then still=$((still + 1)); else still=0; last=$now; fi
    sleep 1
  done
  echo "$name: the gateway serves version $now after $((SECONDS - started)) s"
  deploy_times "$token" "$deploys" >"$out/$name-$tenants.txt"
  read -r m1 p1 < <(summary "$out/$name-1.txt")
  read -r mn pn < <(summary "$out/$name-$tenants.txt")
  printf '%s store: deploy median %s ms (p90 %s) with 1 tenant, %s ms (p90 %s) with %s: ratio %s\n' \
    "$name" "$m1" "$p1" "$mn" "$pn" "$((tenants + 1))" \
    "$(python3 -c "print('%.2f' % ($mn / $m1))")"
  kill "${pids[-1]}"
  wait "${pids[-1]}" 2>/dev/null || true
}

measure file "file:$work/file-store"
redis_port=16391
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  >"$out/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
measure redis "redis://127.0.0.1:$redis_port"
