//! The `loadtest` binary against a real HTTP/1.1 + h2c server on 127.0.0.1
//! that counts what it receives: the report must agree with what the server
//! saw, hosts must follow the asked distribution, HTTP/2 must really be
//! HTTP/2, and open-loop latency must count from when a request was due.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server saw: (host, path, HTTP version) → count.
type Seen = Arc<Mutex<BTreeMap<(String, String, String), u64>>>;

struct Server {
    addr: SocketAddr,
    seen: Seen,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    /// Answers 200, except `/fail` (500) and `/stall-once` (the first one waits 300 ms).
    fn start() -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen: Seen = Arc::default();
        let stalled = Arc::new(AtomicBool::new(false));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = seen.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counts = counts.clone();
                let stalled = stalled.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<Incoming>| {
                        let counts = counts.clone();
                        let stalled = stalled.clone();
                        async move {
                            let host = req
                                .headers()
                                .get("host")
                                .and_then(|h| h.to_str().ok())
                                .map(str::to_string)
                                .or_else(|| req.uri().authority().map(|a| a.to_string()))
                                .unwrap_or_default();
                            let path = req.uri().path().to_string();
                            let version = format!("{:?}", req.version());
                            *counts
                                .lock()
                                .unwrap()
                                .entry((host, path.clone(), version))
                                .or_default() += 1;
                            if path == "/stall-once" && !stalled.swap(true, Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                            }
                            let status = if path == "/fail" { 500 } else { 200 };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"hello")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn total(&self, filter: impl Fn(&(String, String, String)) -> bool) -> u64 {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|(k, _)| filter(k)).map(|(_, n)| n).sum()
    }
}

/// Runs loadtest with `args` and returns its JSON report.
fn loadtest(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .args(["--json", "-", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "loadtest {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn closed_loop_sends_exactly_the_requested_count() {
    let server = Server::start();
    let report = loadtest(&[
        "--target",
        &server.url(),
        "-c",
        "4",
        "-n",
        "500",
        "--path",
        "/hello",
    ]);
    assert_eq!(report["requests"], 500);
    assert_eq!(report["ok"], 500);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["statuses"]["200"], 500);
    assert_eq!(
        server.total(|(_, path, v)| path == "/hello" && v == "HTTP/1.1"),
        500
    );
    let timeline_responses: u64 = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["responses"].as_u64().unwrap())
        .sum();
    assert_eq!(timeline_responses, 500);
    let l = &report["latency_us"];
    assert!(l["p50"].as_u64().unwrap() <= l["p99"].as_u64().unwrap());
    assert!(l["p99"].as_u64().unwrap() <= l["max"].as_u64().unwrap());
    assert!(report["throughput_rps"].as_f64().unwrap() > 0.0);
}

#[test]
fn warmup_requests_are_sent_but_not_reported() {
    let server = Server::start();
    let report = loadtest(&[
        "--target",
        &server.url(),
        "-c",
        "2",
        "-n",
        "100",
        "--warmup",
        "300ms",
    ]);
    assert_eq!(report["requests"], 100);
    let sent = server.total(|_| true);
    assert!(sent > 100, "the warm-up sent nothing: {sent}");
}

#[test]
fn http2_multiplexes_streams_over_few_connections() {
    let server = Server::start();
    let report = loadtest(&[
        "--target",
        &server.url(),
        "--protocol",
        "http2",
        "-c",
        "2",
        "--streams",
        "8",
        "-n",
        "400",
        "--host",
        "h2.localhost",
    ]);
    assert_eq!(report["ok"], 400);
    assert_eq!(
        server.total(|(host, _, v)| host == "h2.localhost" && v == "HTTP/2.0"),
        400
    );
    assert_eq!(server.total(|(_, _, v)| v != "HTTP/2.0"), 0);
}

#[test]
fn hosts_follow_uniform_and_zipf_distributions() {
    let server = Server::start();
    let host = |i: usize| format!("t{i}.localhost");
    let count = |server: &Server, name: String| server.total(|(h, _, _)| *h == name);
    loadtest(&[
        "--target",
        &server.url(),
        "-n",
        "2000",
        "--host-pattern",
        "t{i}.localhost",
        "--host-count",
        "10",
    ]);
    for i in 0..10 {
        let n = count(&server, host(i));
        // Expected 200 each; binomial sd ≈ 13.
        assert!((100..300).contains(&n), "{}: {n}", host(i));
    }

    let server = Server::start();
    let report = loadtest(&[
        "--target",
        &server.url(),
        "-n",
        "3000",
        "--host-pattern",
        "t{i}.localhost",
        "--host-count",
        "100",
        "--zipf",
        "1.0",
    ]);
    assert_eq!(report["hosts"], 100);
    assert_eq!(server.total(|_| true), 3000);
    // p(t0) / p(t49) = 50 under Zipf(s = 1).
    let first = count(&server, host(0));
    let middle = count(&server, host(49));
    assert!(first > 10 * middle.max(1), "t0 {first}, t49 {middle}");
    assert_eq!(count(&server, host(100)), 0);
}

#[test]
fn a_scenario_file_mixes_requests_and_failures_are_broken_down() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("mix.toml");
    std::fs::write(
        &scenario,
        format!(
            "target = \"{}\"\nconnections = 3\nrequests = 800\n\
             [hosts]\nnames = [\"m.localhost\"]\n\
             [[request]]\npath = \"/ok\"\nweight = 3\n\
             [[request]]\nmethod = \"POST\"\npath = \"/fail\"\nbody = \"x\"\nweight = 1\n",
            server.url()
        ),
    )
    .unwrap();
    let report = loadtest(&[
        "--scenario",
        scenario.to_str().unwrap(),
        "--max-failed-ratio",
        "0.5",
    ]);
    let fails = server.total(|(_, path, _)| path == "/fail");
    let oks = server.total(|(_, path, _)| path == "/ok");
    assert_eq!(fails + oks, 800);
    assert!(
        (120..280).contains(&fails),
        "expected about 200 /fail, got {fails}"
    );
    assert_eq!(report["statuses"]["500"], fails);
    assert_eq!(report["statuses"]["200"], oks);
    assert_eq!(report["failed"], fails);
    assert_eq!(report["ok"], oks);
}

#[test]
fn open_loop_measures_from_when_a_request_was_due() {
    let server = Server::start();
    // One connection at 100 req/s: the first request stalls 300 ms, so the
    // ~30 due meanwhile queue behind it. Measured from when they were due,
    // their latency shows the stall; measured from when they were sent
    // (coordinated omission) it would not.
    let report = loadtest(&[
        "--target",
        &server.url(),
        "--rate",
        "100",
        "-c",
        "1",
        "-n",
        "60",
        "--path",
        "/stall-once",
    ]);
    assert_eq!(report["model"], "open");
    assert_eq!(report["requests"], 60);
    assert_eq!(server.total(|_| true), 60);
    let p90 = report["latency_us"]["p90"].as_u64().unwrap();
    assert!(p90 >= 100_000, "p90 {p90} µs hides the stall");
}

#[test]
fn connection_failures_are_reported_and_fail_the_run() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = format!("http://127.0.0.1:{port}");
    let args = ["--target", &target, "-c", "2", "-n", "10"];
    // Reported in full, with the failures allowed...
    let mut allowing = args.to_vec();
    allowing.extend(["--max-failed-ratio", "1"]);
    let report = loadtest(&allowing);
    assert_eq!(report["requests"], 10);
    assert_eq!(report["ok"], 0);
    assert_eq!(report["failures"]["connect: connection refused"], 10);
    // ...and by default a run where anything failed exits 1 after its report.
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("10 of 10 requests failed"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("10 failed"));
    let bad = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .args(["--max-failed-ratio", "2"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("from 0 to 1"));
}

#[test]
fn plots_are_written_as_svg() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let plots = dir.path().join("plots");
    loadtest(&[
        "--target",
        &server.url(),
        "-n",
        "200",
        "--plot-dir",
        plots.to_str().unwrap(),
    ]);
    for name in ["latency-over-time.svg", "latency-percentiles.svg"] {
        let svg = std::fs::read_to_string(plots.join(name)).unwrap();
        assert!(
            svg.starts_with("<svg"),
            "{name}: {}",
            &svg[..svg.len().min(80)]
        );
        assert!(svg.contains("<polyline"), "{name} has no line");
    }
}

#[test]
fn bad_arguments_exit_2_and_say_what_is_wrong() {
    for (args, want) in [
        (vec!["--target", "ftp://x"], "only http://"),
        (
            vec!["--target", "http://x", "--duration", "forever"],
            "forever",
        ),
        (vec!["--scenario", "/nonexistent.toml"], "/nonexistent.toml"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
