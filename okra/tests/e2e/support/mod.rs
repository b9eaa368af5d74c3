//! Starts the real `gateway` binary on free ports and talks to it over real
//! sockets: a hyper client for ordinary requests, raw TCP for framing tests.

pub mod control;
pub mod upstream;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running gateway process, killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
}

pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr")
}

impl Gateway {
    /// Starts the gateway with the test kitchen app on `k.localhost` and the
    /// hello example on `hello.localhost`, plus `extra` flags.
    pub fn start(extra: &[&str]) -> Gateway {
        let kitchen = format!("k.localhost={}", test_programs::KITCHEN_MANIFEST);
        let hello = format!("hello.localhost={}", test_programs::HELLO_MANIFEST);
        Gateway::start_apps(&[kitchen.as_str(), hello.as_str()], extra)
    }

    /// Starts the gateway serving `apps` (each `HOST=path/to/spin.toml`), plus `extra` flags.
    pub fn start_apps(apps: &[&str], extra: &[&str]) -> Gateway {
        Launch::default().start(apps, extra)
    }
    fn wait_ready(&self) {
        for _ in 0..600 {
            if let Ok(resp) = raw_request(
                self.addr,
                "GET /.well-known/spin/health HTTP/1.1\r\nHost: x\r\n\r\n",
            ) && resp.starts_with("HTTP/1.1 200")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway did not become ready on {}", self.addr);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Resident memory of the gateway process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory the gateway process ever had, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Gateway {
    /// Sends the process `signal` (`TERM`, `INT`, ...) and waits up to
    /// `limit` for it to exit; fails the test if it does not.
    pub fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -s {signal} failed");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway still runs {limit:?} after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `gateway` binary. It belongs to the `gateway` crate, so Cargo builds
/// it for that crate's tests, not this one's; `cargo test --workspace` (the
/// README's test command) builds both into the same directory, where `okra`
/// and `control-plane` are. A missing binary fails the test with what to
/// run. Its age is not checked: Cargo rightly leaves a binary alone when a
/// change (to tests, say) does not change it, so an older file is no sign of
/// old code; run `cargo build -p gateway` before `cargo test -p okra`.
pub fn gateway_bin() -> std::path::PathBuf {
    let okra = std::path::Path::new(env!("CARGO_BIN_EXE_okra"));
    let gateway = okra.with_file_name(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    assert!(
        gateway.exists(),
        "{} is not built: run `cargo test --workspace`, or `cargo build -p gateway` first",
        gateway.display()
    );
    gateway
}

/// A file a gateway's stderr goes to, in a directory of its own.
pub struct LogFile {
    _dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

impl LogFile {
    pub fn new() -> LogFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.log");
        LogFile { _dir: dir, path }
    }

    /// A handle for [`Launch::stderr`].
    pub fn file(&self) -> Option<std::fs::File> {
        Some(std::fs::File::create(&self.path).unwrap())
    }

    /// The log once it contains `needle` (or after 2 s, as it is then).
    pub async fn wait_for(&self, needle: &str) -> String {
        let mut log = String::new();
        for _ in 0..200 {
            log = std::fs::read_to_string(&self.path).unwrap();
            if log.contains(needle) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        log
    }
}

/// How to start a gateway beyond its apps and flags.
#[derive(Default)]
pub struct Launch<'a> {
    /// Extra environment variables.
    pub env: &'a [(&'a str, &'a str)],
    /// The public listener (a free port when `None`).
    pub listen: Option<SocketAddr>,
    /// Where the gateway's stderr goes (inherited when `None`).
    pub stderr: Option<std::fs::File>,
}

impl Launch<'_> {
    pub fn start(self, apps: &[&str], extra: &[&str]) -> Gateway {
        let addr = self.listen.unwrap_or_else(free_port);
        let metrics = free_port();
        let mut cmd = Command::new(gateway_bin());
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .arg("--threads")
            .arg("2");
        for app in apps {
            cmd.arg("--app").arg(app);
        }
        if !apps.is_empty() && !extra.contains(&"--store") {
            // Such a gateway has no API; saying so keeps its start quiet.
            cmd.arg("--no-api");
        }
        cmd.args(extra)
            .env("OKRA_LOG", "warn")
            .envs(self.env.iter().copied())
            .stdout(Stdio::null())
            .stderr(self.stderr.map_or_else(Stdio::inherit, Stdio::from));
        let child = cmd.spawn().expect("spawn gateway");
        let gw = Gateway {
            child,
            addr,
            metrics,
        };
        gw.wait_ready();
        gw
    }
}

/// A response read whole.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends a request with `Host: host` and reads the whole reply.
pub async fn send(
    gw: &Gateway,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::builder()
        .method(method)
        .uri(gw.url(path))
        .header("host", host);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = client
        .request(req.body(Full::new(body)).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(gw: &Gateway, host: &str, path: &str) -> Reply {
    send(gw, "GET", host, path, &[], Bytes::new()).await
}

/// GETs `path` from the metrics listener: (status, body).
pub async fn metrics_get(gw: &Gateway, path: &str) -> (u16, String) {
    plain_get(gw.metrics, path).await
}

/// GETs `path` from `addr` and reads the status and the body as text.
pub async fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri = format!("http://{addr}{path}").parse().expect("metrics uri");
    let resp = client.get(uri).await.expect("metrics response");
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("metrics body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Waits until `/metrics` holds every line in `lines`, and returns the page.
///
/// The gateway records a request's metrics after its response body is flushed,
/// so a client can read `/metrics` a moment before they land.
pub async fn wait_metrics(gw: &Gateway, lines: &[&str]) -> String {
    let mut text = String::new();
    for _ in 0..500 {
        text = metrics_get(gw, "/metrics").await.1;
        if lines.iter().all(|want| text.lines().any(|l| l == *want)) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never saw all of {lines:?} in\n{text}");
}

/// Waits until the gateway reports `n` requests in flight for the local tenant.
pub async fn wait_inflight(gw: &Gateway, n: u32) {
    let line = format!("okra_tenant_inflight_requests{{tenant=\"local\"}} {n}");
    wait_metrics(gw, &[&line]).await;
}

/// Writes `request` on a fresh TCP connection and reads until the server closes or 2 s pass.
pub fn raw_request(addr: SocketAddr, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && response_complete(&out) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// True once a Content-Length response has all its body (enough for small replies).
fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| body.len() >= n)
}

/// `Bearer <HS256 JWT>` with claim `role`, signed with `secret`, valid for
/// ten minutes.
pub fn bearer_jwt(secret: &str, role: &str) -> String {
    let claims = serde_json::json!({
        "role": role,
        "exp": jsonwebtoken::get_current_timestamp() + 600,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token");
    format!("Bearer {token}")
}

/// Writes `<name>.toml` in `dir`: app `name` serving `wasm` on every path
/// as component `c`, with extra `[variables]` lines and `[component.c]`
/// keys. Returns the manifest's path.
pub fn one_component_manifest(
    dir: &std::path::Path,
    name: &str,
    wasm: &str,
    variables: &str,
    component_keys: &str,
) -> String {
    let manifest = dir.join(format!("{name}.toml"));
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"{name}\"\n\
             [variables]\n{variables}\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
             [component.c]\nsource = {wasm:?}\n{component_keys}\n"
        ),
    )
    .unwrap();
    manifest.display().to_string()
}

/// A TOML array of strings.
pub fn toml_list(items: &[impl AsRef<str>]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{:?}", i.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}
