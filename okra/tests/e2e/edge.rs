//! The edge end to end: hosts, routes, Spin headers, framing and streaming,
//! against the real binary serving real spin-sdk 5 and 7 components.

use crate::support::{Gateway, get, raw_request, send};
use bytes::Bytes;

#[tokio::test]
async fn serves_spin_sdk_5_and_7_components_and_the_example() {
    let gw = Gateway::start(&[]);
    let r = get(&gw, "k.localhost", "/p2/t/hello").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello from spin-sdk 5\n")
    );
    let r = get(&gw, "k.localhost", "/p3/t/hello").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello from spin-sdk 7\n")
    );
    // Host matching ignores case and port.
    let r = get(&gw, "HELLO.localhost:8080", "/greet").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello from Okra! You asked for /greet\n")
    );
    let r = get(&gw, "k.localhost", "/static").await;
    assert_eq!((r.status, r.text().as_str()), (201, "static body"));
    assert_eq!(r.headers["x-static"], "yes");
}

/// An app's response carries the headers the app set and nothing of the
/// gateway's but framing (as Spin's conformance suite checks); the
/// request id comes back only when the operator asks for it.
#[tokio::test]
async fn responses_carry_only_the_apps_headers() {
    const FRAMING: [&str; 4] = ["content-length", "transfer-encoding", "connection", "date"];
    let gw = Gateway::start(&[]);
    let with_id = [("x-request-id", "req-7")];
    for (path, own) in [
        ("/p2/t/hello", &[][..]),
        ("/p3/t/hello", &[][..]),
        ("/static", &["x-static"][..]),
    ] {
        let r = send(&gw, "GET", "k.localhost", path, &with_id, Bytes::new()).await;
        assert!(r.status < 300, "{path}: {}", r.status);
        let extra: Vec<&str> = r
            .headers
            .keys()
            .map(|name| name.as_str())
            .filter(|name| !FRAMING.contains(name) && !own.contains(name))
            .collect();
        assert!(extra.is_empty(), "{path}: the gateway added {extra:?}");
    }
    // A response whose body the guest never took says it is empty, as
    // Spin's conformance suite requires, rather than being chunked.
    let r = get(&gw, "k.localhost", "/p2/t/no-body").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-length"], "0", "{:?}", r.headers);
    assert!(!r.headers.contains_key("transfer-encoding"));
    let gw = Gateway::start(&["--response-request-id"]);
    let r = send(
        &gw,
        "GET",
        "k.localhost",
        "/p2/t/hello",
        &with_id,
        Bytes::new(),
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "req-7");
}

#[tokio::test]
async fn unknown_hosts_routes_and_private_components_get_404() {
    let gw = Gateway::start(&[]);
    let r = get(&gw, "nobody.localhost", "/").await;
    assert_eq!(r.status, 404);
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(json["error"]["code"], "unknown_host");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody.localhost")
    );
    // The private component `hidden` has no public route under any spelling.
    for path in [
        "/hidden",
        "/hidden/t/hello",
        "/.well-known/spin/hidden",
        "/exactx",
    ] {
        let r = get(&gw, "k.localhost", path).await;
        assert_eq!(r.status, 404, "{path}");
    }
    let r = get(&gw, "k.localhost", "/.well-known/spin/health").await;
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
}

#[tokio::test]
async fn guests_see_spin_headers_and_never_forged_ones() {
    let gw = Gateway::start(&[]);
    for route in ["/users/42/t/headers", "/users/42/t/headers/"] {
        let r = send(
            &gw,
            "GET",
            "k.localhost",
            &format!("{route}?a=b"),
            &[
                ("spin-client-addr", "6.6.6.6:1"),
                ("SPIN-PATH-INFO", "/forged"),
                ("x-custom", "kept"),
            ],
            Bytes::new(),
        )
        .await;
        let text = r.text();
        let lines: Vec<&str> = text.lines().collect();
        let header = |name: &str| -> Vec<&str> {
            lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
                .collect()
        };
        assert_eq!(
            header("spin-full-url"),
            vec![format!("http://k.localhost{route}?a=b").as_str()]
        );
        assert_eq!(
            header("spin-path-info"),
            vec![route.trim_start_matches("/users/42")]
        );
        assert_eq!(header("spin-matched-route"), vec!["/users/:id/..."]);
        assert_eq!(header("spin-raw-component-route"), vec!["/users/:id/..."]);
        assert_eq!(header("spin-component-route"), vec!["/users/:id"]);
        assert_eq!(header("spin-base-path"), vec!["/"]);
        assert_eq!(header("spin-path-match-id"), vec!["42"]);
        let client = header("spin-client-addr");
        assert_eq!(client.len(), 1, "{text}");
        assert!(client[0].starts_with("127.0.0.1:"), "{text}");
        assert_eq!(header("x-custom"), vec!["kept"]);
    }
}

#[tokio::test]
async fn echo_streams_method_path_headers_and_body_for_p2_and_p3() {
    let gw = Gateway::start(&[]);
    let payload = Bytes::from(
        (0..200_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    for prefix in ["/p2", "/p3"] {
        let path = format!("{prefix}/t/echo?x=1");
        let r = send(
            &gw,
            "PUT",
            "k.localhost",
            &path,
            &[("content-type", "application/x-test")],
            payload.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "{prefix}");
        assert_eq!(r.headers["x-echo-method"], "PUT");
        assert_eq!(r.headers["x-echo-path"], path.as_str());
        assert_eq!(r.headers["content-type"], "application/x-test");
        assert_eq!(r.body, payload, "{prefix}");
    }
}

#[tokio::test]
async fn hundred_megabytes_stream_both_ways_in_bounded_memory() {
    let gw = Gateway::start(&[
        "--max-request-body-bytes",
        "200000000",
        "--cpu-time-ms",
        "120000",
        "--request-timeout-ms",
        "300000",
    ]);
    let _ = get(&gw, "k.localhost", "/p2/t/hello").await;
    let before = gw.rss_kib();
    const SIZE: usize = 100_000_000;
    for prefix in ["/p2", "/p3"] {
        let r = get(
            &gw,
            "k.localhost",
            &format!("{prefix}/t/download?bytes={SIZE}"),
        )
        .await;
        assert_eq!((r.status, r.body.len()), (200, SIZE), "{prefix} download");
        let r = send(
            &gw,
            "POST",
            "k.localhost",
            &format!("{prefix}/t/upload"),
            &[],
            Bytes::from(vec![7u8; SIZE]),
        )
        .await;
        assert_eq!(
            (r.status, r.text()),
            (200, SIZE.to_string()),
            "{prefix} upload"
        );
    }
    let grown_mib = gw.rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "gateway RSS grew by {grown_mib} MiB while streaming 100 MB bodies"
    );
}

/// Reads one HTTP/1.1 response off `conn`: its lowercased head and its body,
/// framed by Content-Length or chunked encoding (whichever the head says).
fn read_response(conn: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let complete = |raw: &[u8]| -> Option<(String, Vec<u8>)> {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let rest = &raw[split..];
        if let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
        {
            let len: usize = len.trim().parse().unwrap();
            return (rest.len() >= len).then(|| (head.clone(), rest[..len].to_vec()));
        }
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size = usize::from_str_radix(std::str::from_utf8(&rest[at..line_end]).unwrap(), 16)
                .unwrap();
            let data = line_end + 2;
            if rest.len() < data + size + 2 {
                return None;
            }
            if size == 0 {
                return Some((head, body));
            }
            body.extend_from_slice(&rest[data..data + size]);
            at = data + size + 2;
        }
    };
    loop {
        if let Some(response) = complete(&raw) {
            return response;
        }
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed mid-response");
        raw.extend_from_slice(&buf[..n]);
    }
}

/// A body that is still being produced when its head is ready streams out
/// chunked; a small one that is already complete goes out in one write with
/// a Content-Length. Either way the connection stays usable.
#[test]
fn response_framing_follows_the_body_and_keep_alive_survives() {
    use std::io::Write;
    let gw = Gateway::start(&[]);
    let mut conn = std::net::TcpStream::connect(gw.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    for prefix in ["/p2", "/p3"] {
        // Larger than what the edge collects ahead, so it must stream.
        let request =
            format!("GET {prefix}/t/download?bytes=200000 HTTP/1.1\r\nHost: k.localhost\r\n\r\n");
        conn.write_all(request.as_bytes()).unwrap();
        let (head, body) = read_response(&mut conn);
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert_eq!(body.len(), 200_000);
        assert!(body.iter().all(|&b| b == b'x'));
    }
    // Small answers on the same connection; at least one was complete in time.
    let mut sized = 0;
    for _ in 0..10 {
        conn.write_all(b"GET /p2/t/hello HTTP/1.1\r\nHost: k.localhost\r\n\r\n")
            .unwrap();
        let (head, body) = read_response(&mut conn);
        assert_eq!(body, b"Hello from spin-sdk 5\n", "{head}");
        sized += usize::from(head.contains("content-length: 22"));
    }
    assert!(
        sized > 0,
        "no small response went out with a Content-Length"
    );
}

#[test]
fn content_length_with_transfer_encoding_is_rejected() {
    let gw = Gateway::start(&[]);
    let smuggle = "POST /p2/t/echo HTTP/1.1\r\nHost: k.localhost\r\nContent-Length: 4\r\n\
                   Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /p2/t/hello HTTP/1.1\r\nHost: k.localhost\r\n\r\n";
    let reply = raw_request(gw.addr, smuggle).unwrap();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("ambiguous_body_length"), "{reply}");
    assert!(
        !reply.contains("Hello from spin-sdk"),
        "smuggled request was served: {reply}"
    );
}

/// A Content-Length that is a list, repeated or not a plain number is
/// refused: the edge never frames a body by one reading and checks another.
#[test]
fn content_length_lists_and_repeats_are_rejected() {
    let gw = Gateway::start(&["--max-request-body-bytes", "10"]);
    for length in [
        "5, 5",
        "5,5",
        "50, 50",
        "+5",
        "0x5",
        " ",
        "5\r\nContent-Length: 5",
    ] {
        let request = format!(
            "POST /p2/t/upload HTTP/1.1\r\nHost: k.localhost\r\nContent-Length: {length}\r\n\r\nhello"
        );
        // Pingora itself drops some of these unanswered; none may be served,
        // and a list it lets through must get the edge's own 400.
        let reply = raw_request(gw.addr, &request).unwrap_or_default();
        assert!(
            reply.is_empty() || reply.starts_with("HTTP/1.1 400"),
            "{length:?}: {reply}"
        );
        if length.contains(',') {
            assert!(
                reply.contains("invalid_content_length"),
                "{length:?}: {reply}"
            );
        }
        assert!(!reply.contains("HTTP/1.1 200"), "{length:?}: {reply}");
    }
    let reply = raw_request(
        gw.addr,
        "POST /p2/t/upload HTTP/1.1\r\nHost: k.localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("5"),
        "{reply}"
    );
}

/// A guest's interim (1xx) status is never sent as a final head: the client
/// gets a 502 and the connection stays in step.
#[test]
fn an_interim_status_from_a_guest_becomes_502() {
    use std::io::Write;
    let gw = Gateway::start(&[]);
    let mut conn = std::net::TcpStream::connect(gw.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    for code in [100, 101, 103, 199] {
        let request = format!("GET /p2/t/status?code={code} HTTP/1.1\r\nHost: k.localhost\r\n\r\n");
        conn.write_all(request.as_bytes()).unwrap();
        let (head, body) = read_response(&mut conn);
        assert!(head.starts_with("http/1.1 502"), "{code}: {head}");
        assert!(String::from_utf8_lossy(&body).contains("bad_guest_response"));
    }
    conn.write_all(b"GET /p2/t/status?code=201 HTTP/1.1\r\nHost: k.localhost\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut conn);
    assert!(head.starts_with("http/1.1 201"), "{head}");
    assert_eq!(body, b"status body");
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    use http_body_util::BodyExt;
    let gw = Gateway::start(&[]);
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    for path in ["/p3/t/hello", "/p2/t/hello"] {
        let req = http::Request::builder()
            .uri(format!("http://k.localhost{path}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.expect("h2c response");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{path}: {body:?}");
        assert!(body.starts_with(b"Hello from spin-sdk"), "{body:?}");
    }
}

#[tokio::test]
async fn spin_interfaces_okra_lacks_return_their_own_errors() {
    let gw = Gateway::start(&[]);
    // Spin 2 and 3 key-value are real: the kitchen lists no store, so
    // even "default" is refused, as in Spin.
    let r = get(&gw, "k.localhost", "/p2/t/kv").await;
    assert_eq!(r.text(), "error: Error::AccessDenied");
    let r = get(&gw, "k.localhost", "/p2/t/llm").await;
    assert_eq!(r.text(), "error: Error::ModelNotSupported");
    let r = get(&gw, "k.localhost", "/p3/t/kv").await;
    assert_eq!(r.text(), "error: Error::AccessDenied");
    let r = get(&gw, "k.localhost", "/p3/t/variable?name=anything").await;
    assert!(
        r.text().starts_with("error=Error::Undefined("),
        "{}",
        r.text()
    );
}

/// Every request is counted once, whoever answered it: one no app answers
/// (an unknown host, a head the edge refuses, the health check) is counted
/// with empty `tenant`, `app` and `component`.
#[tokio::test]
async fn requests_no_app_answers_are_counted_too() {
    let gw = Gateway::start(&[]);
    assert_eq!(get(&gw, "nobody.localhost", "/").await.status, 404);
    assert_eq!(get(&gw, "nobody.localhost", "/x").await.status, 404);
    let ambiguous = "POST /p2/t/echo HTTP/1.1\r\nHost: k.localhost\r\nContent-Length: 4\r\n\
                     Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let reply = raw_request(gw.addr, ambiguous).unwrap();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let text = crate::support::wait_metrics(
        &gw,
        &[
            r#"okra_http_requests_total{app="",component="",status="404",tenant=""} 2"#,
            r#"okra_http_requests_total{app="",component="",status="400",tenant=""} 1"#,
        ],
    )
    .await;
    // The health checks the test's start-up polled with.
    for series in [
        r#"okra_http_requests_total{app="",component="",status="200",tenant=""} "#,
        r#"okra_http_request_duration_seconds_count{app="",tenant=""} "#,
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
    // None of them was counted against the app.
    assert!(
        !text.contains(r#"okra_http_requests_total{app="kitchen""#),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let gw = Gateway::start(&[]);
    let _ = get(&gw, "k.localhost", "/p2/t/hello").await;
    let _ = get(&gw, "k.localhost", "/p2/t/panic").await;
    let text = crate::support::wait_metrics(
        &gw,
        &[
            r#"okra_http_requests_total{app="kitchen",component="sdk5",status="200",tenant="local"} 1"#,
            r#"okra_http_requests_total{app="kitchen",component="sdk5",status="500",tenant="local"} 1"#,
            r#"okra_http_request_duration_seconds_count{app="kitchen",tenant="local"} 2"#,
            "okra_wasm_instantiate_seconds_count 2",
            r#"okra_wasm_traps_total{app="kitchen",component="sdk5",reason="trap",tenant="local"} 1"#,
        ],
    )
    .await;
    assert!(
        text.contains("okra_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert_eq!(crate::support::metrics_get(&gw, "/metrics").await.0, 200);
    assert_eq!(crate::support::metrics_get(&gw, "/healthz").await.0, 200);
    assert_eq!(crate::support::metrics_get(&gw, "/readyz").await.0, 200);
}
