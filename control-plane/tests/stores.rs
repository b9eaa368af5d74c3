//! One conformance suite, run against both stores: the file store in a temp
//! directory and the Redis store on a private `redis-server`. Plus each
//! store's own promises: migrating the old single-document layout, and (for
//! the file store) repairing what a crash mid-change leaves.

use control_plane::model::{AppRecord, State, TenantRecord};
use control_plane::store::file::FileStore;
use control_plane::store::redis::RedisStore;
use control_plane::store::{Rejection, Store, UpdateError};
use std::sync::Arc;
use std::time::Duration;
use test_programs::redis::RedisServer;

/// Creates tenant `name`, refusing if it exists.
async fn add_tenant(store: &dyn Store, name: &str) -> Result<(), UpdateError> {
    store
        .update_tenant(name, &mut |record: &mut Option<TenantRecord>| {
            if record.is_some() {
                return Err(Rejection::Conflict(format!("{name} exists")));
            }
            *record = Some(TenantRecord::default());
            Ok(())
        })
        .await
        .map(|_| ())
}

/// Gives tenant `name`'s app `app` the custom domain `domain`.
async fn claim(store: &dyn Store, name: &str, app: &str, domain: &str) -> Result<(), UpdateError> {
    store
        .update_tenant(name, &mut |record: &mut Option<TenantRecord>| {
            let record = record.as_mut().ok_or(Rejection::NotFound(name.into()))?;
            record
                .apps
                .entry(app.to_string())
                .or_insert_with(|| AppRecord {
                    name: app.to_string(),
                    ..AppRecord::default()
                })
                .domains
                .insert(domain.to_string());
            Ok(())
        })
        .await
        .map(|_| ())
}

async fn delete_tenant(store: &dyn Store, name: &str) {
    store
        .update_tenant(name, &mut |record| {
            *record = None;
            Ok(())
        })
        .await
        .unwrap();
}

/// Everything a store must do, whatever it is.
async fn conformance(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    // Empty to begin with.
    let state = store.load().await.unwrap();
    assert_eq!(state.version, 0);
    assert!(state.tenants.is_empty());
    let mut feed = other.subscribe();

    // An update bumps the version, and another handle sees it.
    add_tenant(&*store, "a").await.unwrap();
    assert_eq!(store.version().await.unwrap(), 1);
    let seen = other.load().await.unwrap();
    assert_eq!(seen.version, 1);
    let a = &seen.tenants["a"];
    assert_eq!((a.name.as_str(), a.version), ("a", 1));
    assert_eq!(other.tenant("a").await.unwrap().as_ref(), Some(a));
    assert_eq!(other.tenant("nobody").await.unwrap(), None);
    assert_eq!(
        other.tenant("../a").await.unwrap(),
        None,
        "names are checked"
    );

    // A refused update writes nothing.
    let err = add_tenant(&*store, "a").await.unwrap_err();
    assert!(
        matches!(err, UpdateError::Rejected(Rejection::Conflict(_))),
        "{err}"
    );
    assert_eq!(store.version().await.unwrap(), 1);
    let err = add_tenant(&*store, "Not/A/Name").await.unwrap_err();
    assert!(
        matches!(err, UpdateError::Rejected(Rejection::Invalid { .. })),
        "{err}"
    );

    // Concurrent updates from two handles all land, each exactly once.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let handle = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            add_tenant(&*handle, &format!("t{i}")).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let state = store.load().await.unwrap();
    assert_eq!(state.version, 21);
    assert_eq!(state.tenants.len(), 21);

    // The change feed reaches the latest version.
    tokio::time::timeout(Duration::from_secs(5), feed.wait_for(|v| *v >= 21))
        .await
        .expect("the feed announced the last version")
        .unwrap();

    // A reader behind gets just what changed since its version.
    let changes = other.changes_since(19).await.unwrap().unwrap();
    assert_eq!(changes.version, 21);
    assert_eq!(changes.tenants.len(), 2, "{changes:?}");
    let mut behind: State = State {
        version: 19,
        ..state.clone()
    };
    behind.tenants.retain(|_, t| t.version <= 19);
    changes.apply_to(&mut behind);
    assert_eq!(behind, state);
    assert_eq!(
        other
            .changes_since(21)
            .await
            .unwrap()
            .unwrap()
            .tenants
            .len(),
        0
    );

    // Custom domains: one holder at a time, across tenants; released with
    // the app or the tenant that held them.
    claim(&*store, "a", "web", "shop.example").await.unwrap();
    let err = claim(&*other, "t1", "web", "shop.example")
        .await
        .unwrap_err();
    assert!(
        matches!(err, UpdateError::Rejected(Rejection::Conflict(ref m)) if m.contains("shop.example")),
        "{err}"
    );
    assert!(
        other.tenant("t1").await.unwrap().unwrap().apps.is_empty(),
        "a refused claim writes nothing"
    );
    // Moving it between the same tenant's apps is the tenant's business.
    store
        .update_tenant("a", &mut |record| {
            let record = record.as_mut().unwrap();
            record.apps.get_mut("web").unwrap().domains.clear();
            let api = record
                .apps
                .entry("api".into())
                .or_insert_with(|| AppRecord {
                    name: "api".into(),
                    ..AppRecord::default()
                });
            api.domains.insert("shop.example".into());
            Ok(())
        })
        .await
        .unwrap();
    delete_tenant(&*store, "a").await;
    assert_eq!(store.tenant("a").await.unwrap(), None);
    claim(&*other, "t1", "web", "shop.example").await.unwrap();
    let changes = store.changes_since(21).await.unwrap().unwrap();
    assert_eq!(
        changes.tenants.get("a"),
        Some(&None),
        "a deletion is a change"
    );

    // Blobs are content-addressed and deduplicated.
    let version = store.version().await.unwrap();
    let hash = store.put_blob(b"hello blob").await.unwrap();
    assert_eq!(hash, control_plane::store::blob_hash(b"hello blob"));
    assert_eq!(store.put_blob(b"hello blob").await.unwrap(), hash);
    assert_eq!(other.get_blob(&hash).await.unwrap(), b"hello blob");
    let missing = "0".repeat(64);
    assert!(store.get_blob(&missing).await.is_err());
    assert!(
        store.get_blob("../state.json").await.is_err(),
        "blob names are hashes only"
    );
    assert_eq!(
        store.version().await.unwrap(),
        version,
        "blobs do not bump the version"
    );

    // Garbage: blobs no version names go once past their grace, the others stay.
    let kept = store.put_blob(b"named by a version").await.unwrap();
    let version_files = std::collections::BTreeMap::from([("spin.toml".to_string(), kept.clone())]);
    store
        .update_tenant("t2", &mut |record| {
            let app = record
                .as_mut()
                .unwrap()
                .apps
                .entry("web".into())
                .or_insert_with(|| AppRecord {
                    name: "web".into(),
                    ..AppRecord::default()
                });
            app.versions.insert(
                1,
                control_plane::model::VersionRecord {
                    version: 1,
                    files: version_files.clone(),
                    ..Default::default()
                },
            );
            Ok(())
        })
        .await
        .unwrap();
    let grace = Duration::from_secs(3600);
    assert_eq!(
        control_plane::store::collect_garbage(&*store, grace)
            .await
            .unwrap(),
        0
    );
    assert!(store.get_blob(&hash).await.is_ok(), "too young to go");
    let deleted = control_plane::store::collect_garbage(&*store, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(store.get_blob(&hash).await.is_err());
    assert_eq!(other.get_blob(&kept).await.unwrap(), b"named by a version");
}

/// The old layout: one JSON document with every tenant.
fn legacy_document() -> (State, Vec<u8>) {
    let mut state = State {
        version: 7,
        ..State::default()
    };
    for name in ["acme", "beta"] {
        let mut record = TenantRecord {
            name: name.into(),
            token_hash: format!("hash-of-{name}"),
            ..TenantRecord::default()
        };
        let mut app = AppRecord {
            name: "web".into(),
            ..AppRecord::default()
        };
        app.domains.insert(format!("{name}.example"));
        record.apps.insert("web".into(), app);
        state.tenants.insert(name.into(), record);
    }
    let bytes = serde_json::to_vec(&state).unwrap();
    (state, bytes)
}

/// After a migration: everything is there, readers behind reload all, and
/// the domains the old document held are still held.
async fn check_migrated(store: &dyn Store) {
    let state = store.load().await.unwrap();
    assert_eq!(state.version, 7);
    assert_eq!(state.tenants.len(), 2);
    assert_eq!(state.tenants["acme"].token_hash, "hash-of-acme");
    assert_eq!(store.changes_since(3).await.unwrap(), None);
    let err = claim(store, "beta", "other", "acme.example")
        .await
        .unwrap_err();
    assert!(
        matches!(err, UpdateError::Rejected(Rejection::Conflict(_))),
        "{err}"
    );
    add_tenant(store, "gamma").await.unwrap();
    let changes = store.changes_since(7).await.unwrap().unwrap();
    assert_eq!(changes.tenants.keys().collect::<Vec<_>>(), ["gamma"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FileStore::open(dir.path()).unwrap());
    // One process writes a data directory: the second handle is the same store.
    conformance(store.clone(), store.clone()).await;
    // Reopening reads what was written; stray temp files from a crash are ignored.
    std::fs::write(dir.path().join("tenants/.t1.json.tmp.1.1"), b"{half a wri").unwrap();
    let reopened = FileStore::open(dir.path()).unwrap();
    assert_eq!(reopened.load().await.unwrap().tenants.len(), 20);
    assert!(!dir.path().join("tenants/.t1.json.tmp.1.1").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_repairs_a_change_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    add_tenant(&store, "acme").await.unwrap();
    claim(&store, "acme", "web", "kept.example").await.unwrap();
    drop(store);
    // A crash after the record was written but before its log line, and
    // one after a domain was claimed but before the record that holds it.
    let mut record: TenantRecord =
        serde_json::from_slice(&std::fs::read(dir.path().join("tenants/acme.json")).unwrap())
            .unwrap();
    record.version = 3;
    record.policy = Some("{}".into());
    std::fs::write(
        dir.path().join("tenants/acme.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("domains/orphan.example"), "acme/web").unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.version().await.unwrap(), 3);
    let changes = store.changes_since(2).await.unwrap().unwrap();
    assert_eq!(
        changes.tenants["acme"].as_ref().unwrap().policy.as_deref(),
        Some("{}")
    );
    assert!(!dir.path().join("domains/orphan.example").exists());
    assert!(dir.path().join("domains/kept.example").exists());
    add_tenant(&store, "beta").await.unwrap();
    claim(&store, "beta", "web", "orphan.example")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_splits_an_old_state_document() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.json"), legacy_document().1).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    check_migrated(&store).await;
    assert!(!dir.path().join("state.json").exists());
    assert!(dir.path().join("state.json.migrated").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_conforms_and_resyncs_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path().to_path_buf());
    let store: Arc<dyn Store> = Arc::new(RedisStore::open(&redis.url()).await.unwrap());
    let other: Arc<dyn Store> = Arc::new(RedisStore::open(&redis.url()).await.unwrap());
    conformance(store.clone(), other.clone()).await;
    let version = store.version().await.unwrap();

    // Redis goes away: calls fail with an error, nothing hangs or panics.
    let mut feed = other.subscribe();
    redis.stop();
    assert!(store.load().await.is_err());
    redis.restart();
    // Data persisted; a write after the restart reaches the other handle's feed
    // (it resubscribed), and its version is current.
    let mut written = false;
    for _ in 0..100 {
        if add_tenant(&*store, "after-restart").await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written, "the store reconnected");
    let after = store.version().await.unwrap();
    assert_eq!(after, version + 1);
    tokio::time::timeout(Duration::from_secs(10), feed.wait_for(|v| *v >= after))
        .await
        .expect("the other handle's feed caught up")
        .unwrap();
    assert_eq!(other.load().await.unwrap().tenants.len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_splits_an_old_state_document() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path().to_path_buf());
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::pipe()
        .set("okra:state", legacy_document().1)
        .set("okra:version", 7)
        .query_async(&mut connection)
        .await
        .unwrap();
    let store = RedisStore::open(&redis.url()).await.unwrap();
    check_migrated(&store).await;
    let exists: bool = ::redis::cmd("EXISTS")
        .arg("okra:state")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn a_redis_store_opens_while_redis_is_down() {
    let store = RedisStore::open("redis://127.0.0.1:1").await.unwrap();
    assert!(store.load().await.is_err());
    assert!(control_plane::store::open("").await.is_err());
}
