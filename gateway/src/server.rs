//! Assembles the gateway process: engine, apps, the Pingora edge listener,
//! the metrics listener and the self-route peers' health checks.

use crate::app::{App, AppServices, Snapshot};
use crate::config::OperatorConfig;
use crate::edge::Edge;
use crate::metrics::{Metrics, MetricsApp};
use crate::outbound::{Outbound, Peers};
use crate::runtime::Runtime;
use anyhow::Context as _;
use pingora::apps::http_app::HttpServer;
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Tenant name for apps given with `--app`.
pub const LOCAL_TENANT: &str = "local";

/// Builds the server; `run_forever` on the result serves until a signal.
pub fn build(config: &OperatorConfig) -> anyhow::Result<Server> {
    let metrics = Arc::new(Metrics::new()?);
    let (peers, peer_health) = Peers::new(&config.self_route_peers(), metrics.clone())?;
    let services = AppServices {
        runtime: Runtime::new(config.runtime.clone())?,
        outbound: Arc::new(Outbound::new(
            config.outbound.clone(),
            metrics.clone(),
            peers,
        )?),
        metrics: metrics.clone(),
    };
    let variable = |name: &str| config.variable(name);
    let mut snapshot = Snapshot::default();
    for app in &config.apps {
        let loaded = App::load(
            &services,
            LOCAL_TENANT,
            &app.manifest,
            config.limits.clone(),
            &variable,
        )
        .with_context(|| format!("loading the app for {}", app.host))?;
        tracing::info!(host = %app.host, app = %loaded.name, "app loaded");
        snapshot.insert(&app.host, Arc::new(loaded));
    }

    let threads = if config.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        config.threads
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut edge = Service::new(
        "okra edge".to_string(),
        Edge::new(Arc::new(snapshot), metrics.clone()),
    );
    edge.add_tcp(&config.listen.to_string());
    let ready = Arc::new(AtomicBool::new(false));
    let mut metrics_service = Service::new(
        "okra metrics".to_string(),
        HttpServer::new_app(MetricsApp {
            metrics,
            ready: ready.clone(),
        }),
    );
    metrics_service.threads = Some(1);
    metrics_service.add_tcp(&config.metrics_listen.to_string());
    server.add_service(edge);
    server.add_service(metrics_service);
    server.add_service(peer_health);
    ready.store(true, Ordering::Release);
    tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, "gateway starting");
    Ok(server)
}
