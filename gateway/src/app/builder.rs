//! Turns the store's [`State`] into a [`Snapshot`]: every serving app
//! materialised from its blobs into a content-addressed bundle directory,
//! loaded off the request path, and mapped to its hostnames.
//!
//! Builds are incremental: an app whose inputs (bundle, variables, tenant
//! limits and policy) are unchanged keeps its loaded `App`, and components
//! compile once per distinct wasm (the runtime's cache). An app that fails to
//! build keeps serving its previous build, and its status says why.

use crate::app::host_table::HostTable;
use crate::app::{App, AppServices, AppSource, Snapshot, TenantSpec};
use anyhow::Context as _;
use control_plane::api::{AppStatus, StatusSource};
use control_plane::hostnames::app_hosts;
use control_plane::model::{AppRecord, State, TenantRecord, VersionRecord};
use control_plane::store::Store;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tenant_config::Limits;
use tenant_config::paths::PathScope;
use tenant_config::policy::{Policy, ScopeLevel};

/// One app as last built.
struct Built {
    /// Hash of everything the build depended on.
    inputs: String,
    version: u64,
    /// The bundle directory it was loaded from.
    bundle: String,
    /// The hostnames it is served at (lowercase).
    hosts: Vec<String>,
    app: Arc<App>,
}

/// What one build produced.
pub(crate) struct BuildReport {
    pub(crate) snapshot: Snapshot,
    /// Apps whose latest version does not build (each keeps its previous
    /// build, if any), this build or an earlier one.
    pub(crate) failures: usize,
    /// The apps' new statuses, for [`SnapshotBuilder::publish`] once the
    /// snapshot is served (`None`: the app is gone).
    pub(crate) statuses: Vec<StatusChange>,
}

/// An app's new status, by (tenant, app); `None` once it is gone.
pub(crate) type StatusChange = ((String, String), Option<AppStatus>);

/// Builds snapshots from store states, remembering what it built.
pub(crate) struct SnapshotBuilder {
    services: Arc<AppServices>,
    store: Arc<dyn Store>,
    base_domain: String,
    default_limits: Limits,
    bundles_dir: PathBuf,
    /// What is built, by tenant, then app.
    built: HashMap<String, HashMap<String, Built>>,
    /// Every stored app's hostnames, kept between builds so a build only
    /// touches the tenants that changed.
    hosts: HostTable<Arc<App>>,
    /// The operator's `--app` apps by host, which win over stored ones.
    operator: Arc<HashMap<String, Arc<App>>>,
    status: Arc<StatusBoard>,
    /// Gone tenants whose series wait until nothing holds them.
    gone_tenants: BTreeSet<String>,
    /// Apps no longer built whose metric series go once no request still
    /// runs on them (a request finishing on an old build would otherwise
    /// count into a series just removed, and bring it back for good).
    gone_apps: Vec<(String, String, Weak<App>)>,
    /// Apps whose latest version failed to build, to try again.
    failing: BTreeSet<(String, String)>,
    /// Bundle directories no built app uses, since when.
    retired: HashMap<String, Instant>,
}

/// How long an unused bundle directory stays: instances of the build before
/// may still read their files until their deadline, which a tenant's limits
/// may set to an hour.
const BUNDLE_GRACE: Duration = Duration::from_secs(2 * 3600);

/// What the gateway serves per app, for the API's status field.
#[derive(Default)]
pub(crate) struct StatusBoard {
    apps: Mutex<HashMap<(String, String), AppStatus>>,
}

impl StatusSource for StatusBoard {
    fn status(&self, tenant: &str, app: &str) -> Option<AppStatus> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.get(&(tenant.to_string(), app.to_string())).cloned()
    }
}

impl StatusBoard {
    /// Sets (or with `None` drops) the statuses of these apps.
    fn update(&self, statuses: impl IntoIterator<Item = StatusChange>) {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        for (key, status) in statuses {
            match status {
                Some(status) => apps.insert(key, status),
                None => apps.remove(&key),
            };
        }
    }
}

impl SnapshotBuilder {
    /// Publishes a build's statuses: call once its snapshot is served, so
    /// an API client told "served" finds the edge serving it.
    pub(crate) fn publish(&self, statuses: Vec<StatusChange>) {
        self.status.update(statuses);
    }

    pub(crate) fn new(
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
            operator: Snapshot::operator(&static_apps),
            built: HashMap::new(),
            hosts: HostTable::default(),
            status: Arc::default(),
            gone_tenants: BTreeSet::new(),
            gone_apps: Vec::new(),
            failing: BTreeSet::new(),
            retired: HashMap::new(),
        }
    }

    pub(crate) fn status(&self) -> Arc<StatusBoard> {
        self.status.clone()
    }

    /// Builds the snapshot for `state`.
    ///
    /// `changed` names the tenants that changed since the last build, when
    /// that is known: only their apps are looked at again, so a build costs
    /// what changed, not the whole store. Without it, every app is.
    pub(crate) async fn build(
        &mut self,
        state: &State,
        changed: Option<&BTreeSet<String>>,
    ) -> BuildReport {
        let tenants: BTreeSet<String> = match changed {
            Some(changed) => changed.clone(),
            None => state
                .tenants
                .keys()
                .chain(self.built.keys())
                .cloned()
                .collect(),
        };
        let mut statuses = Vec::new();
        let mut gone = Vec::new();
        for name in &tenants {
            // Take the tenant's apps out; what is still served goes back in.
            let mut previous = self.built.remove(name).unwrap_or_default();
            for old in previous.values() {
                for host in &old.hosts {
                    // Only if it is still this app's: another tenant may hold
                    // a domain this one has since released.
                    if self
                        .hosts
                        .get(host)
                        .is_some_and(|app| Arc::ptr_eq(app, &old.app))
                    {
                        self.hosts.remove(host);
                    }
                }
            }
            self.failing.retain(|(tenant, _)| tenant != name);
            let mut now = HashMap::new();
            let mut serving = Vec::new();
            if let Some(tenant) = state.tenants.get(name) {
                for app in tenant.apps.values() {
                    if let Some(version) = app.current_version() {
                        serving.push((tenant, app, version));
                    }
                }
            }
            for (tenant, app, version) in serving {
                let key = (tenant.name.clone(), app.name.clone());
                let (serving, status) = self
                    .build_app(tenant, app, version, previous.remove(&app.name))
                    .await;
                if status.error.is_some() {
                    self.failing.insert(key.clone());
                }
                statuses.push((key, Some(status)));
                if let Some(serving) = serving {
                    for host in &serving.hosts {
                        if self.operator.contains_key(host) {
                            tracing::warn!(
                                %host, tenant = %tenant.name, app = %app.name,
                                "a stored app claims a host the operator serves; the operator's app keeps it"
                            );
                        }
                        self.hosts.insert(host.clone(), serving.app.clone());
                    }
                    now.insert(app.name.clone(), serving);
                }
            }
            // What is left was not rebuilt: those apps are gone.
            for (app, old) in previous {
                statuses.push(((name.clone(), app), None));
                gone.push(old);
            }
            if !now.is_empty() {
                self.built.insert(name.clone(), now);
            }
        }
        self.forget_gone(gone);
        let snapshot = Snapshot::new(self.operator.clone(), self.hosts.clone());
        BuildReport {
            snapshot,
            failures: self.failing.len(),
            statuses,
        }
    }

    /// Builds one app, reusing `previous` if nothing it depends on changed;
    /// a failed build keeps `previous`, and the status says why.
    async fn build_app(
        &self,
        tenant: &TenantRecord,
        app: &AppRecord,
        version: &VersionRecord,
        previous: Option<Built>,
    ) -> (Option<Built>, AppStatus) {
        let inputs = build_inputs(tenant, app, version, &self.default_limits);
        let hosts: Vec<String> = app_hosts(&tenant.name, app, &self.base_domain)
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let result = match previous {
            Some(p) if p.inputs == inputs => Ok(Built {
                hosts: hosts.clone(),
                ..p
            }),
            previous => match self.load(tenant, app, version).await {
                Ok(loaded) => Ok(Built {
                    inputs,
                    version: version.version,
                    bundle: version.bundle_id(),
                    hosts: hosts.clone(),
                    app: Arc::new(loaded),
                }),
                Err(e) => Err((format!("{e:#}"), previous)),
            },
        };
        match result {
            Ok(ok) => {
                let status = AppStatus {
                    serving: Some(ok.version),
                    ..AppStatus::default()
                };
                (Some(ok), status)
            }
            Err((error, previous)) => {
                tracing::error!(
                    tenant = %tenant.name, app = %app.name, version = version.version,
                    "app failed to build; its previous build keeps serving: {error}"
                );
                let status = AppStatus {
                    serving: previous.as_ref().map(|p| p.version),
                    error: Some(format!("version {}: {error}", version.version)),
                    failed_version: Some(version.version),
                };
                // The previous build serves at the hosts the app has now:
                // a domain it released may be another tenant's already.
                (previous.map(|p| Built { hosts, ..p }), status)
            }
        }
    }

    /// Marks the metric series (and outbound pools) of `gone` apps, and of
    /// tenants with no app left, to be dropped once nothing runs on them.
    fn forget_gone(&mut self, gone: Vec<Built>) {
        for old in gone {
            let tenant = old.app.tenant.clone();
            if !self.built.contains_key(&tenant) {
                self.gone_tenants.insert(tenant.clone());
            }
            self.gone_apps
                .push((tenant, old.app.name.clone(), Arc::downgrade(&old.app)));
        }
        self.forget_released_tenants();
    }

    /// Drops the series of gone apps and tenants that nothing holds any
    /// more: the snapshot being replaced and requests in flight keep an old
    /// build (and its tenant's admission state) alive for a while after it
    /// went (the watcher calls this every second). A series whose labels
    /// are in use again (an app deployed anew under the same name) stays.
    pub(crate) fn forget_released_tenants(&mut self) {
        if self.gone_tenants.is_empty() && self.gone_apps.is_empty() {
            return;
        }
        let metrics = self.services.metrics.clone();
        let built = &self.built;
        let labelled = |tenant: &str, app: &str| {
            built
                .get(tenant)
                .is_some_and(|apps| apps.values().any(|b| b.app.name == app))
        };
        self.gone_apps.retain(|(tenant, app, old)| {
            if labelled(tenant, app) {
                return false;
            }
            if old.strong_count() > 0 {
                return true;
            }
            metrics.forget_app(tenant, app);
            false
        });
        let admissions = &self.services.admissions;
        let outbound = &self.services.outbound;
        let gone_apps = &self.gone_apps;
        self.gone_tenants.retain(|tenant| {
            if built.contains_key(tenant) {
                return false;
            }
            if admissions.is_held(tenant) || gone_apps.iter().any(|(t, ..)| t == tenant) {
                return true;
            }
            metrics.forget_tenant(tenant);
            outbound.forget_tenant(tenant);
            metrics.forget_tenant_admission(tenant);
            false
        });
    }

    /// Deletes bundle directories no built app has used for
    /// [`BUNDLE_GRACE`]. Rolling back to a kept version unpacks it again
    /// from the store's blobs.
    pub(crate) fn collect_bundle_dirs(&mut self) {
        let on_disk: Vec<String> = match std::fs::read_dir(&self.bundles_dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect(),
            Err(_) => return,
        };
        let in_use: BTreeSet<String> = self
            .built
            .values()
            .flat_map(|apps| apps.values().map(|b| b.bundle.clone()))
            .collect();
        let expired = retire_unused(
            &on_disk,
            &in_use,
            &mut self.retired,
            Instant::now(),
            BUNDLE_GRACE,
        );
        for id in expired {
            let dir = self.bundles_dir.join(&id);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "removed an unused bundle directory")
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "removing an unused bundle directory: {e}")
                }
            }
        }
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
        let name = app.name.clone();
        let data_id = app.data_id().to_string();
        let services = self.services.clone();
        tokio::task::spawn_blocking(move || {
            let manifest = dir.join("spin.toml");
            let source = AppSource {
                manifest: &manifest,
                scope: PathScope::InsideApp,
                name: Some(&name),
                data_id: Some(&data_id),
            };
            App::load(&services, &spec, &source, &|name| {
                variables.get(name).cloned()
            })
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
pub(crate) fn tenant_spec(
    tenant: &TenantRecord,
    default_limits: &Limits,
) -> anyhow::Result<TenantSpec> {
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
        data_id: tenant.data_id().to_string(),
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

/// Which of the directories `on_disk` to delete now: those out of use for
/// `grace` (remembered in `retired`, which forgets those back in use).
fn retire_unused(
    on_disk: &[String],
    in_use: &BTreeSet<String>,
    retired: &mut HashMap<String, Instant>,
    now: Instant,
    grace: Duration,
) -> Vec<String> {
    retired.retain(|id, _| !in_use.contains(id) && on_disk.contains(id));
    let mut expired = Vec::new();
    for id in on_disk.iter().filter(|id| !in_use.contains(*id)) {
        let since = *retired.entry(id.clone()).or_insert(now);
        if now.duration_since(since) >= grace {
            expired.push(id.clone());
        }
    }
    for id in &expired {
        retired.remove(id);
    }
    expired
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_bundle_directories_go_after_their_grace() {
        let grace = Duration::from_secs(600);
        let start = Instant::now();
        let disk: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut in_use: BTreeSet<String> = ["a".to_string()].into();
        let mut retired = HashMap::new();
        assert!(retire_unused(&disk, &in_use, &mut retired, start, grace).is_empty());
        // b comes back into use before its grace ends; c does not.
        in_use.insert("b".into());
        let later = start + grace;
        assert_eq!(
            retire_unused(&disk, &in_use, &mut retired, later, grace),
            ["c"]
        );
        in_use.remove("b");
        assert!(retire_unused(&disk, &in_use, &mut retired, later, grace).is_empty());
        assert_eq!(
            retire_unused(&disk, &in_use, &mut retired, later + grace, grace),
            ["b", "c"]
        );
    }
}
