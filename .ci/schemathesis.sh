#!/usr/bin/env bash
# The REST API against its own OpenAPI document (issue 12, item 15):
# schemathesis with every check, the stateful phase on, bounded in examples
# and time, against a gateway (target/debug/gateway, built by the tests) with
# a fresh file store. What the schema cannot say is in .ci/schemathesis.toml.
# Usage: .ci/schemathesis.sh   (from the repo root; SCHEMATHESIS=path/to/st)
set -euo pipefail
st=${SCHEMATHESIS:-}
if [ -z "$st" ]; then
  venv=${TMPDIR:-/tmp}/okra-schemathesis
  [ -x "$venv/bin/schemathesis" ] || {
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q schemathesis==4.32.5
  }
  st=$venv/bin/schemathesis
fi
data=$(mktemp -d)
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api=127.0.0.1:$(port_of)
OKRA_ADMIN_TOKEN=schemathesis target/debug/gateway --listen "127.0.0.1:$(port_of)" \
  --metrics-listen "127.0.0.1:$(port_of)" --api-listen "$api" --data-dir "$data" --threads 2 \
  >"$data/gateway.log" 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null "http://$api/v1/openapi.json" && break; sleep 0.1; done
"$st" --config-file .ci/schemathesis.toml run "http://$api/v1/openapi.json" \
  --checks all --phases examples,coverage,fuzzing,stateful \
  -H "Authorization: Bearer schemathesis" \
  --max-examples 30 --max-time 120 --seed 1 --no-color
