//! Control-plane helpers for tests: gateways and control planes started on a
//! store, a JSON client for the REST API, app bundles, and a private
//! `redis-server` on a free port.

use super::{Gateway, Launch, free_port, get};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin token every test gateway is started with.
pub const ADMIN: &str = "test-admin-token";
/// The base domain of test gateways.
pub const BASE: &str = "okra.test";

/// A gateway with its API.
pub struct Node {
    pub gateway: Gateway,
    pub api: SocketAddr,
}

/// Starts a gateway on `store` with its API on a free port (or `--no-api`).
pub fn start_node(store: &str, with_api: bool, extra: &[&str]) -> Node {
    start_node_logged(store, with_api, extra, None)
}

/// [`start_node`], with the gateway's stderr written to `log`.
pub fn start_node_logged(
    store: &str,
    with_api: bool,
    extra: &[&str],
    log: Option<std::fs::File>,
) -> Node {
    let api = free_port();
    let api_flag = api.to_string();
    let mut flags = vec!["--store", store, "--base-domain", BASE];
    if with_api {
        flags.extend(["--api-listen", api_flag.as_str()]);
    } else {
        flags.push("--no-api");
    }
    flags.extend(extra);
    let gateway = Launch {
        env: &[("OKRA_ADMIN_TOKEN", ADMIN)],
        stderr: log,
        ..Launch::default()
    }
    .start(&[], &flags);
    if with_api {
        wait_port(api);
    }
    Node { gateway, api }
}

/// A node on the file store in `data` with tenant `acme` and its app `web`
/// deployed as a static response of `body`; returns the node and acme's token.
pub async fn node_with_web(data: &tempfile::TempDir, body: &str, extra: &[&str]) -> (Node, String) {
    let node = start_node(&format!("file:{}", data.path().display()), true, extra);
    let token = create_tenant(node.api, "acme").await;
    let (status, reply) = deploy(node.api, &token, "acme", "web", static_bundle("web", body)).await;
    assert_eq!(status, 201, "{reply}");
    (node, token)
}

/// A running `control-plane` process, killed on drop.
pub struct ControlPlane {
    child: Child,
    pub api: SocketAddr,
    /// Its `/healthz`, `/readyz` and `/metrics`.
    pub metrics: SocketAddr,
}

impl ControlPlane {
    pub fn start(store: &str, data_dir: &Path) -> ControlPlane {
        let (api, metrics) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_control-plane"))
            .args(["--store", store, "--base-domain", BASE, "--api-listen"])
            .arg(api.to_string())
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .env("OKRA_ADMIN_TOKEN", ADMIN)
            .env("OKRA_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn control-plane");
        wait_port(api);
        ControlPlane {
            child,
            api,
            metrics,
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_port(addr: SocketAddr) {
    for _ in 0..600 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr}");
}

/// Calls the API: (status, JSON body or Null).
pub async fn call(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: impl Into<Bytes>,
) -> (u16, serde_json::Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{api}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = client
        .request(request.body(Full::new(body.into())).expect("request"))
        .await
        .expect("API response");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "API sent non-JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, json)
}

/// GETs an API path with `token`.
pub async fn get_json(api: SocketAddr, path: &str, token: &str) -> (u16, serde_json::Value) {
    call(api, "GET", path, Some(token), Bytes::new()).await
}

/// Asserts an API refusal: its status and error code.
pub fn assert_error(status: u16, body: &serde_json::Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Creates a tenant; returns its token.
pub async fn create_tenant(api: SocketAddr, name: &str) -> String {
    let (status, body) = call(
        api,
        "POST",
        "/v1/tenants",
        Some(ADMIN),
        serde_json::json!({ "name": name }).to_string(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_string()
}

/// Deploys `bundle` as `tenant/app`: (status, body).
pub async fn deploy(
    api: SocketAddr,
    token: &str,
    tenant: &str,
    app: &str,
    bundle: Vec<u8>,
) -> (u16, serde_json::Value) {
    call(
        api,
        "PUT",
        &format!("/v1/tenants/{tenant}/apps/{app}"),
        Some(token),
        bundle,
    )
    .await
}

/// Makes `version` current again: (status, body).
pub async fn rollback(
    api: SocketAddr,
    token: &str,
    tenant: &str,
    app: &str,
    version: u64,
) -> (u16, serde_json::Value) {
    let path = format!("/v1/tenants/{tenant}/apps/{app}/rollback");
    let body = serde_json::json!({ "version": version }).to_string();
    call(api, "POST", &path, Some(token), body).await
}

/// Undeploys `tenant/app`; returns the status.
pub async fn delete_app(api: SocketAddr, token: &str, tenant: &str, app: &str) -> u16 {
    let path = format!("/v1/tenants/{tenant}/apps/{app}");
    call(api, "DELETE", &path, Some(token), Bytes::new())
        .await
        .0
}

/// An app directory with a static-response route answering `body` on `/...`.
pub fn static_app(name: &str, body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"{name}\"\n[[trigger.http]]\nroute = \"/...\"\nstatic_response = {{ status_code = 200, body = \"{body}\" }}\n"
        ),
    )
    .expect("write manifest");
    dir
}

/// A bundle of the static app.
pub fn static_bundle(name: &str, body: &str) -> Vec<u8> {
    control_plane::bundle::pack(static_app(name, body).path()).expect("pack")
}

/// The default hostname of an app on a test gateway.
pub fn host(app: &str, tenant: &str) -> String {
    format!("{app}.{tenant}.{BASE}")
}

/// A private `redis-server` with its directory.
pub struct Redis {
    pub server: test_programs::redis::RedisServer,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        Redis {
            server: test_programs::redis::RedisServer::start(dir.path().to_path_buf()),
            _dir: dir,
        }
    }
}

/// Polls `host` until its body contains `want`; returns how long it took.
pub async fn until_served(gw: &Gateway, host: &str, want: &str) -> Duration {
    let started = Instant::now();
    for _ in 0..5000 {
        let reply = get(gw, host, "/").await;
        if reply.status == 200 && reply.text().contains(want) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{host} never served {want:?}");
}

/// Polls `host` until it answers 404.
pub async fn until_gone(gw: &Gateway, host: &str) -> Duration {
    let started = Instant::now();
    for _ in 0..5000 {
        if get(gw, host, "/").await.status == 404 {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{host} was never removed");
}
