//! Turns the store's [`State`] into a [`Snapshot`]: every serving app
//! materialised from its blobs into a content-addressed bundle directory,
//! loaded off the request path, and mapped to its hostnames.
//!
//! Builds are incremental: an app whose inputs (bundle, variables, tenant
//! limits and policy) are unchanged keeps its loaded `App`, and components
//! compile once per distinct wasm (the runtime's cache). An app that fails to
//! build keeps serving its previous build, and its status says why.

use crate::app::{App, AppServices, Snapshot, TenantSpec};
use anyhow::Context as _;
use control_plane::api::{AppStatus, StatusSource};
use control_plane::hostnames::app_hosts;
use control_plane::model::{AppRecord, State, TenantRecord, VersionRecord};
use control_plane::store::Store;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tenant_config::Limits;
use tenant_config::paths::PathScope;
use tenant_config::policy::{Policy, ScopeLevel};

/// One app as last built.
struct Built {
    /// Hash of everything the build depended on.
    inputs: String,
    version: u64,
    app: Arc<App>,
}

/// What one build produced.
pub struct BuildReport {
    pub snapshot: Snapshot,
    /// Apps that failed to build (and kept their previous build, if any).
    pub failures: usize,
}

/// Builds snapshots from store states, remembering what it built.
pub struct SnapshotBuilder {
    services: Arc<AppServices>,
    store: Arc<dyn Store>,
    base_domain: String,
    default_limits: Limits,
    bundles_dir: PathBuf,
    /// Apps given with `--app`, served whatever the store says.
    static_apps: Vec<(String, Arc<App>)>,
    built: HashMap<(String, String), Built>,
    status: Arc<StatusBoard>,
}

/// What the gateway serves per app, for the API's status field.
#[derive(Default)]
pub struct StatusBoard {
    apps: Mutex<HashMap<(String, String), AppStatus>>,
}

impl StatusSource for StatusBoard {
    fn status(&self, tenant: &str, app: &str) -> Option<AppStatus> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.get(&(tenant.to_string(), app.to_string())).cloned()
    }
}

impl StatusBoard {
    fn replace(&self, statuses: HashMap<(String, String), AppStatus>) {
        *self.apps.lock().unwrap_or_else(|p| p.into_inner()) = statuses;
    }
}

impl SnapshotBuilder {
    pub fn new(
        services: Arc<AppServices>,
        store: Arc<dyn Store>,
        base_domain: String,
        default_limits: Limits,
        bundles_dir: PathBuf,
        static_apps: Vec<(String, Arc<App>)>,
    ) -> Self {
        SnapshotBuilder {
            services,
            store,
            base_domain,
            default_limits,
            bundles_dir,
            static_apps,
            built: HashMap::new(),
            status: Arc::default(),
        }
    }

    pub fn status(&self) -> Arc<StatusBoard> {
        self.status.clone()
    }

    /// Builds the snapshot for `state`.
    pub async fn build(&mut self, state: &State) -> BuildReport {
        let mut snapshot = Snapshot::default();
        let mut built = HashMap::new();
        let mut statuses = HashMap::new();
        let mut failures = 0;
        for (tenant, app, version) in state.serving() {
            let key = (tenant.name.clone(), app.name.clone());
            let inputs = build_inputs(tenant, app, version, &self.default_limits);
            let previous = self.built.remove(&key);
            let result = match previous {
                Some(p) if p.inputs == inputs => Ok(p),
                previous => match self.load(tenant, app, version).await {
                    Ok(loaded) => Ok(Built {
                        inputs,
                        version: version.version,
                        app: Arc::new(loaded),
                    }),
                    Err(e) => Err((format!("{e:#}"), previous)),
                },
            };
            let (serving, status) = match result {
                Ok(ok) => {
                    let status = AppStatus {
                        serving: Some(ok.version),
                        error: None,
                    };
                    (Some(ok), status)
                }
                Err((error, previous)) => {
                    failures += 1;
                    tracing::error!(
                        tenant = %tenant.name, app = %app.name, version = version.version,
                        "app failed to build; its previous build keeps serving: {error}"
                    );
                    let status = AppStatus {
                        serving: previous.as_ref().map(|p| p.version),
                        error: Some(format!("version {}: {error}", version.version)),
                    };
                    (previous, status)
                }
            };
            statuses.insert(key.clone(), status);
            if let Some(serving) = serving {
                for host in app_hosts(&tenant.name, app, &self.base_domain) {
                    snapshot.insert(&host, serving.app.clone());
                }
                built.insert(key, serving);
            }
        }
        // The operator's own hosts win over anything in the store.
        for (host, app) in &self.static_apps {
            if let Some(shadowed) = snapshot.insert(host, app.clone()) {
                tracing::warn!(
                    %host, tenant = %shadowed.tenant, app = %shadowed.name,
                    "a stored app claims a host the operator serves; the operator's app keeps it"
                );
            }
        }
        self.built = built;
        self.status.replace(statuses);
        BuildReport { snapshot, failures }
    }

    async fn load(
        &self,
        tenant: &TenantRecord,
        app: &AppRecord,
        version: &VersionRecord,
    ) -> anyhow::Result<App> {
        let dir = self.materialise(version).await?;
        let spec = tenant_spec(tenant, &self.default_limits)?;
        let variables = app.variables.clone();
        let services = self.services.clone();
        tokio::task::spawn_blocking(move || {
            App::load(
                &services,
                &spec,
                &dir.join("spin.toml"),
                PathScope::InsideApp,
                &|name| variables.get(name).cloned(),
            )
        })
        .await
        .context("the build task failed")?
    }

    /// Writes the version's files into `bundles/<bundle id>` unless they are
    /// already there; a half-written directory is never visible under that name.
    async fn materialise(&self, version: &VersionRecord) -> anyhow::Result<PathBuf> {
        let dir = self.bundles_dir.join(version.bundle_id());
        if dir.is_dir() {
            return Ok(dir);
        }
        let mut files = BTreeMap::new();
        for (path, blob) in &version.files {
            files.insert(path.clone(), self.store.get_blob(blob).await?);
        }
        let target = dir.clone();
        let bundles = self.bundles_dir.clone();
        tokio::task::spawn_blocking(move || write_bundle_dir(&bundles, &target, &files))
            .await
            .context("the unpack task failed")??;
        Ok(dir)
    }
}

/// The Okra tenant an app runs as: its limits and policy from the store.
pub fn tenant_spec(tenant: &TenantRecord, default_limits: &Limits) -> anyhow::Result<TenantSpec> {
    let policy = match &tenant.policy {
        Some(text) => Some(Arc::new(
            Policy::parse(
                text,
                Path::new("tenant policy"),
                ScopeLevel::Tenant,
                &format!("tenant {} (its own policy)", tenant.name),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        )),
        None => None,
    };
    Ok(TenantSpec {
        name: tenant.name.clone(),
        limits: tenant
            .limits
            .clone()
            .unwrap_or_else(|| default_limits.clone()),
        policy,
    })
}

fn write_bundle_dir(
    bundles: &Path,
    target: &Path,
    files: &BTreeMap<String, Vec<u8>>,
) -> anyhow::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(bundles).with_context(|| format!("creating {}", bundles.display()))?;
    let temp = bundles.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&temp).with_context(|| format!("creating {}", temp.display()))?;
    control_plane::bundle::write_files(files, &temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    if let Err(e) = std::fs::rename(&temp, target) {
        let _ = std::fs::remove_dir_all(&temp);
        // Another build got there first: the content is the same.
        if !target.is_dir() {
            return Err(e).with_context(|| format!("renaming into {}", target.display()));
        }
    }
    Ok(())
}

/// Everything a build depends on, hashed.
fn build_inputs(
    tenant: &TenantRecord,
    app: &AppRecord,
    version: &VersionRecord,
    default_limits: &Limits,
) -> String {
    let mut hash = Sha256::new();
    hash.update(version.bundle_id());
    let inputs = serde_json::json!({
        "variables": app.variables,
        "limits": tenant.limits.as_ref().unwrap_or(default_limits),
        "policy": tenant.policy,
    });
    hash.update(inputs.to_string());
    hex::encode(hash.finalize())
}
