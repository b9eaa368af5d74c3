//! Hostile guests are contained: endless loops, unbounded allocation, panics
//! and oversized bodies, while the gateway keeps serving everyone else. Also
//! that no instance sees memory another instance wrote.

use crate::support::{Gateway, get, raw_request, send};
use bytes::Bytes;

#[tokio::test]
async fn endless_loops_get_504_while_others_are_served() {
    let gw = Gateway::start(&["--cpu-time-ms", "500", "--request-timeout-ms", "5000"]);
    for prefix in ["/p2", "/p3"] {
        let loop_path = format!("{prefix}/t/loop");
        let looping = get(&gw, "k.localhost", &loop_path);
        let others = async {
            let mut served = 0;
            for _ in 0..10 {
                let r = get(&gw, "k.localhost", "/p2/t/hello").await;
                assert_eq!(r.status, 200);
                served += 1;
            }
            served
        };
        let (r, served) = tokio::join!(looping, others);
        assert_eq!(r.status, 504, "{prefix}: {}", r.text());
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(json["error"]["code"], "guest_timeout");
        assert_eq!(served, 10);
    }
}

#[tokio::test]
async fn wall_clock_deadline_applies_even_with_cpu_to_spare() {
    let gw = Gateway::start(&["--cpu-time-ms", "60000", "--request-timeout-ms", "700"]);
    let r = get(&gw, "k.localhost", "/p2/t/loop").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(get(&gw, "k.localhost", "/p2/t/hello").await.status, 200);
}

#[tokio::test]
async fn unbounded_allocation_gets_500_and_the_gateway_survives() {
    let mut gw = Gateway::start(&["--memory-bytes", "33554432"]);
    for prefix in ["/p2", "/p3"] {
        let r = get(&gw, "k.localhost", &format!("{prefix}/t/alloc")).await;
        assert_eq!(r.status, 500, "{prefix}");
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(json["error"]["code"], "guest_error");
    }
    assert!(gw.is_running());
    assert_eq!(get(&gw, "k.localhost", "/p3/t/hello").await.status, 200);
}

#[tokio::test]
async fn panics_become_500_without_guest_details() {
    let gw = Gateway::start(&[]);
    for prefix in ["/p2", "/p3"] {
        let r = get(&gw, "k.localhost", &format!("{prefix}/t/panic")).await;
        assert_eq!(r.status, 500);
        let text = r.text();
        assert!(!text.contains("sk_live"), "{text}");
        assert!(
            !text.contains("wasm") && !text.contains("backtrace"),
            "{text}"
        );
    }
}

/// The smallest memory limit accepted (4 MiB) still runs a hello. Guest
/// failures are logged at `warn`, one line each with tenant, app,
/// component and reason, and a guest failing on every request cannot flood
/// the log: past a small burst, lines are held back and counted.
#[tokio::test]
async fn the_smallest_memory_limit_runs_hello_and_failures_log_one_line_each() {
    let log = crate::support::LogFile::new();
    let gw = crate::support::Launch {
        env: &[("NO_COLOR", "1")],
        stderr: log.file(),
        ..crate::support::Launch::default()
    }
    .start(
        &[
            &format!("k.localhost={}", test_programs::KITCHEN_MANIFEST),
            &format!("hello.localhost={}", test_programs::HELLO_MANIFEST),
        ],
        &["--memory-bytes", "4194304"],
    );
    let hello = get(&gw, "hello.localhost", "/").await;
    assert_eq!(hello.status, 200, "{}", hello.text());
    const PANICS: usize = 40;
    for _ in 0..PANICS {
        assert_eq!(get(&gw, "k.localhost", "/p2/t/panic").await.status, 500);
    }
    crate::support::wait_metrics(
        &gw,
        &[&format!(
            r#"okra_wasm_traps_total{{app="kitchen",component="sdk5",reason="trap",tenant="local"}} {PANICS}"#
        )],
    )
    .await;
    let log = std::fs::read_to_string(&log.path).unwrap();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("guest failed")).collect();
    assert!(
        !failures.is_empty() && failures.len() < PANICS,
        "{} lines for {PANICS} failures: {log}",
        failures.len()
    );
    for line in &failures {
        assert!(
            line.contains("WARN")
                && line.contains("tenant=local")
                && line.contains("app=kitchen")
                && line.contains("component=sdk5")
                && line.contains("reason=\"trap\""),
            "{line}"
        );
    }
    // The wasm backtrace is inside the line, not on lines of its own.
    assert!(
        failures.iter().any(|l| l.contains("wasm backtrace")),
        "{log}"
    );
    assert!(
        !log.lines().any(|l| l.trim_start().starts_with("0:")),
        "a backtrace frame on a line of its own: {log}"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let gw = Gateway::start(&["--max-request-body-bytes", "1000"]);
    let upload = |size: usize| {
        send(
            &gw,
            "POST",
            "k.localhost",
            "/p2/t/upload",
            &[],
            Bytes::from(vec![1u8; size]),
        )
    };
    assert_eq!(upload(1001).await.status, 413);
    let r = upload(1000).await;
    assert_eq!((r.status, r.text().as_str()), (200, "1000"));
    // A chunked body declares no length: the limit is enforced while streaming.
    let chunk = "a".repeat(600);
    let chunked = format!(
        "POST /p3/t/upload HTTP/1.1\r\nHost: k.localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let reply = raw_request(gw.addr, &chunked).unwrap();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
}

/// Every way a freed pool slot's memory is reset: all of it kept resident
/// and reset in place (the default), none of it (madvise), and a keep-resident
/// budget smaller than what the probe dirties (1 MiB of grown pages plus its
/// stack, heap and static data), so one slot is reset both ways at once.
#[tokio::test]
async fn no_instance_sees_another_instances_memory() {
    for keep_resident in [None, Some("0"), Some("65536")] {
        let args: Vec<&str> =
            keep_resident.map_or(vec![], |bytes| vec!["--memory-keep-resident-bytes", bytes]);
        let gw = Gateway::start(&args);
        for prefix in ["/p2", "/p3"] {
            for round in 0..25 {
                let context = format!("{prefix} round {round}, keep resident {keep_resident:?}");
                let r = get(&gw, "k.localhost", &format!("{prefix}/t/memory-probe")).await;
                assert_eq!(r.text(), "grown_dirty=0 static_dirty=0", "{context}");
                let r = get(&gw, "k.localhost", &format!("{prefix}/t/counter")).await;
                assert_eq!(r.text(), "1", "{context}: state survived between requests");
            }
        }
    }
}

#[tokio::test]
async fn tenant_concurrency_limit_answers_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start(&["--max-concurrent-requests", "1"]);
    // The slot is held by an upload whose body the test has not finished, so
    // how long it is held does not depend on timing.
    let mut upload = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    upload
        .write_all(
            b"POST /p2/t/upload HTTP/1.1\r\nHost: k.localhost\r\nConnection: close\r\n\
              Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        )
        .await
        .unwrap();
    crate::support::wait_inflight(&gw, 1).await;
    let refused = get(&gw, "k.localhost", "/p2/t/hello").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    let json: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(json["error"]["code"], "too_many_requests");
    // Another tenant-wide path is refused too, not only the same route.
    assert_eq!(get(&gw, "k.localhost", "/p3/t/hello").await.status, 503);

    upload.write_all(b"2\r\nde\r\n0\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    upload.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (_, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(body == "5" || body == "1\r\n5\r\n0\r\n\r\n", "{reply}");
    // The slot frees once that response is written; then requests get through again.
    crate::support::wait_inflight(&gw, 0).await;
    assert_eq!(get(&gw, "k.localhost", "/p2/t/hello").await.status, 200);
}

#[tokio::test]
async fn guests_read_their_files_read_only_and_nothing_else() {
    let gw = Gateway::start(&[]);
    let probe = |path: &str| format!("/p2/t/file?path={path}");
    let r = get(&gw, "k.localhost", &probe("/data/readme.txt")).await;
    assert_eq!(
        r.text(),
        "read=a file the guest may read write=error(PermissionDenied)"
    );
    for outside in [
        "/etc/passwd",
        "/data/../../../../etc/passwd",
        "/proc/self/environ",
        "readme.txt",
    ] {
        let r = get(&gw, "k.localhost", &probe(outside)).await;
        let text = r.text();
        assert!(text.starts_with("read=error("), "{outside}: {text}");
        assert!(!text.contains("write=ok"), "{outside}: {text}");
    }
    let apps = std::path::Path::new(test_programs::KITCHEN_MANIFEST)
        .parent()
        .unwrap();
    assert!(apps.join("files/readme.txt").exists());
    assert!(!apps.join("files/readme.txt.written").exists());
}

#[tokio::test]
async fn guests_cannot_open_sockets() {
    let gw = Gateway::start(&[]);
    // Even the gateway's own listener, which certainly accepts connections.
    for addr in [gw.addr.to_string(), gw.metrics.to_string()] {
        let r = get(&gw, "k.localhost", &format!("/p2/t/connect?addr={addr}")).await;
        let text = r.text();
        assert!(text.starts_with("connect=error("), "{addr}: {text}");
    }
}

/// A p2 guest whose client leaves mid-body keeps running off the request's
/// task until it notices and returns, and then gives its pool slot back:
/// with a single slot per engine, the next request still gets served.
#[tokio::test]
async fn a_guest_whose_client_left_ends_and_frees_its_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start(&["--max-instances", "1"]);
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"GET /p2/t/download?bytes=1000000000 HTTP/1.1\r\nHost: k.localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 1024];
    let n = conn.read(&mut head).await.unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    drop(conn);
    // The slot frees once the guest's next write fails; poll for it.
    let mut last = 0;
    for _ in 0..100 {
        let r = get(&gw, "k.localhost", "/p2/t/hello").await;
        if r.status == 200 {
            return;
        }
        last = r.status;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the only pool slot never came back (last status {last})");
}

/// A client that leaves while its guest still runs does not free the
/// tenant's slot: the instance holds it until it stops. Otherwise a tenant
/// disconnecting in a loop could keep any number of guests running.
#[tokio::test]
async fn a_slot_stays_taken_until_the_guest_stops_not_until_the_client_leaves() {
    use tokio::io::AsyncWriteExt;
    let gw = Gateway::start(&[
        "--max-concurrent-requests",
        "2",
        "--cpu-time-ms",
        "1000",
        "--request-timeout-ms",
        "20000",
    ]);
    // Each loop gets a body the client never finishes, then the client goes:
    // the edge sees it leave while the guest keeps looping.
    for (prefix, component) in [("/p2", "sdk5"), ("/p3", "sdk7")] {
        let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let head = format!(
            "POST {prefix}/t/loop HTTP/1.1\r\nHost: k.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        crate::support::wait_inflight(&gw, if component == "sdk5" { 1 } else { 2 }).await;
        drop(conn);
        let gone = format!(
            r#"okra_http_requests_total{{app="kitchen",component="{component}",status="400",tenant="local"}} 1"#
        );
        crate::support::wait_metrics(&gw, &[&gone]).await;
    }
    // Both clients are gone and the edge is done with them; both guests
    // still loop, so the tenant is at its limit.
    let refused = get(&gw, "k.localhost", "/p2/t/hello").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    crate::support::wait_inflight(&gw, 2).await;
    // Once the loops spend their CPU budget, the slots come back.
    crate::support::wait_inflight(&gw, 0).await;
    assert_eq!(get(&gw, "k.localhost", "/p2/t/hello").await.status, 200);
}

/// What a guest writes to stdout and stderr reaches the operator's log one
/// line per event, tagged with its tenant, app and component and escaped,
/// so it cannot pass for a line of the gateway's own.
#[tokio::test]
async fn guest_output_cannot_forge_log_lines() {
    let log_file = crate::support::LogFile::new();
    let gw = crate::support::Launch {
        env: &[("OKRA_LOG", "warn,okra::guest=info"), ("NO_COLOR", "1")],
        stderr: log_file.file(),
        ..crate::support::Launch::default()
    }
    .start(
        &[&format!("k.localhost={}", test_programs::KITCHEN_MANIFEST)],
        &[],
    );
    assert_eq!(
        get(&gw, "k.localhost", "/p2/t/print").await.text(),
        "printed"
    );
    let log = log_file.wait_for("no newline at the end").await;
    let guest_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("guest says hi") || l.contains("partial") || l.contains("forged"))
        .collect();
    assert_eq!(guest_lines.len(), 3, "{log}");
    for line in &guest_lines {
        assert!(
            line.contains("tenant=local")
                && line.contains("app=kitchen")
                && line.contains("component=sdk5"),
            "untagged guest output: {line}"
        );
        assert!(!line.starts_with("2026-12-01T00:00:00"), "{line}");
        assert!(
            !line.contains('\u{1b}'),
            "an escape code got through: {line:?}"
        );
    }
    let forged = guest_lines.iter().find(|l| l.contains("forged")).unwrap();
    assert!(
        forged.contains("\\u{1b}[2J\\rno newline at the end"),
        "{forged}"
    );
}

/// `--log-format json`: every line on stderr is one JSON object, guest
/// output included, with its tags as fields.
#[tokio::test]
async fn logs_can_be_json_lines() {
    let log_file = crate::support::LogFile::new();
    let gw = crate::support::Launch {
        env: &[("OKRA_LOG", "info")],
        stderr: log_file.file(),
        ..crate::support::Launch::default()
    }
    .start(
        &[&format!("k.localhost={}", test_programs::KITCHEN_MANIFEST)],
        &["--log-format", "json"],
    );
    assert_eq!(get(&gw, "k.localhost", "/p2/t/print").await.status, 200);
    let log = log_file.wait_for("guest says hi").await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let guest = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("guest says hi"))
        })
        .unwrap_or_else(|| panic!("no guest line in {log}"));
    assert_eq!(guest["fields"]["tenant"], "local", "{guest}");
    assert_eq!(guest["fields"]["component"], "sdk5", "{guest}");
    assert_eq!(guest["level"], "INFO", "{guest}");
}

/// Requests per second, per tenant and per app: past the bucket, 429 with a
/// `Retry-After`, counted per tenant.
#[tokio::test]
async fn request_rates_are_limited_per_app_and_per_tenant() {
    let gw = Gateway::start(&[
        "--app-requests-per-second",
        "3",
        "--requests-per-second",
        "5",
    ]);
    // All at once, so the buckets cannot refill in between on a slow machine.
    let burst = |host: &'static str, n: usize| {
        let gw = &gw;
        async move {
            let replies = futures::future::join_all((0..n).map(|_| {
                get(
                    gw,
                    host,
                    if host == "k.localhost" {
                        "/static"
                    } else {
                        "/"
                    },
                )
            }))
            .await;
            let ok = replies.iter().filter(|r| r.status < 400).count();
            let limited: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
            (
                ok,
                limited.len(),
                limited
                    .iter()
                    .map(|r| r.headers["retry-after"].to_str().unwrap_or("").to_string())
                    .collect::<Vec<_>>(),
            )
        }
    };
    let (ok, limited, retry_after) = burst("k.localhost", 12).await;
    // 3 at once, and one more for each third of a second the burst took.
    assert!((3..=5).contains(&ok), "app bucket of 3: {ok} got through");
    assert_eq!(ok + limited, 12);
    assert!(
        retry_after
            .iter()
            .all(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)),
        "{retry_after:?}"
    );
    // The other app has a bucket of its own, but the tenant's holds 5 in all.
    let (ok, _, _) = burst("hello.localhost", 12).await;
    assert!(
        ok <= 3,
        "the tenant's bucket of 5 had {ok} left for the second app"
    );
    let text = crate::support::wait_metrics(&gw, &[]).await;
    let counted: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("okra_rate_limited_total{tenant=\"local\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(counted >= 17, "okra_rate_limited_total = {counted}");
}

/// A tenant's CPU-bound guests take turns: with one turn, three endless
/// loops run one at a time and the other two wait (seen in
/// `okra_tenant_cpu_waiting`), while short requests never wait for a turn.
#[tokio::test]
async fn cpu_bound_guests_of_a_tenant_take_turns() {
    let gw = Gateway::start(&[
        "--cpu-parallelism",
        "1",
        "--cpu-time-ms",
        "1000",
        "--request-timeout-ms",
        "30000",
    ]);
    let loops = futures::future::join_all((0..3).map(|_| get(&gw, "k.localhost", "/p2/t/loop")));
    let observe = async {
        crate::support::wait_metrics(&gw, &["okra_tenant_cpu_waiting{tenant=\"local\"} 2"]).await;
        // A short request does not queue behind them.
        assert_eq!(get(&gw, "k.localhost", "/p2/t/hello").await.status, 200);
    };
    let (replies, ()) = tokio::join!(loops, observe);
    for reply in replies {
        assert_eq!(reply.status, 504, "{}", reply.text());
    }
    crate::support::wait_metrics(&gw, &["okra_tenant_cpu_waiting{tenant=\"local\"} 0"]).await;
}
