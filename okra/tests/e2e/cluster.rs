//! Cluster mode with real processes: a private `redis-server`, the
//! `control-plane` binary and two `gateway --no-api` processes. Every deploy
//! reaches every gateway; with Redis stopped they keep serving the last
//! snapshot, and after its restart they catch up.

use crate::support::control::{
    ControlPlane, Node, Redis, create_tenant, deploy, get_json, host, rollback, start_node,
    start_node_logged, static_bundle, until_gone, until_served,
};
use crate::support::{get, plain_get};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A private Redis, the control-plane binary and `gateway --no-api`
/// processes on it (each with its own data directory, extra flags and log
/// file), and tenant acme's app `web` deployed as "v1" and served by every
/// gateway.
struct Cluster {
    redis: Redis,
    url: String,
    control: ControlPlane,
    gateways: Vec<Node>,
    /// Each gateway's stderr.
    logs: Vec<PathBuf>,
    token: String,
    web: String,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    async fn start(gateway_flags: &[&[&str]]) -> Cluster {
        let redis = Redis::start();
        let url = redis.server.url();
        let dirs: Vec<tempfile::TempDir> = (0..=gateway_flags.len())
            .map(|_| tempfile::tempdir().unwrap())
            .collect();
        let control = ControlPlane::start(&url, dirs[0].path());
        let logs: Vec<PathBuf> = dirs[1..]
            .iter()
            .map(|dir| dir.path().join("gateway.log"))
            .collect();
        let gateways: Vec<Node> = dirs[1..]
            .iter()
            .zip(gateway_flags)
            .zip(&logs)
            .map(|((dir, extra), log)| {
                let mut flags = vec!["--data-dir", dir.path().to_str().unwrap()];
                flags.extend_from_slice(extra);
                let log = std::fs::File::create(log).unwrap();
                start_node_logged(&url, false, &flags, Some(log))
            })
            .collect();
        let token = create_tenant(control.api, "acme").await;
        let (status, body) = deploy(
            control.api,
            &token,
            "acme",
            "web",
            static_bundle("web", "v1"),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let web = host("web", "acme");
        for node in &gateways {
            until_served(&node.gateway, &web, "v1").await;
        }
        Cluster {
            redis,
            url,
            control,
            gateways,
            logs,
            token,
            web,
            _dirs: dirs,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_serves_deploys_and_rides_out_a_redis_restart() {
    let Cluster {
        mut redis,
        url,
        control,
        gateways,
        logs,
        token,
        web,
        _dirs,
    } = Cluster::start(&[&[], &[]]).await;
    let gateways: Vec<Arc<Node>> = gateways.into_iter().map(Arc::new).collect();
    // The cluster's gateways embed no API.
    assert!(std::net::TcpStream::connect(gateways[0].api).is_err());
    // The control plane has a gateway's operator endpoints.
    assert_eq!(plain_get(control.metrics, "/healthz").await.0, 200);
    assert_eq!(
        plain_get(control.metrics, "/readyz").await,
        (200, "ready\n".to_string())
    );
    // A made-up method is counted as "other": callers cannot add series.
    for method in ["FOOBAR", "BAZQUUX"] {
        let (status, _) =
            crate::support::control::call(control.api, method, "/v1/tenants", None, "").await;
        assert_eq!(status, 405);
    }
    let (_, metrics) = plain_get(control.metrics, "/metrics").await;
    assert!(
        metrics.contains(
            r#"okra_api_requests_total{method="other",route="/v1/tenants",status="405"} 2"#
        ) && !metrics.contains("FOOBAR"),
        "{metrics}"
    );
    for series in [
        r#"okra_api_requests_total{method="POST",route="/v1/tenants",status="201"} 1"#,
        r#"okra_api_requests_total{method="PUT",route="/v1/tenants/{tenant}/apps/{app}",status="201"} 1"#,
        "okra_store_up 1",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }

    // Load on both gateways while Redis goes away and comes back.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for node in &gateways {
        let (node, stop, web) = (node.clone(), stop.clone(), web.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let reply = get(&node.gateway, &web, "/").await;
                if reply.status == 200 && (reply.text() == "v1" || reply.text() == "v2") {
                    ok += 1;
                } else {
                    failed.push((reply.status, reply.text()));
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.server.stop();
    // Longer than the watchers' poll interval and the control plane's
    // reuse of a store check, then until every gateway has said so.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..1000 {
        let noticed = logs
            .iter()
            .all(|log| std::fs::read_to_string(log).is_ok_and(|t| t.contains("lost the store")));
        if noticed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, ready) = plain_get(control.metrics, "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready.contains("the store") && ready.contains("does not answer"),
        "{ready}"
    );
    assert!(
        plain_get(control.metrics, "/metrics")
            .await
            .1
            .contains("okra_store_up 0"),
        "the control plane's okra_store_up falls with Redis"
    );
    redis.server.restart();

    // The control plane reconnects; a deploy after the restart reaches both.
    let mut deployed = false;
    for _ in 0..100 {
        let (status, _) = deploy(
            control.api,
            &token,
            "acme",
            "web",
            static_bundle("web", "v2"),
        )
        .await;
        if status == 201 {
            deployed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(deployed, "the control plane never reconnected to Redis");
    for node in &gateways {
        until_served(&node.gateway, &web, "v2").await;
    }
    // Rollbacks under load reach every gateway, one after another.
    let mut visible = Vec::new();
    for round in 0..6 {
        let (version, want) = if round % 2 == 0 { (1, "v1") } else { (2, "v2") };
        let (status, _) = rollback(control.api, &token, "acme", "web", version).await;
        assert_eq!(status, 200);
        for node in &gateways {
            visible.push(until_served(&node.gateway, &web, want).await);
        }
    }
    visible.sort();
    eprintln!(
        "cluster: a rollback reached each gateway after median {:?}, max {:?} ({} observations)",
        visible[visible.len() / 2],
        visible[visible.len() - 1],
        visible.len()
    );
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(ok > 0);
        assert!(
            failed.is_empty(),
            "{} failed of {}: {:?}",
            failed.len(),
            ok,
            &failed[..failed.len().min(3)]
        );
    }

    // Ready again (a probe may see the answer of up to a second ago).
    let mut ready = plain_get(control.metrics, "/readyz").await;
    for _ in 0..100 {
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready = plain_get(control.metrics, "/readyz").await;
    }
    assert_eq!(ready, (200, "ready\n".to_string()));
    // Each gateway said once that it lost the store, and once that it is back.
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        let lost = text.matches("lost the store and its change feed").count();
        let back = text.matches("the store is back").count();
        assert_eq!((lost, back), (1, 1), "{text}");
    }

    // A gateway started later catches up from the store alone.
    let late_dir = tempfile::tempdir().unwrap();
    let late = start_node(
        &url,
        false,
        &["--data-dir", late_dir.path().to_str().unwrap()],
    );
    until_served(&late.gateway, &web, "v2").await;
    let (status, show) = get_json(control.api, "/v1/tenants/acme/apps/web", &token).await;
    assert_eq!(status, 200);
    assert_eq!(show["current"], 2);
}

/// Empties the Redis at `url` (as a restart without its data would).
fn flush_redis(url: &str) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("redis://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"FLUSHALL\r\n").unwrap();
    let mut reply = [0u8; 5];
    conn.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_back_is_not_applied_without_the_operators_say_so() {
    // Bound by name: each is dropped (Redis stopped, directories removed)
    // only at the end of the test.
    let Cluster {
        redis: _redis,
        url,
        control,
        gateways,
        logs: _,
        web,
        token: _,
        _dirs,
    } = Cluster::start(&[&[], &["--accept-store-regression"]]).await;
    let [keeps, applies] = <[Node; 2]>::try_from(gateways).ok().expect("two gateways");

    flush_redis(&url);
    // The gateway that was not told otherwise keeps serving, and says why.
    let text = crate::support::wait_metrics(
        &keeps.gateway,
        &["okra_store_version_regressions_total 1", "okra_store_up 1"],
    )
    .await;
    assert!(text.contains("okra_config_version "), "{text}");
    let reply = get(&keeps.gateway, &web, "/").await;
    assert_eq!((reply.status, reply.text()), (200, "v1".to_string()));
    let (status, ready) = crate::support::metrics_get(&keeps.gateway, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready.contains("behind the version"), "{ready}");
    // The one started with --accept-store-regression applies the empty store.
    until_gone(&applies.gateway, &web).await;
    // Once the store has caught up again, the first one follows it, even
    // at a version number it has served before.
    let token = create_tenant(control.api, "acme").await;
    for body in ["v2", "v3"] {
        let (status, reply) = deploy(
            control.api,
            &token,
            "acme",
            "web",
            static_bundle("web", body),
        )
        .await;
        assert_eq!(status, 201, "{reply}");
    }
    until_served(&keeps.gateway, &web, "v3").await;
    let (status, ready) = crate::support::metrics_get(&keeps.gateway, "/readyz").await;
    assert_eq!((status, ready.as_str()), (200, "ready\n"));
}
