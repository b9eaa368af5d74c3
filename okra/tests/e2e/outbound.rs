//! Outbound HTTP end to end: real guests (spin-sdk 5 over wasi:http 0.2 and
//! spin-sdk 7 over 0.3) make real requests through the gateway's hook and
//! tenant pool to real upstream servers on 127.0.0.1.

use crate::support::upstream::Upstream;
use crate::support::{Gateway, get};

/// Writes an app whose components all run the test guests: `p2` and `p3`
/// allow `allowed`, `closed` allows nothing, `open` allows `*://*:*`.
fn outbound_app(dir: &tempfile::TempDir, allowed: &[String], variables: &str) -> String {
    let list = |entries: &[String]| {
        entries
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "outbound"
[variables]
{variables}
[[trigger.http]]
route = "/p2/t/..."
component = "p2"
[[trigger.http]]
route = "/p3/t/..."
component = "p3"
[[trigger.http]]
route = "/closed/t/..."
component = "closed"
[[trigger.http]]
route = "/open2/t/..."
component = "open2"
[[trigger.http]]
route = "/open3/t/..."
component = "open3"
[component.p2]
source = {sdk5:?}
allowed_outbound_hosts = [{allowed}]
[component.p3]
source = {sdk7:?}
allowed_outbound_hosts = [{allowed}]
[component.closed]
source = {sdk5:?}
[component.open2]
source = {sdk5:?}
allowed_outbound_hosts = ["*://*:*"]
[component.open3]
source = {sdk7:?}
allowed_outbound_hosts = ["*://*:*"]
"#,
        sdk5 = test_programs::SDK5_GUEST,
        sdk7 = test_programs::SDK7_GUEST,
        allowed = list(allowed),
    );
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, manifest).expect("write manifest");
    format!("out.localhost={}", path.display())
}

async fn fetch(gw: &Gateway, component: &str, query: &str) -> String {
    let reply = get(
        gw,
        "out.localhost",
        &format!("/{component}/t/fetch?{query}"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[tokio::test]
async fn allow_list_decides_for_p2_and_p3_guests() {
    let up = Upstream::start().await;
    let other = Upstream::start().await;
    let port = up.port();
    let dir = tempfile::tempdir().unwrap();
    let app = outbound_app(
        &dir,
        &[
            "http://{{ upstream }}".into(),
            format!("http://allowed.test:{port}"),
            format!("http://*.wild.test:{port}"),
        ],
        &format!("upstream = {{ default = \"127.0.0.1:{port}\" }}"),
    );
    let gw = Gateway::start_apps(
        &[&app],
        &[
            "--block-networks",
            "none",
            "--resolve",
            "allowed.test=127.0.0.1",
            "--resolve",
            "a.b.wild.test=127.0.0.1",
            "--resolve",
            "wild.test=127.0.0.1",
        ],
    );
    for c in ["p2", "p3"] {
        let ok = |path: &str| format!("status=200 body={path}");
        assert_eq!(
            fetch(&gw, c, &format!("url=http://127.0.0.1:{port}/hello")).await,
            ok("upstream hello")
        );
        // The upstream sees the host the guest named, from the normalised URI.
        assert_eq!(
            fetch(&gw, c, &format!("url=http://allowed.test:{port}/host")).await,
            ok(&format!("allowed.test:{port}"))
        );
        assert_eq!(
            fetch(&gw, c, &format!("url=http://a.b.wild.test:{port}/hello")).await,
            ok("upstream hello")
        );
        // Denied: another port, the wildcard's bare domain, https for an http entry.
        for url in [
            format!("http://127.0.0.1:{}/hello", other.port()),
            format!("http://wild.test:{port}/hello"),
            format!("https://allowed.test:{port}/hello"),
        ] {
            let text = fetch(&gw, c, &format!("url={url}")).await;
            assert!(
                text.starts_with("error=") && text.contains("HttpRequestDenied"),
                "{c} {url}: {text}"
            );
        }
    }
    // Guests cannot set Host: wasi:http refuses the header itself.
    let text = fetch(
        &gw,
        "p2",
        &format!("h=host:evil.example&url=http://127.0.0.1:{port}/host"),
    )
    .await;
    assert!(
        text.starts_with("error=bad header") && text.contains("Forbidden"),
        "{text}"
    );
    // No entries: nothing is allowed.
    let text = fetch(&gw, "closed", &format!("url=http://127.0.0.1:{port}/hello")).await;
    assert!(text.contains("HttpRequestDenied"), "{text}");
    assert_eq!(other.requests(), 0);
    assert_eq!(up.requests(), 6);

    let text = crate::support::wait_metrics(
        &gw,
        &[
            r#"okra_outbound_requests_total{app="outbound",kind="external",outcome="ok",tenant="local"} 6"#,
            r#"okra_outbound_requests_total{app="outbound",kind="external",outcome="denied",tenant="local"} 7"#,
            r#"okra_outbound_failures_total{reason="allowed_outbound_hosts",tenant="local"} 7"#,
        ],
    )
    .await;
    assert!(
        text.contains("okra_outbound_duration_seconds_bucket"),
        "{text}"
    );
}

/// Every spelling of a loopback or private address, and names that resolve
/// to one: with the default block list none may reach the upstream.
#[tokio::test]
async fn ssrf_battery_gets_nothing_through_by_default() {
    let up = Upstream::start().await;
    let port = up.port();
    let dir = tempfile::tempdir().unwrap();
    // p2 and p3 name the upstream explicitly: an allow-list never overrides the block list.
    let app = outbound_app(&dir, &[format!("http://127.0.0.1:{port}")], "");
    std::fs::write(
        dir.path().join("okra.json"),
        r#"{"policy.http.fetch.audit": true}"#,
    )
    .unwrap();
    let audit = dir.path().join("audit.jsonl");
    let gw = Gateway::start_apps(
        &[&app],
        &[
            "--audit-log",
            audit.to_str().unwrap(),
            "--resolve",
            "evil.test=127.0.0.1",
            "--resolve",
            "mixed.test=10.1.2.3,127.0.0.1",
            "--resolve",
            "mapped.test=::ffff:127.0.0.1",
        ],
    );
    let hosts = [
        "127.0.0.1",
        "127.0.0.1.",
        "2130706433",
        "0x7f000001",
        "0x7f.1",
        "0177.0.0.1",
        "0177.1",
        "127.1",
        "0",
        "0.0.0.0",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "[0:0:0:0:0:ffff:7f00:0001]",
        "localhost",
        "LOCALHOST",
        "evil.test",
        "mixed.test",
        "mapped.test",
        "169.254.169.254",
        "[fd00::1]",
        "[fe80::1]",
    ];
    for c in ["open2", "open3"] {
        for host in hosts {
            let text = fetch(&gw, c, &format!("url=http://{host}:{port}/hello")).await;
            assert!(
                text.starts_with("error=") && text.contains("DestinationIpProhibited"),
                "{c} {host}: {text}"
            );
        }
    }
    for c in ["p2", "p3"] {
        let text = fetch(&gw, c, &format!("url=http://127.0.0.1:{port}/hello")).await;
        assert!(text.contains("DestinationIpProhibited"), "{c}: {text}");
    }
    assert_eq!(up.requests(), 0, "a request reached the upstream");
    assert_eq!(up.connections(), 0, "a connection reached the upstream");
    let prohibited = 2 * hosts.len() + 2;
    // Each is audited as denied by the block list. The audit file's writer
    // runs on its own thread, so the last records may land a moment after
    // the guest's answer.
    let mut records = String::new();
    for _ in 0..200 {
        records = std::fs::read_to_string(&audit).unwrap_or_default();
        if records.lines().count() >= prohibited {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(records.lines().count(), prohibited);
    for line in records.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["decision"], "deny", "{record}");
        assert_eq!(record["rule"], "block_networks", "{record}");
    }
    crate::support::wait_metrics(
        &gw,
        &[&format!(
            r#"okra_outbound_failures_total{{reason="blocked_address",tenant="local"}} {prohibited}"#
        )],
    )
    .await;
}

#[tokio::test]
async fn failures_reach_the_guest_as_error_codes() {
    let up = Upstream::start().await;
    let port = up.port();
    let dir = tempfile::tempdir().unwrap();
    let app = outbound_app(&dir, &[], "");
    let gw = Gateway::start_apps(&[&app], &["--block-networks", "none"]);
    // A name DNS cannot find.
    for c in ["open2", "open3"] {
        let text = fetch(&gw, c, "url=http://no-such-host.invalid/").await;
        assert!(text.contains("DnsError"), "{c}: {text}");
    }
    // Nothing listens on the port: refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = fetch(
        &gw,
        "open2",
        &format!("url=http://127.0.0.1:{closed_port}/"),
    )
    .await;
    assert!(text.contains("ConnectionRefused"), "{text}");
    // The guest's first-byte timeout.
    let text = fetch(
        &gw,
        "open2",
        &format!("first_byte_ms=200&url=http://127.0.0.1:{port}/slow-head?ms=5000"),
    )
    .await;
    assert!(text.contains("HttpResponseTimeout"), "{text}");
    // The guest's between-bytes timeout: the head and a chunk arrive, then
    // silence. wasi:http 0.2 reports a body error as an I/O error whose text
    // is the reason, 0.3 as an error code.
    let text = fetch(
        &gw,
        "open2",
        &format!("between_ms=200&url=http://127.0.0.1:{port}/stall-body"),
    )
    .await;
    assert_eq!(
        text,
        "status=200 body=first body_error=connection read timeout"
    );
    crate::support::wait_metrics(
        &gw,
        &[
            r#"okra_outbound_failures_total{reason="dns",tenant="local"} 2"#,
            r#"okra_outbound_failures_total{reason="connection_refused",tenant="local"} 1"#,
            r#"okra_outbound_failures_total{reason="first_byte_timeout",tenant="local"} 1"#,
        ],
    )
    .await;
}

#[tokio::test]
async fn the_tenant_pool_reuses_connections_and_caps_them() {
    let up = Upstream::start().await;
    let port = up.port();
    let dir = tempfile::tempdir().unwrap();
    let app = outbound_app(&dir, &[], "");
    let gw = Gateway::start_apps(
        &[&app],
        &[
            "--block-networks",
            "none",
            "--outbound-max-connections",
            "1",
        ],
    );
    for i in 0..10 {
        let c = if i % 2 == 0 { "open2" } else { "open3" };
        let text = fetch(&gw, c, &format!("url=http://127.0.0.1:{port}/hello")).await;
        assert_eq!(text, "status=200 body=upstream hello");
    }
    // Ten requests, from fresh instances of two components, one connection.
    assert_eq!(up.requests(), 10);
    assert_eq!(up.connections(), 1);
    crate::support::wait_metrics(
        &gw,
        &[
            r#"okra_outbound_pool_connects_total{tenant="local"} 1"#,
            r#"okra_outbound_pool_connections{tenant="local"} 1"#,
        ],
    )
    .await;

    // The only connection is busy with a stalled body: the next request waits
    // for a permit and gives up with connection-limit-reached.
    let stall_query = format!("between_ms=5000&url=http://127.0.0.1:{port}/stall-body");
    let stalled = fetch(&gw, "open2", &stall_query);
    let limited = async {
        crate::support::wait_metrics(
            &gw,
            &[r#"okra_outbound_requests_total{app="outbound",kind="external",outcome="ok",tenant="local"} 11"#],
        )
        .await;
        fetch(
            &gw,
            "open2",
            &format!("connect_ms=300&url=http://127.0.0.1:{port}/hello"),
        )
        .await
    };
    let (stalled, limited) = tokio::join!(stalled, limited);
    assert!(limited.contains("ConnectionLimitReached"), "{limited}");
    assert!(
        stalled.ends_with("body_error=connection read timeout"),
        "{stalled}"
    );
    assert_eq!(up.connections(), 1);
}

async fn fetch_as(
    gw: &Gateway,
    component: &str,
    query: &str,
    headers: &[(&str, &str)],
) -> crate::support::Reply {
    let path = format!("/{component}/t/fetch?{query}");
    crate::support::send(
        gw,
        "GET",
        "out.localhost",
        &path,
        headers,
        bytes::Bytes::new(),
    )
    .await
}

/// okra.json (app and service scopes) plus a tenant policy with JWT keys:
/// every scope must pass, headers are injected narrowest-first, requests are
/// correlated and traced, bodies are capped, and each request is audited.
#[tokio::test]
async fn okra_policies_decide_inject_correlate_and_audit() {
    let up = Upstream::start().await;
    let port = up.port();
    let dir = tempfile::tempdir().unwrap();
    let app = outbound_app(
        &dir,
        &[format!("http://127.0.0.1:{port}")],
        "env = { default = \"prod\" }",
    );
    std::fs::write(
        dir.path().join("okra.json"),
        r#"{
          "policy.http.fetch.allowMethods": ["GET", "HEAD"],
          "policy.http.fetch.audit": true,
          "http.fetch": {
            "injectHeaders": {"x-team": "shop", "x-env": "{{ env }}"},
            "enableTracing": true,
            "maxBodySizeKb": 1
          },
          "services": {
            "p2": {"policy.http.fetch.requiredHeaders": ["x-service-id"]},
            "p3": {"http.fetch": {"injectHeaders": {"x-team": "storefront"}}}
          }
        }"#,
    )
    .unwrap();
    let tenant = dir.path().join("tenant.json");
    std::fs::write(
        &tenant,
        r#"{"policy.http.fetch.condition": "request.auth.claims.role == 'internal'",
            "auth": {"hs256Secrets": ["tenant-secret"]}}"#,
    )
    .unwrap();
    let audit = dir.path().join("audit.jsonl");
    let tenant_flag = format!("local={}", tenant.display());
    let gw = Gateway::start_apps(
        &[&app],
        &[
            "--block-networks",
            "none",
            "--tenant-policy",
            &tenant_flag,
            "--audit-log",
            audit.to_str().unwrap(),
            "--response-request-id",
        ],
    );
    let internal = crate::support::bearer_jwt("tenant-secret", "internal");
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let caller = [
        ("authorization", internal.as_str()),
        ("x-request-id", "req-42"),
        ("traceparent", trace),
    ];
    let upstream_headers = format!("url=http://127.0.0.1:{port}/headers?secret=hush-hush");

    let reply = fetch_as(
        &gw,
        "p2",
        &format!("h=x-service-id:checkout&{upstream_headers}"),
        &caller,
    )
    .await;
    let text = reply.text();
    assert_eq!(reply.headers["x-request-id"], "req-42");
    assert!(text.starts_with("status=200 "), "{text}");
    for line in [
        "x-team: shop",
        "x-env: prod",
        "x-service-id: checkout",
        "x-request-id: req-42",
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-",
    ] {
        assert!(text.contains(line), "{line:?} missing from {text}");
    }
    assert!(
        !text.contains("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
        "{text}"
    );
    // The component scope's header beats the app's; no required header there.
    let text = fetch_as(&gw, "p3", &upstream_headers, &caller).await.text();
    assert!(
        text.contains("x-team: storefront") && text.contains("x-env: prod"),
        "{text}"
    );

    // Each scope can deny: component (required header), app (method), tenant
    // (no token, a forged token, the wrong role).
    let forged = crate::support::bearer_jwt("not-the-secret", "internal");
    let external = crate::support::bearer_jwt("tenant-secret", "external");
    let denied = [
        ("p2", upstream_headers.clone(), internal.as_str()),
        (
            "p2",
            format!("method=POST&h=x-service-id:a&{upstream_headers}"),
            internal.as_str(),
        ),
        ("p3", upstream_headers.clone(), ""),
        ("p3", upstream_headers.clone(), forged.as_str()),
        ("p3", upstream_headers.clone(), external.as_str()),
    ];
    for (c, query, token) in &denied {
        let headers: Vec<(&str, &str)> = if token.is_empty() {
            vec![]
        } else {
            vec![("authorization", *token)]
        };
        let text = fetch_as(&gw, c, query, &headers).await.text();
        assert!(text.contains("HttpRequestDenied"), "{c} {query}: {text}");
    }
    assert_eq!(
        up.requests(),
        2,
        "denied requests must not reach the upstream"
    );

    // maxBodySizeKb = 1: a 4 KiB response is cut off with an error.
    let text = fetch_as(
        &gw,
        "p3",
        &format!("url=http://127.0.0.1:{port}/bytes?n=4096"),
        &caller,
    )
    .await
    .text();
    assert!(
        text.starts_with("status=200 ") && text.contains("body_error="),
        "{text}"
    );
    assert!(
        !text.contains(&"x".repeat(4096)),
        "the whole body got through"
    );

    // One audit record per request: 3 allowed (after their bodies), 5 denied.
    let mut records = Vec::new();
    for _ in 0..500 {
        records = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect();
        if records.len() >= 8 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(records.len(), 8, "{records:#?}");
    let allowed: Vec<_> = records
        .iter()
        .filter(|r| r["decision"] == "allow")
        .collect();
    assert_eq!(allowed.len(), 3, "{records:#?}");
    let first = allowed.iter().find(|r| r["component"] == "p2").unwrap();
    assert_eq!(first["status"], 200);
    assert_eq!(first["request_id"], "req-42");
    assert_eq!(
        first["url"],
        format!("http://127.0.0.1:{port}/headers?secret=redacted")
    );
    assert!(first["bytes"].as_u64().unwrap() > 0);
    let rules: Vec<&str> = records
        .iter()
        .filter(|r| r["decision"] == "deny")
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "component p2: policy.http.fetch.requiredHeaders",
            "app outbound: policy.http.fetch.allowMethods",
            "tenant local: policy.http.fetch.condition",
            "tenant local: policy.http.fetch.condition",
            "tenant local: policy.http.fetch.condition",
        ]
    );
    assert!(
        // Generated request ids are hex, so the secret must not be.
        !std::fs::read_to_string(&audit).unwrap().contains("hush"),
        "a query value leaked"
    );
}

#[test]
fn a_bad_okra_json_stops_the_gateway_with_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let app = outbound_app(&dir, &[], "");
    std::fs::write(
        dir.path().join("okra.json"),
        r#"{"policy.http.fetch.condition": "request.method == 'GET' &&"}"#,
    )
    .unwrap();
    let output = std::process::Command::new(crate::support::gateway_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--app",
            &app,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("okra.json"), "{stderr}");
    assert!(stderr.contains("policy.http.fetch.condition"), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
}

/// HTTPS through the pool: rustls verifies the upstream against the
/// operator's extra CA, ALPN picks HTTP/2, and a name the certificate does
/// not cover fails with a TLS certificate error.
#[tokio::test]
async fn https_upstreams_negotiate_h2_and_are_verified() {
    let (ca_pem, tls) = crate::support::upstream::tls_for(&["tls.test"]);
    let up = Upstream::start_tls(tls).await;
    let port = up.port();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let app = outbound_app(&dir, &[], "");
    let gw = Gateway::start_apps(
        &[&app],
        &[
            "--block-networks",
            "none",
            "--outbound-extra-ca-file",
            ca.to_str().unwrap(),
            "--resolve",
            "tls.test=127.0.0.1",
            "--resolve",
            "other.test=127.0.0.1",
        ],
    );
    for c in ["open2", "open3"] {
        let text = fetch(&gw, c, &format!("url=https://tls.test:{port}/proto")).await;
        assert_eq!(text, "status=200 body=HTTP/2.0", "{c}");
    }
    // Two requests, one HTTP/2 connection.
    assert_eq!(up.connections(), 1);
    let text = fetch(
        &gw,
        "open2",
        &format!("url=https://other.test:{port}/proto"),
    )
    .await;
    assert!(text.contains("TlsCertificateError"), "{text}");
    // Without the operator's CA the same upstream is untrusted.
    let plain = Gateway::start_apps(
        &[&app],
        &[
            "--block-networks",
            "none",
            "--resolve",
            "tls.test=127.0.0.1",
        ],
    );
    let text = fetch(
        &plain,
        "open2",
        &format!("url=https://tls.test:{port}/proto"),
    )
    .await;
    assert!(text.contains("TlsCertificateError"), "{text}");
    assert_eq!(up.requests(), 2);
}

/// A wasi:http 0.3 guest learns that its streamed request body was refused
/// (past `maxBodySizeKb`) through the future `request.new` gave it, instead
/// of being told it went out.
#[tokio::test]
async fn a_p3_guest_sees_its_upload_refused() {
    let up = Upstream::start().await;
    let port = up.port();
    let dir = tempfile::tempdir().unwrap();
    let app = outbound_app(&dir, &[format!("http://127.0.0.1:{port}")], "");
    std::fs::write(
        dir.path().join("okra.json"),
        r#"{"http.fetch": {"maxBodySizeKb": 1}}"#,
    )
    .unwrap();
    let gw = Gateway::start_apps(&[&app], &["--block-networks", "none"]);
    let post = |bytes: usize| {
        let path = format!("/p3/t/post?bytes={bytes}&url=http://127.0.0.1:{port}/count");
        let gw = &gw;
        async move { get(gw, "out.localhost", &path).await.text() }
    };
    let small = post(100).await;
    assert_eq!(small, "status=200 body=Ok(())");
    // An upstream reading the body: the send itself fails, naming the cause.
    let large = post(4096).await;
    assert!(
        large.starts_with("status=ErrorCode::HttpRequestBodySize"),
        "{large}"
    );
    // One that answers first: the send succeeds, and the body's failure
    // arrives through request.new's future.
    let path = format!("/p3/t/post?bytes=2000&pause_ms=500&url=http://127.0.0.1:{port}/early");
    let early = get(&gw, "out.localhost", &path).await.text();
    assert!(
        early.starts_with("status=200 ")
            && early.contains("body=Err(ErrorCode::HttpRequestBodySize"),
        "{early}"
    );
}
