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
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::SDK5_GUEST, dir.path().join("c.wasm")).unwrap();
    std::fs::write(
        dir.path().join("spin.toml"),
        "spin_manifest_version = 2\n[application]\nname = \"kv\"\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
         [component.c]\nsource = \"c.wasm\"\nkey_value_stores = [\"default\"]\n",
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
