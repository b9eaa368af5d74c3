//! Spin SQLite end to end: the suite's sequence on "default" from the
//! sdk5 component and the same guest as a core module, databases that only
//! the manifest's labels open and that belong to their app, data that
//! outlives the gateway, and a Redis-cluster deploy that uses SQLite
//! refused with the reason.

use crate::support::control::{Redis, create_tenant, deploy, start_node};
use crate::support::{Gateway, get, one_component_manifest, toml_list};
use std::path::Path;

/// A manifest serving `wasm` on every path as app `name`, with these
/// `sqlite_databases`; returns `host=path`.
fn sqlite_app(dir: &Path, name: &str, wasm: &str, databases: &[&str]) -> String {
    let keys = format!("sqlite_databases = {}", toml_list(databases));
    let manifest = one_component_manifest(dir, name, wasm, "", &keys);
    format!("{name}.localhost={manifest}")
}

/// The report of `/sqlite-walk` for a table holding `values`.
fn walk(values: &[&str]) -> String {
    let mut lines = vec![
        "forbidden: access-denied".to_string(),
        "columns [\"key\", \"value\"]".to_string(),
    ];
    for v in values {
        lines.push(format!(
            "row [Value::Text(\"my_key\"), Value::Text(\"{v}\")]"
        ));
    }
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_follow_spins_semantics_and_belong_to_their_app() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let apps = [
        sqlite_app(dir.path(), "a", test_programs::SDK5_GUEST, &["default"]),
        sqlite_app(dir.path(), "m", test_programs::SDK5_MODULE, &["default"]),
        sqlite_app(dir.path(), "none", test_programs::SDK5_GUEST, &[]),
    ];
    let start = || {
        let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
        Gateway::start_apps(&apps, &["--data-dir", data.to_str().unwrap()])
    };
    let gw = start();
    let reply = get(&gw, "a.localhost", "/sqlite-walk?value=one").await;
    assert_eq!((reply.status, reply.text()), (200, walk(&["one"])));
    let reply = get(&gw, "a.localhost", "/sqlite-walk?value=two").await;
    assert_eq!((reply.status, reply.text()), (200, walk(&["one", "two"])));
    // The module build is another app: its own database.
    let reply = get(&gw, "m.localhost", "/sqlite-walk?value=mod").await;
    assert_eq!((reply.status, reply.text()), (200, walk(&["mod"])));
    // No database listed: even "default" is refused, with Spin's error.
    let reply = get(&gw, "none.localhost", "/sqlite-walk?value=x").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (500, "Error::AccessDenied")
    );
    drop(gw);
    // The data outlives the gateway.
    let gw = start();
    let reply = get(&gw, "a.localhost", "/sqlite-walk?value=three").await;
    assert_eq!(
        (reply.status, reply.text()),
        (200, walk(&["one", "two", "three"]))
    );
}

/// A bundle of the sdk5 component with these `sqlite_databases`.
fn sqlite_bundle(label: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::SDK5_GUEST, dir.path().join("c.wasm")).unwrap();
    std::fs::write(
        dir.path().join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"db\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
             [component.c]\nsource = \"c.wasm\"\nsqlite_databases = [{label:?}]\n"
        ),
    )
    .unwrap();
    control_plane::bundle::pack(dir.path()).unwrap()
}

/// A label that could name another file is refused at deploy, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_label_that_is_not_a_plain_name_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&format!("file:{}", data.path().display()), true, &[]);
    let token = create_tenant(node.api, "acme").await;
    for label in ["../escape", "a/b", "UPPER"] {
        let (status, body) = deploy(node.api, &token, "acme", "db", sqlite_bundle(label)).await;
        assert_eq!(status, 422, "{label}: {body}");
        assert_eq!(body["error"]["code"], "invalid_manifest", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("component.c.sqlite_databases")
                && message.contains(&format!("{label:?}")),
            "{message}"
        );
    }
}

/// SQLite files live on one gateway, so a cluster sharing its store in
/// Redis refuses an app that uses them, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_refuses_sqlite_apps_with_the_reason() {
    let redis = Redis::start();
    let node = start_node(&redis.server.url(), true, &[]);
    let token = create_tenant(node.api, "acme").await;
    let (status, body) = deploy(node.api, &token, "acme", "db", sqlite_bundle("default")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "node_local_data", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("component `c`") && message.contains("Redis"),
        "{message}"
    );
}
