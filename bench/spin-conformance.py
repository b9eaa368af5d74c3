#!/usr/bin/env python3
"""A by-hand run of Spin's published conformance suite against Okra.

The suite (https://github.com/fermyon/conformance-tests) is not part of this
repository: check it out anywhere and point this script at it.

    python3 bench/spin-conformance.py SUITE_DIR [--target wasm32-unknown-unknown|wasm32-wasip2]
                                                [--gateway target/debug/gateway] [--only NAME]
                                                [--componentize] [--ignore-hop-by-hop]

What it does, per the suite's own rules (its docs/test-manifest.md and
crates/conformance-tests):

- builds every component in SUITE_DIR/components with cargo for --target:
  wasm32-unknown-unknown gives core modules, as the suite's release ships
  them (Okra componentizes them at load); with --componentize they are made
  components first, by `wasm-tools component new` (which must be on PATH);
- starts the services the tests' preconditions name, on 127.0.0.1 only: a
  private redis-server, HTTP and TCP echo servers of its own, and uses the
  machine's Mosquitto (1883) and PostgreSQL (5432, database `spin_dev`
  recreated from the suite's postgres-init SQL);
- for each test, fills in the manifest template (%{source=..}, %{port=..}),
  serves it on a fresh gateway as `example.com` (--block-networks none: every
  service is on loopback), sends each invocation over HTTP/1.1 and compares
  the reply as the suite's assert_response does: exact status and body, then
  headers with names and values lowercased; an expected header must be there
  unless optional, must match its value when one is given, and any header
  left over fails the test.

Prints one line per test and exits non-zero if any failed.
"""

import argparse
import http.client
import http.server
import json
import os
import pathlib
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

try:
    import json5
except ImportError:  # pragma: no cover - told to the user
    sys.exit("this script needs the json5 package: python3 -m pip install json5")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers a POST with its body, as text/plain (the suite's http-echo)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-type", "text/plain")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_http_echo():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


class TcpEcho(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            self.request.sendall(data)


def start_tcp_echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), TcpEcho)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def start_redis(workdir):
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    wait_port(port)
    return process, port


def reset_postgres(suite):
    def psql(*args):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1",
                        "-q", *args], check=True, stdout=subprocess.DEVNULL)

    psql("-d", "postgres", "-c", "DROP DATABASE IF EXISTS spin_dev")
    psql("-d", "postgres", "-c", "CREATE DATABASE spin_dev")
    init = suite / "crates/test-environment/services/postgres-init"
    for sql in sorted(init.glob("*.sql")):
        psql("-d", "spin_dev", "-f", str(sql))


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def build(suite, target):
    """Builds each component; returns {component name: wasm path}."""
    built = {}
    for manifest in sorted((suite / "components").glob("*/Cargo.toml")):
        name = manifest.parent.name
        subprocess.run(
            ["cargo", "build", "--release", "--target", target, "--manifest-path", str(manifest),
             "--target-dir", str(suite / "target")],
            check=True,
        )
        crate = re.search(r'^name\s*=\s*"([^"]+)"', manifest.read_text(), re.M).group(1)
        built[name] = suite / "target" / target / "release" / (crate.replace("-", "_") + ".wasm")
    return built


def fill(text, ports, sources=None):
    """Fills in %{port=N} (and %{source=NAME}) as the suite's runner does."""
    def replace(match):
        key, value = match.group(1), match.group(2)
        if key == "port":
            return str(ports[int(value)])
        if key == "source" and sources is not None:
            return str(sources[value])
        raise ValueError(f"unknown template key {key}")
    return re.sub(r"%\{(\w+)=([^}]*)\}", replace, text)


def run_gateway(gateway, manifest, data):
    listen, metrics = free_port(), free_port()
    process = subprocess.Popen(
        [gateway, "--listen", f"127.0.0.1:{listen}", "--metrics-listen", f"127.0.0.1:{metrics}",
         "--no-api", "--block-networks", "none", "--outbound-postgres", "--data-dir", str(data),
         # Tests that send no Host header reach the app as the address the
         # client dials, as Spin (one app per process) serves any host.
         "--app", f"example.com={manifest}", "--app", f"127.0.0.1={manifest}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OKRA_LOG": "warn"},
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited: {process.stderr.read().decode()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", metrics, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return process, listen
        except OSError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the gateway never became ready")


def check(invocation, port, ports, ignored):
    """One invocation; returns None when it passes, else why not. Headers
    named in `ignored` are dropped from the reply before comparing."""
    request = invocation["request"]
    response = invocation["response"]
    headers = {h["name"]: fill(h["value"], ports) for h in request.get("headers", [])}
    body = request.get("body")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(request.get("method", "GET"), request["path"], body=body, headers=headers)
    reply = conn.getresponse()
    actual_body = reply.read().decode("utf-8", errors="replace")
    if reply.status != response.get("status", 200):
        return f"status {reply.status}, expected {response.get('status', 200)} (body {actual_body!r})"
    if actual_body != response.get("body", ""):
        return f"body {actual_body!r}, expected {response.get('body', '')!r}"
    actual = {name.lower(): value.lower() for name, value in reply.getheaders()
              if name.lower() not in ignored}
    for expected in response.get("headers", []):
        name = expected["name"].lower()
        value = actual.pop(name, None)
        if value is None:
            if not expected.get("optional", False):
                return f"missing header {name}"
            continue
        if "value" in expected and value != expected["value"].lower():
            return f"header {name}: {value!r}, expected {expected['value'].lower()!r}"
    if actual:
        return f"unexpected headers {actual}"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=pathlib.Path)
    parser.add_argument("--target", default="wasm32-unknown-unknown")
    parser.add_argument("--gateway", default="target/debug/gateway")
    parser.add_argument("--only")
    parser.add_argument("--componentize", action="store_true",
                        help="serve components made with `wasm-tools component new`, not the modules")
    parser.add_argument("--ignore-hop-by-hop", action="store_true",
                        help="set aside `connection` and `keep-alive` in replies (the suite does not)")
    args = parser.parse_args()
    suite, gateway = args.suite.resolve(), str(pathlib.Path(args.gateway).resolve())

    sources = build(suite, args.target)
    if args.componentize:
        for name, module in sources.items():
            component = module.with_suffix(".component.wasm")
            subprocess.run(["wasm-tools", "component", "new", str(module), "-o", str(component)],
                           check=True)
            sources[name] = component
    work = pathlib.Path(tempfile.mkdtemp(prefix="okra-conformance-"))
    redis, redis_port = start_redis(work)
    reset_postgres(suite)
    ports = {80: start_http_echo(), 7: start_tcp_echo(), 6379: redis_port, 1883: 1883, 5432: 5432}
    ignored = {"connection", "keep-alive"} if args.ignore_hop_by_hop else set()
    failures = 0
    try:
        for test in sorted((suite / "tests").iterdir()):
            if args.only and test.name != args.only:
                continue
            spec = json5.loads((test / "test.json5").read_text())
            app = work / test.name
            app.mkdir()
            manifest = app / "spin.toml"
            manifest.write_text(fill((test / "spin.toml").read_text(), ports, sources))
            process, port = run_gateway(gateway, manifest, app / "data")
            try:
                why = None
                for invocation in spec["invocations"]:
                    why = check(invocation, port, ports, ignored)
                    if why:
                        break
            except Exception as error:  # noqa: BLE001 - reported as the test's failure
                why = f"{type(error).__name__}: {error}"
            finally:
                process.kill()
                process.wait()
            failures += why is not None
            print(f"{'ok  ' if why is None else 'FAIL'} {test.name}" + (f": {why}" if why else ""),
                  flush=True)
    finally:
        redis.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{failures} failed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
