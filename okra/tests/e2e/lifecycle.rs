//! The process's life: a listener that cannot be bound ends the start at
//! once with a one-line error naming the address and the flag; `/readyz`
//! waits for the store; SIGTERM drains requests in flight, stops the guests
//! still running after the grace period, and exits 0.

use crate::support::control::Redis;
use crate::support::{Launch, free_port, gateway_bin, metrics_get, wait_inflight};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `command` to its end, or kills it after `limit` and fails the test:
/// a start that hangs is the bug these tests look for.
fn run_bounded(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let started = Instant::now();
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match wait.recv_timeout(limit) {
        Ok(output) => output.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("still running after {:?}", started.elapsed());
        }
    }
}

#[test]
fn a_listen_port_in_use_ends_the_start_with_the_flag_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let metrics = free_port().to_string();
    let api = free_port().to_string();
    for (flag, listen, metrics_listen, api_listen) in [
        ("--listen", addr.as_str(), metrics.as_str(), api.as_str()),
        (
            "--metrics-listen",
            "127.0.0.1:0",
            addr.as_str(),
            api.as_str(),
        ),
        ("--api-listen", "127.0.0.1:0", "127.0.0.1:0", addr.as_str()),
    ] {
        check_refused(flag, listen, metrics_listen, api_listen, &addr);
    }
    // Two flags with one address: the second is refused, though the port
    // itself is free.
    let free = free_port().to_string();
    check_refused("--metrics-listen", &free, &free, &api, &free);
}

/// Starts a gateway with these listeners and checks it ends at once with
/// exit 1 and the line naming `addr` and `flag`.
fn check_refused(flag: &str, listen: &str, metrics_listen: &str, api_listen: &str, addr: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = Command::new(gateway_bin());
    gateway
        .args(["--listen", listen, "--metrics-listen", metrics_listen])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--api-listen", api_listen])
        .env("OKRA_LOG", "warn");
    let output = run_bounded(gateway, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{flag}: {stderr}");
    let line = format!("error: cannot listen on {addr} ({flag})");
    assert!(stderr.contains(&line), "{flag}: {stderr}");
    assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
}

#[test]
fn okra_up_on_a_port_in_use_says_so_and_never_claims_to_serve() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let app = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let mut up = Command::new(env!("CARGO_BIN_EXE_okra"));
    up.args(["up", "--no-build", "--listen", &addr])
        .arg(&app)
        .env("HOME", "/nonexistent");
    let output = run_bounded(up, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr} (--listen)")),
        "{stderr}"
    );
    assert!(!stderr.contains("Serving"), "{stderr}");
}

/// Sends `head` then, every 250 ms, one chunk of ten digits, twenty times;
/// returns the whole response.
/// How many chunks a slow upload sends, 250 ms apart.
const CHUNKS: usize = 20;

fn slow_upload(addr: std::net::SocketAddr, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: k.localhost\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).unwrap();
    for _ in 0..CHUNKS {
        std::thread::sleep(Duration::from_millis(250));
        conn.write_all(b"a\r\n0123456789\r\n").unwrap();
    }
    conn.write_all(b"0\r\n\r\n").unwrap();
    read_all(conn)
}

/// GETs `path` on a connection of its own and reads until the server closes.
fn get_closing(addr: std::net::SocketAddr, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: k.localhost\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).unwrap();
    read_all(conn)
}

fn read_all(mut conn: TcpStream) -> String {
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_requests_stops_the_rest_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let kitchen = format!("k.localhost={}", test_programs::KITCHEN_MANIFEST);
    let mut gw = Launch {
        env: &[("OKRA_LOG", "info")],
        stderr: Some(std::fs::File::create(&log).unwrap()),
        ..Launch::default()
    }
    .start(&[kitchen.as_str()], &["--shutdown-grace-ms", "10000"]);
    let addr = gw.addr;
    // Two requests that finish within the grace period, streaming their
    // bodies in while the gateway shuts down, and two guests that never end.
    let uploads: Vec<_> = ["/p2/t/echo", "/p3/t/echo"]
        .into_iter()
        .map(|path| std::thread::spawn(move || slow_upload(addr, path)))
        .collect();
    let loops: Vec<_> = ["/p2/t/loop", "/p3/t/loop"]
        .into_iter()
        .map(|path| std::thread::spawn(move || get_closing(addr, path)))
        .collect();
    wait_inflight(&gw, 4).await;
    let started = Instant::now();
    let status =
        tokio::task::block_in_place(|| gw.signal_and_wait("TERM", Duration::from_secs(30)));
    let took = started.elapsed();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("overflowed"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The guests that never end were stopped once the grace period was over.
    assert!(took >= Duration::from_secs(10), "exited after {took:?}");
    for upload in uploads {
        let reply = upload.join().unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        // Chunked: every chunk echoed, then the last, empty one.
        assert_eq!(reply.matches("0123456789").count(), CHUNKS, "{reply}");
        assert!(reply.ends_with("\r\n0\r\n\r\n"), "{reply}");
    }
    for looping in loops {
        let reply = looping.join().unwrap();
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(reply.contains("shutting_down"), "{reply}");
    }
    // Nothing listens any more.
    assert!(TcpStream::connect(addr).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_waits_for_the_store_and_sigterm_ends_an_idle_gateway_at_once() {
    let mut redis = Redis::start();
    let url = redis.server.url();
    redis.server.stop();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    // A grace period far longer than the test: an idle gateway must not wait
    // it out.
    let mut gw = Launch::default().start(
        &[],
        &[
            "--store",
            &url,
            "--no-api",
            "--data-dir",
            &data_dir,
            "--shutdown-grace-ms",
            "600000",
        ],
    );
    let (status, body) = metrics_get(&gw, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not loaded"), "{body}");
    redis.server.restart();
    let mut ready = false;
    for _ in 0..300 {
        if metrics_get(&gw, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "/readyz never turned 200 once the store was back");
    // With nothing in flight, the drain does not wait out its grace period.
    let status =
        tokio::task::block_in_place(|| gw.signal_and_wait("TERM", Duration::from_secs(60)));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn app_flags_without_a_store_say_the_api_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let hello = format!("hello.localhost={}", test_programs::HELLO_MANIFEST);
    let gw = crate::support::Launch {
        stderr: Some(std::fs::File::create(&log).unwrap()),
        ..Launch::default()
    }
    .start(&[], &["--app", &hello]);
    drop(gw);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("so the REST API is off"), "{stderr}");
    assert!(stderr.contains("give --store"), "{stderr}");
}
