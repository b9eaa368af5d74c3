//! One conformance suite, run against both stores: the file store in a temp
//! directory and the Redis store on a private `redis-server`.

use control_plane::error::ApiError;
use control_plane::model::{State, TenantRecord};
use control_plane::store::file::FileStore;
use control_plane::store::redis::RedisStore;
use control_plane::store::{Store, UpdateError};
use std::sync::Arc;
use std::time::Duration;
use test_programs::redis::RedisServer;

fn add_tenant(name: &str) -> impl FnMut(&mut State) -> Result<(), ApiError> + Send + use<> {
    let name = name.to_string();
    move |state: &mut State| {
        if state.tenants.contains_key(&name) {
            return Err(ApiError::conflict(format!("{name} exists")));
        }
        state.tenants.insert(
            name.clone(),
            TenantRecord {
                name: name.clone(),
                ..TenantRecord::default()
            },
        );
        Ok(())
    }
}

/// Everything a store must do, whatever it is.
async fn conformance(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    // Empty to begin with.
    let state = store.load().await.unwrap();
    assert_eq!(state.version, 0);
    assert!(state.tenants.is_empty());
    let mut feed = other.subscribe();

    // An update bumps the version, and another handle sees it.
    let written = store.update(&mut add_tenant("a")).await.unwrap();
    assert_eq!(written.version, 1);
    assert_eq!(store.version().await.unwrap(), 1);
    let seen = other.load().await.unwrap();
    assert_eq!(seen.version, 1);
    assert!(seen.tenants.contains_key("a"));

    // A refused update writes nothing.
    let err = store.update(&mut add_tenant("a")).await.unwrap_err();
    assert!(
        matches!(err, UpdateError::Rejected(ref e) if e.code == "conflict"),
        "{err}"
    );
    assert_eq!(store.version().await.unwrap(), 1);

    // Concurrent updates from two handles all land, each exactly once.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let handle = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            handle
                .update(&mut add_tenant(&format!("t{i}")))
                .await
                .map(|_| ())
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

    // Blobs are content-addressed and deduplicated.
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
        store.load().await.unwrap().version,
        21,
        "blobs do not bump the version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FileStore::open(dir.path()).unwrap());
    // One process writes a data directory: the second handle is the same store.
    conformance(store.clone(), store.clone()).await;
    // Reopening reads what was written; stray temp files from a crash are ignored.
    std::fs::write(dir.path().join(".state.json.tmp.1.1"), b"{half a wri").unwrap();
    let reopened = FileStore::open(dir.path()).unwrap();
    assert_eq!(reopened.load().await.unwrap().tenants.len(), 21);
    assert!(!dir.path().join(".state.json.tmp.1.1").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_conforms_and_resyncs_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path().to_path_buf());
    let store: Arc<dyn Store> = Arc::new(RedisStore::open(&redis.url()).await.unwrap());
    let other: Arc<dyn Store> = Arc::new(RedisStore::open(&redis.url()).await.unwrap());
    conformance(store.clone(), other.clone()).await;

    // Redis goes away: calls fail with an error, nothing hangs or panics.
    let mut feed = other.subscribe();
    redis.stop();
    assert!(store.load().await.is_err());
    redis.restart();
    // Data persisted; a write after the restart reaches the other handle's feed
    // (it resubscribed), and its version is current.
    let mut written = None;
    for _ in 0..100 {
        if let Ok(state) = store.update(&mut add_tenant("after-restart")).await {
            written = Some(state.version);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let version = written.expect("the store reconnected");
    assert_eq!(version, 22);
    tokio::time::timeout(Duration::from_secs(10), feed.wait_for(|v| *v >= version))
        .await
        .expect("the other handle's feed caught up")
        .unwrap();
    assert_eq!(other.load().await.unwrap().tenants.len(), 22);
}

#[tokio::test]
async fn a_redis_store_opens_while_redis_is_down() {
    let store = RedisStore::open("redis://127.0.0.1:1").await.unwrap();
    assert!(store.load().await.is_err());
    assert!(control_plane::store::open("").await.is_err());
}
