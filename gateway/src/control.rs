//! The gateway's control side, on a runtime of its own: opens the store,
//! builds the first snapshot before the edge starts, then follows the store's
//! change feed (and polls its version, in case a message was missed),
//! swapping each new snapshot in; and serves the embedded REST API, whose
//! deploys are checked by loading the app exactly as the edge would.

use crate::app::builder::{SnapshotBuilder, tenant_spec};
use crate::app::watcher::Watcher;
use crate::app::{App, AppServices, AppSource, Snapshot};
use crate::config::OperatorConfig;
use crate::guest::admission::Admissions;
use crate::guest::engine::Runtime;
use crate::guest::host::sqlite::databases::{DEFAULT_TENANT_QUOTA_BYTES, SqliteDatabases};
use crate::metrics::Metrics;
use crate::outbound::{Outbound, Peers};
use crate::readiness::Readiness;
use anyhow::Context as _;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use control_plane::api::{Api, ApiConfig};
use control_plane::bundle::BundleLimits;
use control_plane::model::TenantRecord;
use control_plane::store::Store;
use control_plane::validate::BundleValidator;
use pingora::lb::LoadBalancer;
use pingora::lb::selection::RoundRobin;
use pingora::server::ShutdownWatch;
use pingora::services::background::{BackgroundService, GenBackgroundService};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenant_config::Limits;
use tenant_config::paths::PathScope;

/// How long compiling a deploy's components may take.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);

/// Where unpacked bundles live, under the data directory. Guests are given
/// directories inside their own bundle only.
const BUNDLES_DIR: &str = "cache/bundles";
/// The generated admin token, under the data directory.
const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The control side's runtime, as a Pingora background service: the store's
/// watcher, the REST API and the garbage collector run on it from the first
/// snapshot on, and stop when the server begins to shut down, while the edge
/// drains. The runtime is made before the server runs, because the edge
/// must not start before the first snapshot is built on it.
pub(crate) struct ControlService {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl ControlService {
    /// Stops the control runtime's tasks without waiting for them; safe
    /// from inside another runtime, unlike dropping it.
    fn stop(&self) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(runtime) = runtime {
            tracing::info!("stopping the control side: the store watcher and the REST API");
            runtime.shutdown_background();
        }
    }
}

#[async_trait]
impl BackgroundService for ControlService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Either the signal or a server that is gone ends the wait.
        let _ = shutdown.changed().await;
        self.stop();
    }
}

impl Drop for ControlService {
    /// On SIGINT Pingora drops its services without signalling them; the
    /// runtime is then stopped here, on what may be a runtime's thread.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the gateway keeps local state for `store_url`: a file store's own
/// directory, else `--data-dir`.
pub(crate) fn data_dir(config: &OperatorConfig, store_url: &str) -> PathBuf {
    match store_url.strip_prefix("file:") {
        Some(path) => PathBuf::from(path),
        None => config.control.data_dir.clone(),
    }
}

/// Starts the control side and returns the snapshot the edge serves, with
/// the service that keeps the control side running. With no store (only
/// `--app` apps) the snapshot is fixed and there is no such service.
pub(crate) fn start(
    config: &OperatorConfig,
    services: Arc<AppServices>,
    static_apps: Vec<(String, Arc<App>)>,
    readiness: Arc<Readiness>,
) -> anyhow::Result<(Arc<ArcSwap<Snapshot>>, Option<ControlService>)> {
    let fixed = Snapshot::new(Snapshot::operator(&static_apps), Default::default());
    let swap = Arc::new(ArcSwap::from_pointee(fixed));
    let Some(url) = config.control.store_url(!static_apps.is_empty()) else {
        if config.control.api {
            tracing::warn!(
                "serving the --app ([[apps]]) apps with no store, so the REST API is off; \
                 give --store (e.g. file:okra-data) to have both, or --no-api to silence this"
            );
        }
        readiness.set_loaded();
        return Ok((swap, None));
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("okra-control")
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    let store = runtime
        .block_on(control_plane::store::open(&url))
        .with_context(|| format!("opening the store {}", control_plane::store::redacted(&url)))?;
    let data_dir = data_dir(config, &url);
    let bundles_dir = data_dir.join(BUNDLES_DIR);
    let mut secrets = vec![data_dir.join(ADMIN_TOKEN_FILE)];
    if !url.starts_with("redis") {
        // A file store, given as file:PATH or a bare path.
        secrets.push(PathBuf::from(url.strip_prefix("file:").unwrap_or(&url)));
    }
    check_secrets_outside(&bundles_dir, &secrets)?;
    let builder = SnapshotBuilder::new(
        services.clone(),
        store.clone(),
        config.control.base_domain.clone(),
        config.limits.clone(),
        bundles_dir,
        static_apps,
    );
    let status = builder.status();
    let mut watcher = Watcher::new(
        store.clone(),
        builder,
        swap.clone(),
        services.metrics.clone(),
        readiness,
        config.control.accept_store_regression,
    );
    // The edge starts with the store's apps; a store that is down now (Redis
    // restarting) is caught up with by the watcher, which logs the loss.
    let _ = runtime.block_on(watcher.reload(true));
    runtime.spawn(watcher.run());
    tracing::info!(store = %store.describe(), "following the store");

    if config.control.api {
        runtime.spawn(collect_garbage(store.clone()));
        let api = api(config, &data_dir, store, services, Some(status))?;
        let router = control_plane::api::router(api);
        serve_api(&runtime, config.control.api_listen, router, config.upgrade)?;
    }
    let service = ControlService {
        runtime: Mutex::new(Some(runtime)),
    };
    Ok((swap, Some(service)))
}

/// How long a gateway taking over in a graceful upgrade waits for the old
/// one to let go of the API's port.
const API_TAKEOVER_WAIT: Duration = Duration::from_secs(120);
/// How often the process that serves the API collects the store's garbage.
const GC_INTERVAL: Duration = Duration::from_secs(600);
/// How old an unreferenced blob must be before it goes: far longer than a
/// deploy takes between storing its blobs and naming them in a version.
const GC_GRACE: Duration = Duration::from_secs(3600);

/// Deletes the blobs no kept version names, every [`GC_INTERVAL`], for as
/// long as the process runs. Only the process serving the API does this.
async fn collect_garbage(store: Arc<dyn Store>) {
    loop {
        tokio::time::sleep(GC_INTERVAL).await;
        match control_plane::store::collect_garbage(&*store, GC_GRACE).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted blobs no kept version names"),
            Err(e) => tracing::warn!("collecting the store's garbage: {e}"),
        }
    }
}

/// Refuses a layout that puts the store or the admin token inside the
/// directory guests' bundles are unpacked into: whatever a guest can be
/// given, those are never in it.
fn check_secrets_outside(bundles: &Path, secrets: &[PathBuf]) -> anyhow::Result<()> {
    std::fs::create_dir_all(bundles).with_context(|| format!("creating {}", bundles.display()))?;
    let bundles = bundles.canonicalize()?;
    for secret in secrets {
        if resolved(secret)?.starts_with(&bundles) {
            anyhow::bail!(
                "{} is inside {}, where tenants' bundles are unpacked; give the store and --data-dir separate places",
                secret.display(),
                bundles.display()
            );
        }
    }
    Ok(())
}

/// `path` made absolute with symlinks resolved, for a path that may not
/// exist yet: its nearest existing ancestor is resolved and the rest appended.
fn resolved(path: &Path) -> std::io::Result<PathBuf> {
    let path = std::path::absolute(path)?;
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(base) => return Ok(rest.iter().rev().fold(base, |p, part| p.join(part))),
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                _ => return Ok(path.clone()),
            },
        }
    }
}

/// The `control-plane` binary: the REST API over the store, with deploys
/// checked by this gateway's loader, and no edge; `/healthz`, `/readyz` and
/// `/metrics` on `metrics_listen`. Blocks.
pub fn run_control_plane(
    config: &OperatorConfig,
    metrics_listen: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let url = config
        .control
        .store_url(false)
        .context("the control plane needs a store")?;
    let (services, _) = app_services(config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let health_listener = runtime
        .block_on(tokio::net::TcpListener::bind(metrics_listen))
        .with_context(|| format!("cannot listen on {metrics_listen} (--metrics-listen)"))?;
    let store = runtime
        .block_on(control_plane::store::open(&url))
        .with_context(|| format!("opening the store {}", control_plane::store::redacted(&url)))?;
    runtime.spawn(collect_garbage(store.clone()));
    let metrics = Arc::new(control_plane::health::ApiMetrics::new()?);
    let health = control_plane::health::router(store.clone(), metrics.clone());
    runtime.spawn(async move {
        if let Err(e) = axum::serve(health_listener, health).await {
            tracing::error!("the metrics listener stopped: {e}");
        }
    });
    let api = api(config, &data_dir(config, &url), store, services, None)?;
    let router = control_plane::health::counted(control_plane::api::router(api), metrics);
    serve_api(&runtime, config.control.api_listen, router, false)?;
    tracing::info!(api = %config.control.api_listen, metrics = %metrics_listen, "control plane ready");
    runtime.block_on(std::future::pending::<()>());
    Ok(())
}

/// The REST API over `store`, validating deploys with this gateway's loader.
/// The admin token is `OKRA_ADMIN_TOKEN`, else `<data_dir>/admin-token`.
fn api(
    config: &OperatorConfig,
    data_dir: &Path,
    store: Arc<dyn Store>,
    services: Arc<AppServices>,
    status: Option<Arc<dyn control_plane::api::StatusSource>>,
) -> anyhow::Result<Arc<Api>> {
    let admin_token_hash = control_plane::auth::admin_token_hash(
        std::env::var("OKRA_ADMIN_TOKEN").ok().as_deref(),
        &data_dir.join(ADMIN_TOKEN_FILE),
    )
    .context("setting up the admin token")?;
    // Apps are reached on this gateway's own listener; the control plane
    // cannot know its gateways' ports, so port 80 unless told.
    let default_port = if status.is_some() {
        config.listen.port()
    } else {
        80
    };
    let mut api_config = api_config(config, admin_token_hash, default_port);
    api_config.key_value = Some((*services.key_value).clone());
    let validator = Arc::new(GatewayValidator {
        services,
        default_limits: config.limits.clone(),
    });
    Ok(Arc::new(Api::new(store, validator, status, api_config)))
}

/// The API settings from the operator's configuration; `public_port` is
/// the port apps are reached on unless `[control] public_port` says.
fn api_config(config: &OperatorConfig, admin_token_hash: String, public_port: u16) -> ApiConfig {
    ApiConfig {
        base_domain: config.control.base_domain.clone(),
        admin_token_hash,
        max_bundle_bytes: usize::try_from(config.control.max_bundle_bytes).unwrap_or(usize::MAX),
        bundle_limits: BundleLimits::default(),
        validation_timeout: VALIDATION_TIMEOUT,
        reserved_hosts: config.reserved_hosts().collect(),
        quotas: config.quotas.clone(),
        default_limits: config.limits.clone(),
        public_port: config.control.public_port.unwrap_or(public_port),
        shared_store: config
            .control
            .store_url(!config.apps.is_empty())
            .is_some_and(|url| url.starts_with("redis://") || url.starts_with("rediss://")),
        key_value: None,
    }
}

/// Binds the API listener now (so a taken port fails the start) and serves
/// it on `runtime`. In a graceful upgrade (`taking_over`) the old gateway
/// still holds the port until it has drained: the API then waits for it, for
/// up to [`API_TAKEOVER_WAIT`], while the edge already serves.
pub(crate) fn serve_api(
    runtime: &tokio::runtime::Runtime,
    listen: std::net::SocketAddr,
    api: axum::Router,
    taking_over: bool,
) -> anyhow::Result<()> {
    let bind = move || -> std::io::Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    };
    let listener = match bind() {
        Ok(listener) => Some(listener),
        Err(e) if taking_over && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::info!(api = %listen, "the REST API waits for the old gateway to let go of its port");
            None
        }
        Err(e) => anyhow::bail!("cannot listen on {listen} (--api-listen): {e}"),
    };
    runtime.spawn(async move {
        let mut listener = listener;
        let deadline = tokio::time::Instant::now() + API_TAKEOVER_WAIT;
        while listener.is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            listener = bind().ok();
        }
        let Some(listener) = listener else {
            tracing::error!(api = %listen, "the REST API could not bind its port; it is not served");
            return;
        };
        tracing::info!(api = %listen, "REST API listening");
        let result = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => axum::serve(listener, api).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!("the API stopped: {e}");
        }
    });
    Ok(())
}

/// Refuses deploys whose app would not load here: components that do not
/// compile or import what Okra cannot provide, bad policies, missing variables.
pub(crate) struct GatewayValidator {
    pub(crate) services: Arc<AppServices>,
    pub(crate) default_limits: Limits,
}

#[async_trait]
impl BundleValidator for GatewayValidator {
    async fn validate(
        &self,
        tenant: &TenantRecord,
        manifest: &Path,
        variables: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let spec = tenant_spec(tenant, &self.default_limits).map_err(|e| format!("{e:#}"))?;
        let services = self.services.clone();
        let manifest = manifest.to_path_buf();
        let variables = variables.clone();
        tokio::task::spawn_blocking(move || {
            let source = AppSource {
                manifest: &manifest,
                scope: PathScope::InsideApp,
                name: None,
                data_id: None,
            };
            App::load(&services, &spec, &source, &|name| {
                variables.get(name).cloned()
            })
            .map(|_| ())
        })
        .await
        .map_err(|e| format!("the compile task failed: {e}"))?
        .map_err(|e| format!("{e:#}"))
    }
}

/// The engine, outbound and metrics every app shares, plus the peers'
/// health-check service.
pub(crate) fn app_services(
    config: &OperatorConfig,
) -> anyhow::Result<(
    Arc<AppServices>,
    GenBackgroundService<LoadBalancer<RoundRobin>>,
)> {
    let metrics = Arc::new(Metrics::new()?);
    let (peers, peer_health) = Peers::new(&config.self_route_peers(), metrics.clone())?;
    let mut runtime_config = config.runtime.clone();
    if let Some(url) = config.control.store_url(!config.apps.is_empty())
        && runtime_config.compile_cache_dir.is_none()
    {
        runtime_config.compile_cache_dir = Some(data_dir(config, &url).join("cache/compiled"));
    }
    let tick = runtime_config.epoch_tick();
    let services = Arc::new(AppServices {
        runtime: Runtime::new(runtime_config)?,
        outbound: Arc::new(Outbound::new(
            config.outbound.clone(),
            metrics.clone(),
            peers,
        )?),
        admissions: Arc::new(Admissions::new(
            metrics.tenant_inflight_requests.clone(),
            metrics.tenant_cpu_waiting.clone(),
            tick,
        )),
        default_cpu_parallelism: (config.edge_threads() / 2).max(1) as u32,
        key_value: Arc::new(key_value_backend(config)?),
        sqlite: Arc::new(SqliteDatabases::new(
            node_data_dir(config).join("sqlite"),
            DEFAULT_TENANT_QUOTA_BYTES,
        )),
        metrics,
    });
    Ok((services, peer_health))
}

/// Apps' key-value data: in the cluster's Redis with a Redis store, so
/// every gateway sees the same; else in the embedded file.
fn key_value_backend(config: &OperatorConfig) -> anyhow::Result<okra_kv::KeyValue> {
    let quota = config.quotas.key_value();
    match config.control.store_url(!config.apps.is_empty()) {
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            okra_kv::KeyValue::redis(&url, quota).map_err(anyhow::Error::msg)
        }
        _ => Ok(okra_kv::KeyValue::embedded(
            node_data_dir(config).join(okra_kv::FILE_NAME),
            quota,
        )),
    }
}

/// Where node-local guest data (the embedded key-value file, SQLite
/// databases) lives: the data directory of the store, or `--data-dir`
/// without one.
fn node_data_dir(config: &OperatorConfig) -> PathBuf {
    match config.control.store_url(!config.apps.is_empty()) {
        Some(url) => data_dir(config, &url),
        None => config.control.data_dir.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_and_admin_token_may_not_live_among_bundles() {
        let data = tempfile::tempdir().unwrap();
        let bundles = data.path().join(BUNDLES_DIR);
        let outside = [
            data.path().join(ADMIN_TOKEN_FILE),
            data.path().to_path_buf(),
            data.path().join("state.json"),
        ];
        check_secrets_outside(&bundles, &outside).unwrap();
        for inside in [
            bundles.join("x/admin-token"),
            bundles.join("store"),
            data.path().join("cache/./bundles/../bundles/y"),
        ] {
            let err = check_secrets_outside(&bundles, std::slice::from_ref(&inside)).unwrap_err();
            assert!(
                err.to_string()
                    .contains("where tenants' bundles are unpacked"),
                "{err}"
            );
        }
    }
}
