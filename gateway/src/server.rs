//! Assembles the gateway process: engine, `--app` apps, the control side
//! (store, watcher, embedded API), the Pingora edge listener, the metrics
//! listener and the self-route peers' health checks.

use crate::app::{App, AppSource, TenantSpec};
use crate::config::OperatorConfig;
use crate::drain::{Drain, Signals};
use crate::edge::Edge;
use crate::in_flight::InFlight;
use crate::metrics::MetricsApp;
use crate::readiness::Readiness;
use anyhow::Context as _;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::sync::Arc;
use std::time::Duration;
use tenant_config::PathScope;

/// Tenant name for apps given with `--app`.
pub(crate) const LOCAL_TENANT: &str = control_plane::model::OPERATOR_TENANT;

/// Builds the server; `run_forever` on the result serves until a signal.
pub fn build(config: &OperatorConfig) -> anyhow::Result<GatewayServer> {
    // In a graceful upgrade the old gateway holds these and hands them over.
    if !config.upgrade {
        let mut listeners = vec![
            (config.listen, "--listen"),
            (config.metrics_listen, "--metrics-listen"),
        ];
        if config.control.api && config.control.store_url(!config.apps.is_empty()).is_some() {
            listeners.push((config.control.api_listen, "--api-listen"));
        }
        check_bindable(&listeners)?;
    }
    let (services, peer_health) = crate::control::app_services(config)?;
    let metrics = services.metrics.clone();
    let variable = |name: &str| config.variable(name);
    let mut static_apps = Vec::new();
    for app in &config.apps {
        let tenant = TenantSpec {
            name: LOCAL_TENANT.to_string(),
            data_id: LOCAL_TENANT.to_string(),
            limits: config.limits.clone(),
            policy: None,
        };
        // The operator's own apps may name files anywhere, as in Spin.
        let source = AppSource {
            manifest: &app.manifest,
            scope: PathScope::Anywhere,
            name: None,
            data_id: None,
        };
        let loaded = App::load(&services, &tenant, &source, &variable)
            .with_context(|| format!("loading the app for {}", app.host))?;
        tracing::info!(host = %app.host, app = %loaded.name, "app loaded");
        static_apps.push((app.host.clone(), Arc::new(loaded)));
    }
    let stop_guests = services.runtime.stopping();
    let readiness = Arc::new(Readiness::new(false));
    let (snapshot, control) =
        crate::control::start(config, services, static_apps, readiness.clone())?;

    let threads = config.edge_threads();
    let upgrade_sock = config.upgrade_sock();
    if let Some(dir) = upgrade_sock.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for the upgrade socket", dir.display()))?;
    }
    let conf = ServerConf {
        threads,
        // A backstop: the drain ends the process once it is done, well
        // before Pingora's grace period would.
        grace_period_seconds: Some(config.shutdown_grace_ms.div_ceil(1000) + 5),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: config.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    // With --upgrade this waits for the old gateway's listening sockets.
    server.bootstrap();

    let in_flight = Arc::new(InFlight::default());
    let mut edge = Service::new(
        "okra edge".to_string(),
        Edge::new(
            snapshot,
            metrics.clone(),
            in_flight.clone(),
            config.response_request_id,
        ),
    );
    edge.add_tcp(&config.listen.to_string());
    let mut metrics_service = Service::new(
        "okra metrics".to_string(),
        HttpServer::new_app(MetricsApp {
            metrics,
            readiness: readiness.clone(),
        }),
    );
    metrics_service.threads = Some(1);
    metrics_service.add_tcp(&config.metrics_listen.to_string());
    server.add_service(edge);
    server.add_service(metrics_service);
    server.add_service(peer_health);
    if let Some(control) = control {
        server.add_service(background_service("okra control", control));
    }
    server.add_service(background_service(
        "okra drain",
        Drain {
            in_flight,
            readiness,
            stop_guests,
            grace: Duration::from_millis(config.shutdown_grace_ms),
        },
    ));
    tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, "gateway starting");
    Ok(GatewayServer(server))
}

/// The assembled gateway, ready to run.
pub struct GatewayServer(Server);

impl GatewayServer {
    /// Serves until a signal ends the process (see `crate::drain`).
    pub fn run_forever(self) -> ! {
        self.0.run(RunArgs {
            shutdown_signal: Box::new(Signals),
        });
        // The drain exits the process; getting here means Pingora's own
        // grace period, the backstop, ran out first.
        tracing::error!("the drain did not finish within Pingora's grace period");
        std::process::exit(1)
    }
}

/// Fails at once, naming the address and its flag, when a listener cannot be
/// bound. Pingora binds only once the server runs, retries for a while, then
/// panics the listener's thread and leaves the rest of the process running
/// (the API up, `/readyz` answering): a supervisor would never restart it.
/// All are bound at once, so two flags given the same address (or
/// `0.0.0.0:P` and `[::]:P`) are caught too.
fn check_bindable(listeners: &[(std::net::SocketAddr, &str)]) -> anyhow::Result<()> {
    let mut bound = Vec::new();
    for (addr, flag) in listeners {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({flag}): {e}"))?;
        bound.push(listener);
    }
    Ok(())
}
