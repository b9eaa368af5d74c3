//! One suite, run against both backends: the embedded SQLite file and a
//! private `redis-server`. Each test tries to get around what it checks: other
//! tenants' and apps' names, batches that would pass a quota half-way,
//! concurrent writers, and a quota lowered under data already held.

use okra_kv::{Failure, KeyValue, MAX_KEYS_PER_STORE, Quota, Scope, Usage, value_digest};
use std::sync::Arc;
use test_programs::redis::RedisServer;

fn scope(tenant: &str, app: &str) -> Scope {
    Scope {
        tenant: tenant.into(),
        app: app.into(),
    }
}

/// Both backends under `quota`; the guards keep their files and server.
struct Backends {
    both: Vec<(&'static str, KeyValue)>,
    _dir: tempfile::TempDir,
    _redis: RedisServer,
}

fn backends(quota: Quota) -> Backends {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let redis = RedisServer::start(redis_dir);
    let embedded = KeyValue::embedded(dir.path().join(okra_kv::FILE_NAME), quota);
    let shared = KeyValue::redis(&redis.url(), quota).unwrap();
    Backends {
        both: vec![("embedded", embedded), ("redis", shared)],
        _dir: dir,
        _redis: redis,
    }
}

fn over_quota(result: Result<impl std::fmt::Debug, Failure>, naming: &str) {
    match result {
        Err(Failure::OverQuota(why)) => assert!(why.contains(naming), "{why:?} names {naming:?}"),
        other => panic!("expected over quota naming {naming:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_and_tenants_never_see_each_others_keys() {
    let b = backends(Quota::default());
    for (name, kv) in &b.both {
        let (web, api, other) = (
            scope("acme", "web"),
            scope("acme", "api"),
            scope("beta", "web"),
        );
        kv.set(&web, "default", "k", b"web's").await.unwrap();
        kv.set(&web, "default", "k", b"web's again").await.unwrap();
        kv.set(&api, "default", "k", b"api's").await.unwrap();
        // Names that would spell one Redis key if it joined them naively.
        kv.set(&scope("acme", "web:x"), "s", "k", b"app with a colon")
            .await
            .unwrap();
        kv.set(&web, "x:s", "k", b"store with a colon")
            .await
            .unwrap();
        kv.set(&scope("acme:web", "x"), "s", "k", b"tenant with a colon")
            .await
            .unwrap();
        for (s, store, want) in [
            (scope("acme", "web:x"), "s", "app with a colon"),
            (web.clone(), "x:s", "store with a colon"),
            (scope("acme:web", "x"), "s", "tenant with a colon"),
        ] {
            let got = kv.get(&s, store, "k").await.unwrap();
            assert_eq!(
                got.as_deref(),
                Some(want.as_bytes()),
                "{name}: {s:?} {store}"
            );
            kv.delete(&s, store, "k").await.unwrap();
        }
        // Store labels are bounded.
        assert!(matches!(
            kv.set(&web, &"s".repeat(65), "k", b"v").await,
            Err(Failure::Refused(why)) if why.contains("not a store label")
        ));
        assert!(kv.set(&web, "", "k", b"v").await.is_err());
        assert!(kv.set(&web, "a\u{8f}", "k", b"v").await.is_err());
        assert!(kv.set(&web, "é", "k", b"v").await.is_err());
        assert_eq!(
            kv.get(&web, "default", "k").await.unwrap().as_deref(),
            Some(&b"web's again"[..]),
            "{name}"
        );
        assert_eq!(
            kv.get(&api, "default", "k").await.unwrap().as_deref(),
            Some(&b"api's"[..])
        );
        assert_eq!(
            kv.get(&other, "default", "k").await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(kv.get(&web, "other", "k").await.unwrap(), None);
        assert_eq!(kv.keys(&web, "default").await.unwrap(), ["k"]);
        assert!(kv.keys(&other, "default").await.unwrap().is_empty());
        kv.delete(&web, "default", "k").await.unwrap();
        kv.delete(&web, "default", "k").await.unwrap();
        assert_eq!(kv.get(&web, "default", "k").await.unwrap(), None);
        assert_eq!(
            kv.get(&api, "default", "k").await.unwrap().as_deref(),
            Some(&b"api's"[..]),
            "{name}"
        );
        // Only acme's other app still holds a key, of 1 + 5 bytes.
        assert_eq!(
            kv.usage("acme").await.unwrap(),
            Usage { keys: 1, bytes: 6 },
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_takes_no_new_key_but_updates_old_ones() {
    let b = backends(Quota::default());
    for (name, kv) in &b.both {
        let web = scope("acme", "web");
        for chunk in (0..MAX_KEYS_PER_STORE).collect::<Vec<_>>().chunks(1000) {
            let entries = chunk.iter().map(|i| (format!("k{i:05}"), b"v".to_vec()));
            kv.set_many(&web, "default", entries.collect())
                .await
                .unwrap();
        }
        assert_eq!(
            kv.set(&web, "default", "one-more", b"v").await,
            Err(Failure::StoreFull),
            "{name}"
        );
        kv.set(&web, "default", "k00000", b"new").await.unwrap();
        kv.set(&web, "other", "one-more", b"v").await.unwrap();
        let keys = kv.keys(&web, "default").await.unwrap();
        assert_eq!(keys.len() as u64, MAX_KEYS_PER_STORE, "{name}");
        assert!(keys.is_sorted(), "{name}");
        let page = kv
            .list(&web, "default", "k0999", Some("k09990"), 5)
            .await
            .unwrap();
        assert_eq!(
            page.keys,
            ["k09991", "k09992", "k09993", "k09994", "k09995"]
        );
        assert_eq!(page.next.as_deref(), Some("k09995"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_and_swaps_lose_no_update() {
    let b = backends(Quota::default());
    for (name, kv) in &b.both {
        let web = scope("acme", "web");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (kv, web) = (kv.clone(), web.clone());
                tokio::spawn(async move {
                    for _ in 0..40 {
                        kv.increment(&web, "default", "n", 1).await.unwrap();
                    }
                })
            })
            .collect();
        // Appends by compare-and-swap, retried until they land.
        let appends: Vec<_> = (0..8)
            .map(|i| {
                let (kv, web) = (kv.clone(), web.clone());
                tokio::spawn(async move {
                    loop {
                        let old = kv.get(&web, "default", "log").await.unwrap();
                        let mut new = old.clone().unwrap_or_default();
                        new.push(b'a' + i);
                        let expected = old.as_deref().map(value_digest);
                        if kv
                            .swap_if(&web, "default", "log", expected, new)
                            .await
                            .unwrap()
                        {
                            break;
                        }
                    }
                })
            })
            .collect();
        for t in tasks.into_iter().chain(appends) {
            t.await.unwrap();
        }
        assert_eq!(
            kv.increment(&web, "default", "n", 0).await.unwrap(),
            320,
            "{name}"
        );
        assert_eq!(
            kv.get(&web, "default", "n").await.unwrap(),
            Some(320i64.to_le_bytes().to_vec())
        );
        let mut log = kv.get(&web, "default", "log").await.unwrap().unwrap();
        log.sort_unstable();
        assert_eq!(log, b"abcdefgh", "{name}");
        // Not a number, or past i64: the interface's error, nothing changed.
        kv.set(&web, "default", "text", b"abc").await.unwrap();
        assert!(matches!(
            kv.increment(&web, "default", "text", 1).await,
            Err(Failure::Refused(why)) if why.contains("not a 64-bit integer")
        ));
        assert!(matches!(
            kv.increment(&web, "default", "n", i64::MAX).await,
            Err(Failure::Refused(why)) if why.contains("overflows")
        ));
        assert_eq!(kv.increment(&web, "default", "n", -320).await.unwrap(), 0);
        // A swap over a stale digest, or over "missing" when it is set, fails.
        let stale = value_digest(b"stale");
        assert!(
            !kv.swap_if(&web, "s", "k", Some(stale), b"x".to_vec())
                .await
                .unwrap()
        );
        assert!(
            kv.swap_if(&web, "s", "k", None, b"1".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !kv.swap_if(&web, "s", "k", None, b"2".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(
            kv.get(&web, "s", "k").await.unwrap().as_deref(),
            Some(&b"1"[..]),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_what_would_pass_them_and_keep_what_is_stored() {
    let quota = Quota {
        max_key_bytes: 8,
        max_value_bytes: 16,
        max_keys: 3,
        max_bytes: 40,
    };
    let b = backends(quota);
    for (name, kv) in &b.both {
        let (web, api) = (scope("acme", "web"), scope("acme", "api"));
        over_quota(kv.set(&web, "s", "123456789", b"v").await, "8-byte limit");
        over_quota(kv.get(&web, "s", "123456789").await, "8-byte limit");
        over_quota(kv.set(&web, "s", "k", &[0; 17]).await, "16-byte limit");
        kv.set(&web, "s", "a", b"0123456789").await.unwrap(); // 11 bytes
        kv.set(&api, "t", "b", b"0123456789").await.unwrap(); // 22
        // The third key would bring 1 + 16 more: 39, within 40.
        kv.set(&web, "u", "c", &[1; 16]).await.unwrap();
        assert_eq!(
            kv.usage("acme").await.unwrap(),
            Usage { keys: 3, bytes: 39 }
        );
        // A fourth key, in any app or store, is over the key quota.
        over_quota(kv.set(&api, "v", "d", b"").await, "may hold 3");
        // Growing a value past 40 bytes is refused, shrinking is not.
        over_quota(kv.set(&web, "s", "a", b"0123456789ab").await, "may hold 40");
        kv.set(&web, "s", "a", b"0").await.unwrap();
        assert_eq!(
            kv.usage("acme").await.unwrap(),
            Usage { keys: 3, bytes: 30 }
        );
        // A batch that passes the quota half-way changes nothing.
        kv.delete(&api, "t", "b").await.unwrap();
        let batch = vec![
            ("x".to_string(), b"1".to_vec()),
            ("y".to_string(), b"2".to_vec()),
        ];
        over_quota(kv.set_many(&web, "s", batch).await, "may hold 3");
        assert_eq!(kv.get(&web, "s", "x").await.unwrap(), None, "{name}");
        // An increment may add the third key (2 + 8 bytes), not a fourth;
        // nor may a swap.
        assert_eq!(kv.increment(&api, "t", "n1", 1).await.unwrap(), 1);
        over_quota(kv.increment(&api, "t", "n2", 1).await, "may hold 3");
        over_quota(
            kv.swap_if(&api, "t", "n2", None, b"x".to_vec()).await,
            "may hold 3",
        );
        // Another tenant has its own quota.
        kv.set(&scope("beta", "web"), "s", "a", b"fine")
            .await
            .unwrap();
        assert_eq!(
            kv.usage("acme").await.unwrap(),
            Usage { keys: 3, bytes: 29 },
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_all_or_nothing_and_bounded() {
    let b = backends(Quota::default());
    for (name, kv) in &b.both {
        let web = scope("acme", "web");
        let two = vec![
            ("new1".to_string(), b"a".to_vec()),
            ("new2".to_string(), b"b".to_vec()),
            ("new1".to_string(), b"c".to_vec()),
        ];
        kv.set_many(&web, "default", two).await.unwrap();
        assert_eq!(
            kv.usage("acme").await.unwrap(),
            Usage { keys: 2, bytes: 10 },
            "{name}: a key set twice in one batch counts once"
        );
        let got = kv
            .get_many(&web, "default", vec!["new1".into(), "none".into()])
            .await
            .unwrap();
        assert_eq!(
            got,
            [("new1".into(), Some(b"c".to_vec())), ("none".into(), None)]
        );
        kv.delete_many(
            &web,
            "default",
            vec!["new1".into(), "new1".into(), "x".into()],
        )
        .await
        .unwrap();
        assert_eq!(kv.usage("acme").await.unwrap(), Usage { keys: 1, bytes: 5 });
        // 17 values of 1 MiB in one set-many are over 16 MiB together.
        let huge: Vec<(String, Vec<u8>)> = (0..17)
            .map(|i| (format!("h{i}"), vec![1; 1 << 20]))
            .collect();
        assert!(
            matches!(
                kv.set_many(&web, "default", huge).await,
                Err(Failure::Refused(why)) if why.contains("split it")
            ),
            "{name}"
        );
        let too_many: Vec<String> = (0..=okra_kv::MAX_BATCH_KEYS)
            .map(|i| i.to_string())
            .collect();
        assert!(matches!(
            kv.get_many(&web, "default", too_many).await,
            Err(Failure::Refused(why)) if why.contains("split it")
        ));
        // 17 values of 1 MiB are over the 16 MiB a get-many returns.
        let big: Vec<(String, Vec<u8>)> = (0..17)
            .map(|i| (format!("big{i}"), vec![7; 1 << 20]))
            .collect();
        for chunk in big.chunks(8) {
            kv.set_many(&web, "big", chunk.to_vec()).await.unwrap();
        }
        let keys = big.into_iter().map(|(k, _)| k).collect();
        assert!(
            matches!(
                kv.get_many(&web, "big", keys).await,
                Err(Failure::Refused(why)) if why.contains("ask for fewer keys")
            ),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_unavailable_not_a_panic() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kv = Arc::new(
        KeyValue::redis(
            &format!("redis://:secret@127.0.0.1:{port}"),
            Quota::default(),
        )
        .unwrap(),
    );
    assert!(!kv.describe().contains("secret"), "{}", kv.describe());
    let web = scope("acme", "web");
    assert_eq!(kv.get(&web, "s", "k").await, Err(Failure::Unavailable));
    assert_eq!(
        kv.set(&web, "s", "k", b"v").await,
        Err(Failure::Unavailable)
    );
}

#[test]
fn an_embedded_file_from_before_usage_was_counted_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(okra_kv::FILE_NAME);
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "CREATE TABLE entries (tenant TEXT NOT NULL, app TEXT NOT NULL, store TEXT NOT NULL,
             key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (tenant, app, store, key));
         INSERT INTO entries VALUES ('acme', 'web', 's', 'ключ', x'0102');
         INSERT INTO entries VALUES ('acme', 'api', 's', 'k', x'');",
    )
    .unwrap();
    drop(old);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for _ in 0..2 {
        let kv = KeyValue::embedded(path.clone(), Quota::default());
        // 'ключ' is 8 bytes in UTF-8: 8 + 2, then 1 + 0.
        assert_eq!(
            runtime.block_on(kv.usage("acme")).unwrap(),
            Usage { keys: 2, bytes: 11 }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_app_or_tenant_leaves_nothing_and_gives_the_quota_back() {
    let b = backends(Quota::default());
    for (name, kv) in &b.both {
        let (web, api, other) = (
            scope("acme", "web"),
            scope("acme", "api"),
            scope("beta", "web"),
        );
        for s in [&web, &api, &other] {
            kv.set(s, "one", "k", b"12345").await.unwrap();
            kv.set(s, "two", "kk", b"1").await.unwrap();
        }
        kv.forget_app(&web).await.unwrap();
        assert_eq!(kv.get(&web, "one", "k").await.unwrap(), None, "{name}");
        assert!(kv.keys(&web, "two").await.unwrap().is_empty());
        assert_eq!(
            kv.get(&api, "one", "k").await.unwrap().as_deref(),
            Some(&b"12345"[..])
        );
        assert_eq!(
            kv.usage("acme").await.unwrap(),
            Usage { keys: 2, bytes: 9 },
            "{name}"
        );
        // A neighbour whose id starts like acme's, with a glob character.
        let neighbour = scope("acme*", "web");
        kv.set(&neighbour, "one", "k", b"x").await.unwrap();
        kv.forget_tenant("acme").await.unwrap();
        assert_eq!(
            kv.get(&neighbour, "one", "k").await.unwrap().as_deref(),
            Some(&b"x"[..]),
            "{name}: another tenant's data stays"
        );
        assert_eq!(kv.usage("acme").await.unwrap(), Usage::default(), "{name}");
        assert_eq!(kv.get(&api, "one", "k").await.unwrap(), None);
        assert_eq!(kv.usage("beta").await.unwrap(), Usage { keys: 2, bytes: 9 });
    }
}

/// The gateway makes its backend before its runtimes run.
#[test]
fn a_redis_backend_is_made_outside_any_runtime_and_used_inside_one() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path().to_path_buf());
    let kv = KeyValue::redis(&redis.url(), Quota::default()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let web = scope("acme", "web");
    runtime.block_on(kv.set(&web, "s", "k", b"v")).unwrap();
    assert_eq!(
        runtime.block_on(kv.get(&web, "s", "k")).unwrap().as_deref(),
        Some(&b"v"[..])
    );
}
