//! Inside an app, end to end: local service chaining, self-routes through
//! the peers' load balancer, private routes and the hop limit, driven by
//! the spin-sdk 5 and 7 test guests and by the seed blog's bookserver.

use crate::support::{Gateway, Launch, get, send, wait_metrics};

/// An app of test guests: `caller2` (sdk5) may chain to `target` and call
/// itself; `caller3` (sdk7) may chain to any component of the app and call
/// itself; `closed` may do neither; `open2` allows `*://*:*`; `looper`
/// chains to itself and self-routes; `target` is private; `pub5` is public.
fn chain_app(dir: &tempfile::TempDir) -> String {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "chain"
[[trigger.http]]
route = "/c2/t/..."
component = "caller2"
[[trigger.http]]
route = "/c3/t/..."
component = "caller3"
[[trigger.http]]
route = "/closed/t/..."
component = "closed"
[[trigger.http]]
route = "/open2/t/..."
component = "open2"
[[trigger.http]]
route = "/loop/t/..."
component = "looper"
[[trigger.http]]
route = "/pub/t/..."
component = "pub5"
[[trigger.http]]
route = {{ private = true }}
component = "target"
[component.caller2]
source = {sdk5:?}
allowed_outbound_hosts = ["http://target.spin.internal", "http://self"]
[component.caller3]
source = {sdk7:?}
allowed_outbound_hosts = ["http://*.spin.internal", "https://self.alt"]
[component.closed]
source = {sdk5:?}
[component.open2]
source = {sdk5:?}
allowed_outbound_hosts = ["*://*:*"]
[component.looper]
source = {sdk5:?}
allowed_outbound_hosts = ["http://looper.spin.internal", "http://self"]
[component.pub5]
source = {sdk5:?}
[component.target]
source = {sdk7:?}
"#,
        sdk5 = test_programs::SDK5_GUEST,
        sdk7 = test_programs::SDK7_GUEST,
    );
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    format!("chain.localhost={}", path.display())
}

/// A second tenant-less app with one component, to try to reach from `chain`.
fn other_app(dir: &tempfile::TempDir) -> String {
    let manifest = format!(
        "spin_manifest_version = 2\n[application]\nname = \"other\"\n[[trigger.http]]\nroute = {{ private = true }}\ncomponent = \"secret\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"front\"\n[component.secret]\nsource = {sdk5:?}\n[component.front]\nsource = {sdk5:?}\n",
        sdk5 = test_programs::SDK5_GUEST,
    );
    let path = dir.path().join("other.toml");
    std::fs::write(&path, manifest).unwrap();
    format!("other.localhost={}", path.display())
}

/// What `/<prefix>/t/fetch?<query>` of the chain app reports.
async fn fetch(gw: &Gateway, prefix: &str, query: &str) -> String {
    let reply = get(gw, "chain.localhost", &format!("/{prefix}/t/fetch?{query}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[tokio::test]
async fn chaining_runs_the_apps_own_components_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_apps(&[&chain_app(&dir), &other_app(&dir)], &[]);

    // p2 → p3, to a private component: Spin's chaining headers, the
    // caller's headers minus Host, the request id carried along.
    let reply = send(
        &gw,
        "GET",
        "chain.localhost",
        "/c2/t/fetch?h=x-custom:yes&url=http://target.spin.internal/t/headers?q=1",
        &[("x-request-id", "chain-1")],
        Default::default(),
    )
    .await;
    let text = reply.text();
    assert!(text.starts_with("status=200 "), "{text}");
    for line in [
        "spin-client-addr: 0.0.0.0:0",
        "spin-path-info: /t/headers",
        "spin-matched-route: /...",
        "spin-component-route: \n",
        "spin-full-url: http://localhost/t/headers?q=1",
        "x-custom: yes",
        "x-request-id: chain-1",
    ] {
        assert!(text.contains(line), "{line:?} missing from {text}");
    }
    assert!(!text.contains("\nhost:"), "{text}");

    // p3 → p3 and p3 → p2, streaming a body back.
    let text = fetch(&gw, "c3", "url=http://target.spin.internal/t/hello").await;
    assert_eq!(text, "status=200 body=Hello from spin-sdk 7\n");
    let text = fetch(
        &gw,
        "c3",
        "url=http://pub5.spin.internal/t/download?bytes=300000",
    )
    .await;
    assert!(
        text.starts_with("status=200 body=xxxx"),
        "{}",
        &text[..40.min(text.len())]
    );
    assert_eq!(text.len(), "status=200 body=".len() + 300_000);

    // The allow-list decides, as for any host; the port is checked too.
    for (prefix, url) in [
        ("c2", "http://pub5.spin.internal/t/hello"),
        ("c2", "https://target.spin.internal/t/hello"),
        ("c2", "http://target.spin.internal:8080/t/hello"),
        ("closed", "http://target.spin.internal/t/hello"),
    ] {
        let text = fetch(&gw, prefix, &format!("url={url}")).await;
        assert!(text.contains("HttpRequestDenied"), "{prefix} {url}: {text}");
    }
    // No such component, or not a component name: an error the guest
    // handles, never a DNS lookup, never a trap.
    for url in [
        "http://nosuch.spin.internal/",
        "http://secret.spin.internal/",
        "http://a.target.spin.internal/t/hello",
    ] {
        let text = fetch(&gw, "open2", &format!("url={url}")).await;
        assert!(text.contains("DestinationNotFound"), "{url}: {text}");
    }

    wait_metrics(
        &gw,
        &[
            "okra_outbound_requests_total{app=\"chain\",kind=\"chained\",outcome=\"ok\",tenant=\"local\"} 3",
            "okra_outbound_requests_total{app=\"chain\",kind=\"chained\",outcome=\"denied\",tenant=\"local\"} 4",
            "okra_outbound_requests_total{app=\"chain\",kind=\"chained\",outcome=\"error\",tenant=\"local\"} 3",
        ],
    )
    .await;
}

/// Nests `depth` requests of the looper: each hop asks the next for its
/// `url`, the innermost says hello.
fn nested(base: &str, depth: usize) -> String {
    let mut url = format!("{base}/t/hello");
    for _ in 0..depth - 1 {
        url = format!("{base}/t/fetch?url={url}");
    }
    url
}

#[tokio::test]
async fn hop_limits_stop_loops_by_chaining_and_by_self_route() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_apps(&[&chain_app(&dir)], &["--max-hops", "4"]);
    for base in ["http://looper.spin.internal", "/loop"] {
        // Four hops after the client's request are allowed; a fifth is a loop.
        let text = fetch(&gw, "loop", &format!("url={}", nested(base, 4))).await;
        assert!(text.contains("Hello from spin-sdk 5"), "{base}: {text}");
        let text = fetch(&gw, "loop", &format!("url={}", nested(base, 5))).await;
        assert!(
            text.contains("LoopDetected") && !text.contains("Hello"),
            "{base}: {text}"
        );
    }
    // A client cannot reset the count: the hop header is the gateway's.
    let reply = send(
        &gw,
        "GET",
        "chain.localhost",
        &format!("/loop/t/fetch?url={}", nested("/loop", 5)),
        &[("okra-hops", "0")],
        Default::default(),
    )
    .await;
    assert!(reply.text().contains("LoopDetected"), "{}", reply.text());
}

#[tokio::test]
async fn self_routes_reenter_public_routing_under_the_apps_host() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_apps(&[&chain_app(&dir), &other_app(&dir)], &[]);

    // Relative (spin-sdk 5 sends `:80` as the authority) and `self.alt`.
    for url in [
        "/pub/t/hello",
        "http://self.alt/pub/t/hello",
        "http://self/pub/t/hello",
    ] {
        let text = fetch(&gw, "c2", &format!("url={url}")).await;
        assert_eq!(text, "status=200 body=Hello from spin-sdk 5\n", "{url}");
    }
    // The request arrives as a fresh public one, with the app's Host.
    let text = fetch(&gw, "c2", "url=/pub/t/headers").await;
    assert!(
        text.contains("spin-full-url: http://chain.localhost/pub/t/headers"),
        "{text}"
    );
    assert!(text.contains("spin-path-info: /headers"), "{text}");
    assert!(!text.contains("okra-hops"), "{text}");
    // wasi:http 0.3: `self.alt` works; a relative URL fails inside
    // Wasmtime 48 (no authority) before the host sees it.
    let text = fetch(&gw, "c3", "url=https://self.alt/pub/t/hello").await;
    assert_eq!(text, "status=200 body=Hello from spin-sdk 5\n");
    let text = fetch(&gw, "c3", "url=/pub/t/hello").await;
    assert!(text.starts_with("error="), "{text}");

    // Private routes stay private: a self-route gets the public 404.
    let public_404 = get(&gw, "chain.localhost", "/t/hello").await;
    assert_eq!(public_404.status, 404);
    let text = fetch(&gw, "c2", "url=/t/hello").await;
    assert_eq!(text, format!("status=404 body={}", public_404.text()));

    // Without `http://self` (or a `*` host) it is denied.
    let text = fetch(&gw, "closed", "url=/pub/t/hello").await;
    assert!(text.contains("HttpRequestDenied"), "{text}");
    // The guest cannot pick another app's hostname: Host is forbidden to
    // guests, and the self-route always carries the caller's.
    let text = fetch(&gw, "c2", "h=host:other.localhost&url=/t/hello").await;
    assert!(text.starts_with("error="), "{text}");

    wait_metrics(
        &gw,
        &["okra_outbound_requests_total{app=\"chain\",kind=\"self\",outcome=\"ok\",tenant=\"local\"} 6"],
    )
    .await;
}

#[tokio::test]
async fn self_routes_skip_peers_that_fail_their_health_check() {
    let dir = tempfile::tempdir().unwrap();
    let own = crate::support::free_port();
    let dead = crate::support::free_port();
    let gw = Launch {
        listen: Some(own),
        ..Default::default()
    }
    .start(
        &[&chain_app(&dir)],
        &["--peer", &dead.to_string(), "--peer", &own.to_string()],
    );
    wait_metrics(
        &gw,
        &[
            &format!("okra_peer_up{{peer=\"{dead}\"}} 0"),
            &format!("okra_peer_up{{peer=\"{own}\"}} 1"),
        ],
    )
    .await;
    for _ in 0..6 {
        let text = fetch(&gw, "c2", "url=/pub/t/hello").await;
        assert_eq!(text, "status=200 body=Hello from spin-sdk 5\n");
    }
}

#[tokio::test]
async fn other_apps_are_out_of_reach() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_apps(
        &[&chain_app(&dir), &other_app(&dir)],
        &["--resolve", "other.localhost=127.0.0.1"],
    );
    let port = gw.addr.port();
    for url in [
        // Chaining names only this app's components.
        "http://secret.spin.internal/t/hello".to_string(),
        "http://secret.spin.internal.other.localhost/t/hello".to_string(),
        // Another app's public hostname is an external request, and the
        // gateway's own address is a private network.
        format!("http://other.localhost:{port}/t/hello"),
        format!("http://127.0.0.1:{port}/t/hello"),
    ] {
        let text = fetch(&gw, "open2", &format!("url={url}")).await;
        assert!(text.starts_with("error="), "{url}: {text}");
        assert!(!text.contains("Hello"), "{url}: {text}");
    }
}

/// The seed blog's app as written: the frontend renders the book the
/// private API chose, reached by chaining through a variable.
#[tokio::test]
async fn bookserver_chains_to_its_private_api() {
    let app = format!("books.localhost={}", test_programs::BOOKSERVER_MANIFEST);
    let gw = Gateway::start_apps(&[&app], &[]);
    let page = get(&gw, "books.localhost", "/").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_book_of_the_day(&page.text());
    // The API is private: the same 404 as a path no route serves.
    let api = get(&gw, "books.localhost", "/api").await;
    let nothing = get(&gw, "books.localhost", "/nothing-here").await;
    assert_eq!((api.status, api.text()), (404, nothing.text()));
    wait_metrics(
        &gw,
        &["okra_outbound_requests_total{app=\"bookserver\",kind=\"chained\",outcome=\"ok\",tenant=\"local\"} 1"],
    )
    .await;
}

/// The same app with the variable switched to a self-route: the private
/// API answers 404 to it, and once `/api` is public the page renders.
#[tokio::test]
async fn bookserver_by_self_route() {
    let private = format!("books.localhost={}", test_programs::BOOKSERVER_MANIFEST);
    let gw = Launch {
        env: &[("OKRA_VARIABLE_BOOK_API_URL", "http://self.alt/api")],
        ..Default::default()
    }
    .start(&[&private], &[]);
    let page = get(&gw, "books.localhost", "/").await;
    assert_eq!(page.status, 502, "{}", page.text());
    assert!(page.text().contains("answered 404"), "{}", page.text());
    drop(gw);

    let dir = tempfile::tempdir().unwrap();
    let manifest = std::fs::read_to_string(test_programs::BOOKSERVER_MANIFEST)
        .unwrap()
        .replace("route = { private = true }", "route = \"/api\"")
        .replace(
            "target/wasm32-wasip2/release/",
            &format!(
                "{}/target/wasm32-wasip2/release/",
                std::path::Path::new(test_programs::BOOKSERVER_MANIFEST)
                    .parent()
                    .unwrap()
                    .display()
            ),
        );
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    let public = format!("books.localhost={}", path.display());
    // --var beats OKRA_VARIABLE_*.
    let gw = Launch {
        env: &[(
            "OKRA_VARIABLE_BOOK_API_URL",
            "http://book-api.spin.internal/api",
        )],
        ..Default::default()
    }
    .start(&[&public], &["--var", "book_api_url=http://self.alt/api"]);
    let page = get(&gw, "books.localhost", "/").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_book_of_the_day(&page.text());
    wait_metrics(
        &gw,
        &["okra_outbound_requests_total{app=\"bookserver\",kind=\"self\",outcome=\"ok\",tenant=\"local\"} 1"],
    )
    .await;
}

fn assert_book_of_the_day(text: &str) {
    let books = [
        ("Dead Souls", "Nikolai Gogol"),
        ("The Little Drummer Girl", "John Le Carré"),
        ("We Were Eight Years In Power", "Ta-Nehisi Coates"),
        ("My Ántonia", "Willa Cather"),
        ("Haroun and the Sea of Stories", "Salman Rushdie"),
        ("The Bird King", "G. Willow Wilson"),
        ("The Hobbit", "J.R.R. Tolkien"),
    ];
    assert!(
        books
            .iter()
            .any(|(title, author)| text == format!("Today's book is _{title}_ by {author}\n")),
        "{text}"
    );
}
