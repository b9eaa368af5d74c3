"""Reads a gateway's /metrics page on stdin and prints the count, p50 and p99
of okra_wasm_instantiate_seconds (as histogram bucket upper bounds)."""
import re
import sys

buckets = []
total = 0
for line in sys.stdin:
    m = re.match(r'okra_wasm_instantiate_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
    if m:
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        buckets.append((le, int(m.group(2))))
    m = re.match(r"okra_wasm_instantiate_seconds_count (\d+)", line)
    if m:
        total = int(m.group(1))


def quantile(q):
    for le, n in buckets:
        if n >= q * total:
            return le
    return float("nan")


print(
    "okra_wasm_instantiate_seconds: n=%d p50<=%.1fus p99<=%.1fus"
    % (total, quantile(0.5) * 1e6, quantile(0.99) * 1e6)
)
