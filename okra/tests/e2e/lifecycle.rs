//! The process's life: a listener that cannot be bound ends the start at
//! once with a one-line error naming the address and the flag.

use crate::support::{free_port, gateway_bin};
use std::net::TcpListener;
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
    for (flag, listen, metrics_listen) in [
        ("--listen", addr.as_str(), metrics.as_str()),
        ("--metrics-listen", "127.0.0.1:0", addr.as_str()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut gateway = Command::new(gateway_bin());
        gateway
            .args(["--listen", listen, "--metrics-listen", metrics_listen])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--api-listen", &free_port().to_string()])
            .env("OKRA_LOG", "warn");
        let output = run_bounded(gateway, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{flag}: {stderr}");
        let line = format!("error: cannot listen on {addr} ({flag})");
        assert!(stderr.contains(&line), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
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
