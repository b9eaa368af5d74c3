//! Spin key-value (`fermyon:spin/key-value@2.0.0`) end to end: a spin-sdk 5
//! component walks Spin's semantics on its "default" store, only the stores
//! its manifest lists open, each app has its own data, and the data
//! outlives the gateway.

use crate::support::{Gateway, Launch, get, one_component_manifest, toml_list};

/// A manifest serving the sdk5 test component on every path, as app `name`,
/// with these `key_value_stores`.
fn kv_app(dir: &std::path::Path, name: &str, stores: &[&str]) -> String {
    let keys = format!("key_value_stores = {}", toml_list(stores));
    one_component_manifest(dir, name, test_programs::SDK5_GUEST, "", &keys)
}

fn start(data: &std::path::Path, apps: &[String]) -> Gateway {
    let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
    Launch::default().start(&apps, &["--data-dir", data.to_str().unwrap()])
}

#[tokio::test]
async fn stores_follow_spins_semantics_and_belong_to_their_app() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let apps = [
        format!("a.localhost={}", kv_app(dir.path(), "kv-a", &["default"])),
        format!(
            "b.localhost={}",
            kv_app(dir.path(), "kv-b", &["default", "extra"])
        ),
        format!("none.localhost={}", kv_app(dir.path(), "kv-none", &[])),
    ];
    let gw = start(&data, &apps);
    let walk = get(&gw, "a.localhost", "/kv-walk").await.text();
    assert_eq!(
        walk,
        [
            "forbidden: access-denied",
            "exists false",
            "get None",
            "keys []",
            "get Some(Ok(\"baz\"))",
            "exists true",
            "keys [\"bar\", \"qux\"]",
            "keys []",
        ]
        .join("\n")
    );
    // A component that lists no store opens none, "default" included.
    assert_eq!(
        get(&gw, "none.localhost", "/kv").await.text(),
        "error: Error::AccessDenied"
    );
    // Each app has its own data, whatever the store is called.
    let set = |host, store, value| {
        let path = format!("/kv-set?store={store}&key=k&value={value}");
        let gw = &gw;
        async move { get(gw, host, &path).await.text() }
    };
    assert_eq!(set("a.localhost", "default", "from-a").await, "set");
    assert_eq!(set("b.localhost", "default", "from-b").await, "set");
    assert_eq!(set("b.localhost", "extra", "extra-b").await, "set");
    assert_eq!(
        set("a.localhost", "extra", "x").await,
        "error: Error::AccessDenied",
        "a store another app lists is not this app's"
    );
    let read = |host: &'static str, store: &'static str| {
        let gw = &gw;
        async move {
            get(gw, host, &format!("/kv-get?store={store}&key=k"))
                .await
                .text()
        }
    };
    assert_eq!(read("a.localhost", "default").await, "from-a");
    assert_eq!(read("b.localhost", "default").await, "from-b");
    assert_eq!(read("b.localhost", "extra").await, "extra-b");
    drop(gw);
    // The data outlives the gateway.
    let gw = start(&data, &apps);
    assert_eq!(
        get(&gw, "a.localhost", "/kv-get?store=default&key=k")
            .await
            .text(),
        "from-a"
    );
}

/// A bundle of the sdk5 component on every path, with a "default" store.
fn kv_bundle() -> Vec<u8> {
    kv_bundle_with("default")
}

/// A bundle of the sdk5 component on every path, with store `label`.
fn kv_bundle_with(label: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::SDK5_GUEST, dir.path().join("c.wasm")).unwrap();
    std::fs::write(
        dir.path().join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"kv\"\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
         [component.c]\nsource = \"c.wasm\"\nkey_value_stores = [{label:?}]\n"
        ),
    )
    .unwrap();
    control_plane::bundle::pack(dir.path()).unwrap()
}

/// Data belongs to a tenant and an app by their ids, not their names: a
/// tenant deleted and created again under its name, or another tenant
/// with an app of the same name, finds nothing of the first one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_made_again_under_an_old_name_finds_nothing() {
    use crate::support::control::{
        ADMIN, call, create_tenant, deploy, host, start_node, until_gone, until_served,
    };
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&format!("file:{}", data.path().display()), true, &[]);
    let deployed = |tenant: &'static str| {
        let node = &node;
        async move {
            let token = create_tenant(node.api, tenant).await;
            let (status, body) = deploy(node.api, &token, tenant, "kv", kv_bundle()).await;
            assert_eq!(status, 201, "{body}");
            until_served(&node.gateway, &host("kv", tenant), "Hello from spin-sdk 5").await;
        }
    };
    let kv = |tenant: &'static str, path: &'static str| {
        let node = &node;
        async move { get(&node.gateway, &host("kv", tenant), path).await.text() }
    };
    deployed("acme").await;
    deployed("beta").await;
    assert_eq!(
        kv("acme", "/kv-set?store=default&key=k&value=acme's").await,
        "set"
    );
    assert_eq!(kv("acme", "/kv-get?store=default&key=k").await, "acme's");
    assert_eq!(kv("beta", "/kv-get?store=default&key=k").await, "<none>");

    let (status, body) = call(node.api, "DELETE", "/v1/tenants/acme", Some(ADMIN), "").await;
    assert_eq!(status, 204, "{body}");
    until_gone(&node.gateway, &host("kv", "acme")).await;
    deployed("acme").await;
    assert_eq!(kv("acme", "/kv-get?store=default&key=k").await, "<none>");
}

/// wasi:keyvalue (store, batch, atomics) walks its semantics over the same
/// stores, and increments and compare-and-swaps from many requests at once
/// lose no update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_keyvalue_atomics_hold_under_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let apps = [format!(
        "w.localhost={}",
        kv_app(dir.path(), "wkv", &["default"])
    )];
    let gw = start(&data, &apps);
    let walk = get(&gw, "w.localhost", "/wkv-walk").await;
    assert_eq!(
        (walk.status, walk.text()),
        (
            200,
            [
                "forbidden: access-denied",
                "keys [\"a\", \"b\", \"c\"] cursor None",
                "get-many [(\"a\", Some([49])), (\"zz\", None)]",
                "exists a true zz false",
                "increment 5",
                "increment 3",
                "increment text Err(Error::Other(\"the value of \\\"a\\\" is 1 bytes, not a 64-bit integer (8 bytes, little-endian)\"))",
                "cas current Some([49])",
                "swap over a stale value: cas-failed, now Some([99, 104, 97, 110, 103, 101, 100])",
                "swap again: Some([109, 105, 110, 101])",
                "keys []",
            ]
            .join("\n")
        )
    );
    const PARALLEL: usize = 24;
    let gw = &gw;
    let increments = (0..PARALLEL)
        .map(|_| async move { get(gw, "w.localhost", "/wkv-incr?key=hits&delta=1").await });
    for reply in futures::future::join_all(increments).await {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let total = get(gw, "w.localhost", "/wkv-incr?key=hits&delta=0").await;
    assert_eq!(total.text(), PARALLEL.to_string());
    let letters: Vec<char> = ('a'..='z').take(PARALLEL).collect();
    let appends = letters.iter().map(|letter| async move {
        get(
            gw,
            "w.localhost",
            &format!("/wkv-append?key=log&text={letter}"),
        )
        .await
    });
    for reply in futures::future::join_all(appends).await {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // Spin's own interface reads what wasi:keyvalue wrote.
    let mut log: Vec<char> = get(gw, "w.localhost", "/kv-get?store=default&key=log")
        .await
        .text()
        .chars()
        .collect();
    log.sort_unstable();
    assert_eq!(log, letters, "an append was lost or doubled");
}

/// The REST API and `okra kv` read and write the very data the app's guests
/// see, for the app's tenant and the admin only, under the tenant's
/// quotas; keys with `/`, `%` and spaces survive the trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_and_okra_kv_reach_what_guests_see_and_nothing_else() {
    use crate::okra_cli::{okra, stdout};
    use crate::support::control::{
        ADMIN, assert_error, call, create_tenant, deploy, get_json, host, start_node, until_served,
    };
    let data = tempfile::tempdir().unwrap();
    let node = start_node(
        &format!("file:{}", data.path().display()),
        true,
        &["--max-kv-keys", "4", "--max-kv-value-bytes", "64"],
    );
    let acme = create_tenant(node.api, "acme").await;
    let beta = create_tenant(node.api, "beta").await;
    for (tenant, token) in [("acme", &acme), ("beta", &beta)] {
        let (status, body) = deploy(node.api, token, tenant, "kv", kv_bundle()).await;
        assert_eq!(status, 201, "{body}");
        until_served(&node.gateway, &host("kv", tenant), "Hello from spin-sdk 5").await;
    }
    let guest = |path: &'static str| {
        let node = &node;
        async move { get(&node.gateway, &host("kv", "acme"), path).await.text() }
    };
    let server = format!("http://{}", node.api);
    let cli = |args: &[&str], token: &str| {
        let mut all = vec![
            "--server",
            server.as_str(),
            "--token",
            token,
            "--tenant",
            "acme",
        ];
        all.extend_from_slice(args);
        okra(&all, &[])
    };

    // What the guest wrote, the API reads, and the other way round.
    assert_eq!(
        guest("/kv-set?store=default&key=k&value=guest").await,
        "set"
    );
    assert_eq!(
        stdout(&cli(&["kv", "get", "kv", "default", "k"], &acme)),
        "guest"
    );
    stdout(&cli(&["kv", "set", "kv", "default", "k", "api"], &acme));
    assert_eq!(guest("/kv-get?store=default&key=k").await, "api");
    let odd = "a/b %2F c?d";
    stdout(&cli(&["kv", "set", "kv", "default", odd, "odd"], ADMIN));
    assert_eq!(
        stdout(&cli(&["kv", "get", "kv", "default", odd], &acme)),
        "odd"
    );
    assert_eq!(
        stdout(&cli(&["kv", "list", "kv", "default"], &acme)),
        format!("{odd}\nk\n")
    );
    // Pages, by prefix.
    stdout(&cli(&["kv", "set", "kv", "default", "k2", "v"], &acme));
    let (status, page) = get_json(
        node.api,
        "/v1/tenants/acme/apps/kv/kv/default?prefix=k&limit=1",
        &acme,
    )
    .await;
    assert_eq!((status, &page["keys"]), (200, &serde_json::json!(["k"])));
    let (_, rest) = get_json(
        node.api,
        &format!(
            "/v1/tenants/acme/apps/kv/kv/default?prefix=k&limit=1&after={}",
            page["next"].as_str().unwrap()
        ),
        &acme,
    )
    .await;
    assert_eq!(rest, serde_json::json!({"keys": ["k2"]}));
    let (status, body) = get_json(
        node.api,
        "/v1/tenants/acme/apps/kv/kv/default?limit=0",
        &acme,
    )
    .await;
    assert_error(status, &body, 400, "invalid_limit");

    // Another tenant's token, an app that is not there, an unknown query.
    let (status, body) = call(
        node.api,
        "PUT",
        "/v1/tenants/acme/apps/kv/kv/default/k",
        Some(&beta),
        "x",
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = get_json(node.api, "/v1/tenants/acme/apps/nope/kv/default", &acme).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = get_json(node.api, "/v1/tenants/acme/apps/kv/kv/default?x=1", &acme).await;
    assert_error(status, &body, 400, "invalid_query");
    // beta's app of the same name has none of acme's data.
    let (_, keys) = get_json(node.api, "/v1/tenants/beta/apps/kv/kv/default", &beta).await;
    assert_eq!(keys, serde_json::json!({"keys": []}));
    let (status, body) = call(
        node.api,
        "GET",
        "/v1/tenants/beta/apps/kv/kv/default/k",
        Some(&beta),
        "",
    )
    .await;
    assert_error(status, &body, 404, "not_found");

    // Limits and quotas: a value over 64 bytes, a fifth key of the tenant.
    let (status, body) = call(
        node.api,
        "PUT",
        "/v1/tenants/acme/apps/kv/kv/default/big",
        Some(&acme),
        vec![b'x'; 65],
    )
    .await;
    assert_error(status, &body, 413, "value_too_large");
    assert_eq!(guest("/kv-set?store=default&key=k3&value=v").await, "set");
    let (status, body) = call(
        node.api,
        "PUT",
        "/v1/tenants/acme/apps/kv/kv/default/k5",
        Some(&acme),
        "v",
    )
    .await;
    assert_error(status, &body, 422, "quota_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may hold 4"),
        "{body}"
    );
    let over = guest("/kv-set?store=default&key=k5&value=v").await;
    assert!(
        over.contains("may hold 4"),
        "the guest gets the interface's error: {over}"
    );
    // A delete gives the quota back.
    stdout(&cli(&["kv", "delete", "kv", "default", odd], &acme));
    assert_eq!(guest("/kv-set?store=default&key=k5&value=v").await, "set");
    let missing = cli(&["kv", "get", "kv", "default", odd], &acme);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no key"));

    // A store label past 64 bytes is refused at deploy, naming the key.
    let (status, body) = deploy(
        node.api,
        &acme,
        "acme",
        "long",
        kv_bundle_with(&"s".repeat(65)),
    )
    .await;
    assert_error(status, &body, 422, "invalid_manifest");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("component.c.key_value_stores"),
        "{body}"
    );

    // Purging the app removes its data and gives the quota back: another
    // app of the tenant may hold 4 keys again.
    stdout(&cli(&["apps", "delete", "kv", "--purge"], &acme));
    let (status, body) = deploy(node.api, &acme, "acme", "kv2", kv_bundle()).await;
    assert_eq!(status, 201, "{body}");
    for key in ["a", "b", "c", "d"] {
        stdout(&cli(&["kv", "set", "kv2", "default", key, "v"], &acme));
    }
    let fifth = cli(&["kv", "set", "kv2", "default", "e", "v"], &acme);
    assert!(String::from_utf8_lossy(&fifth.stderr).contains("may hold 4"));
}

/// With a Redis store, every gateway of the cluster sees the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_of_a_cluster_sees_the_same_key_value_data() {
    use crate::support::control::{Redis, create_tenant, deploy, host, start_node, until_served};
    let redis = Redis::start();
    let url = redis.server.url();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let nodes: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| start_node(&url, i == 0, &["--data-dir", dir.path().to_str().unwrap()]))
        .collect();
    let token = create_tenant(nodes[0].api, "acme").await;
    let (status, body) = deploy(nodes[0].api, &token, "acme", "kv", kv_bundle()).await;
    assert_eq!(status, 201, "{body}");
    let kv = host("kv", "acme");
    for node in &nodes {
        until_served(&node.gateway, &kv, "Hello from spin-sdk 5").await;
    }
    let on = |i: usize, path: &'static str| {
        let (node, kv) = (&nodes[i], &kv);
        async move { get(&node.gateway, kv, path).await.text() }
    };
    assert_eq!(on(0, "/kv-set?store=default&key=k&value=one").await, "set");
    assert_eq!(on(1, "/kv-get?store=default&key=k").await, "one");
    assert_eq!(on(1, "/wkv-incr?key=n&delta=2").await, "2");
    assert_eq!(on(0, "/wkv-incr?key=n&delta=3").await, "5");
    // Nothing of it is in either gateway's data directory.
    for dir in &dirs {
        assert!(!dir.path().join("key-value.sqlite").exists());
    }
}

/// spin:key-value@3.0.0 (spin-sdk 7, async ABI) walks Spin's semantics over
/// the same stores and limits, and what one request writes the next reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_key_value_3_follows_the_same_semantics_on_the_async_abi() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = format!("key_value_stores = {}", toml_list(&["default"]));
    let app = format!(
        "k3.localhost={}",
        one_component_manifest(dir.path(), "kv3", test_programs::SDK7_GUEST, "", &keys)
    );
    let none = format!(
        "none.localhost={}",
        one_component_manifest(dir.path(), "kv3-none", test_programs::SDK7_GUEST, "", "")
    );
    let gw = start(&data, &[app, none]);
    let walk = get(&gw, "k3.localhost", "/kv-walk").await;
    assert_eq!(
        (walk.status, walk.text()),
        (
            200,
            [
                "forbidden: Error::AccessDenied",
                "exists Ok(false)",
                "set Ok(())",
                "set Ok(())",
                "get Ok(Some(\"baz\"))",
                "exists Ok(true)",
                "keys Ok([\"bar\", \"qux\"])",
                "delete Ok(())",
                "delete Ok(())",
                "keys Ok([])",
                "long key Err(Error::Other(\"a key of 1025 bytes is over the 1024-byte limit on keys\"))",
            ]
            .join("\n")
        )
    );
    assert_eq!(
        get(&gw, "k3.localhost", "/kv-set?key=k&value=v3")
            .await
            .text(),
        "set"
    );
    assert_eq!(get(&gw, "k3.localhost", "/kv-get?key=k").await.text(), "v3");
    assert_eq!(
        get(&gw, "none.localhost", "/kv-get?key=k").await.text(),
        "error: Error::AccessDenied"
    );
}
