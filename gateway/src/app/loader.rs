//! Apps as the edge serves them: a Spin manifest turned into a route table of
//! compiled components and static responses, with its variables resolved and
//! its components linked for chaining.

use crate::app::chaining::AppComponents;
use crate::context::inbound::JwtVerifier;
use crate::guest::admission::{Admissions, TenantAdmission};
use crate::guest::component::ComponentRunner;
use crate::guest::engine::Runtime;
use crate::guest::factory::GuestEnvironment;
use crate::guest::host::key_value::grant::KeyValueGrant;
use crate::guest::host::sqlite::databases::{SqliteDatabases, SqliteGrant, SqliteScope};
use crate::metrics::ComponentLabels;
use crate::metrics::Metrics;
use crate::outbound::{ComponentOutbound, Outbound};
use anyhow::{Context as _, bail};
use okra_kv::KeyValue;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tenant_config::paths::{PathScope, resolve_inside};
use tenant_config::policy::{Policy, PolicyChain, ScopeLevel};
use tenant_config::{
    AppManifest, AppVariables, Limits, RouteTable, StaticResponse, TriggerHandler,
};

/// What a route leads to.
pub(crate) enum RouteTarget {
    Component(Arc<ComponentRunner>),
    Static(Arc<StaticResponse>),
}

/// What every app of the gateway shares.
pub(crate) struct AppServices {
    pub(crate) runtime: Runtime,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) outbound: Arc<Outbound>,
    /// Every tenant's instance count, shared by all its apps and builds.
    pub(crate) admissions: Arc<Admissions>,
    /// CPU-bound guests a tenant may run at once when its limits do not say.
    pub(crate) default_cpu_parallelism: u32,
    /// Where apps' key-value stores keep their data.
    pub(crate) key_value: Arc<KeyValue>,
    /// Apps' SQLite databases.
    pub(crate) sqlite: Arc<SqliteDatabases>,
}

/// One deployed app.
pub(crate) struct App {
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) routes: RouteTable<RouteTarget>,
    pub(crate) limits: Limits,
    /// The tenant's instance count and cap, shared with its other apps.
    pub(crate) admission: Arc<TenantAdmission>,
    /// Verifies inbound bearer tokens, when the tenant configured keys.
    pub(crate) verifier: Option<Arc<JwtVerifier>>,
    /// Every component a trigger names, private ones included; chaining
    /// reaches them through weak links, so this map keeps them alive.
    #[expect(
        dead_code,
        reason = "never read: held so that the components outlive every weak link to them"
    )]
    pub(crate) components: BTreeMap<String, Arc<ComponentRunner>>,
}

/// Where an app is loaded from, and what it is called.
pub(crate) struct AppSource<'a> {
    /// Its `spin.toml`.
    pub(crate) manifest: &'a Path,
    /// Where its files may be: anywhere for an operator's app, inside the
    /// manifest's directory for a tenant's bundle.
    pub(crate) scope: PathScope,
    /// Its name as deployed (labels, logs, rate buckets); the manifest's
    /// `[application] name` when `None` (an operator's app).
    pub(crate) name: Option<&'a str>,
    /// What its data outside the store (key-value) is keyed by: the app
    /// record's id; its name when `None`.
    pub(crate) data_id: Option<&'a str>,
}

/// Where variable values come from, before the manifest defaults.
pub(crate) type VariableProvider<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The tenant an app is loaded for.
pub(crate) struct TenantSpec {
    pub(crate) name: String,
    /// What the tenant's data outside the store is keyed by (its record's
    /// id; the name for the operator's tenant).
    pub(crate) data_id: String,
    pub(crate) limits: Limits,
    /// The tenant's own outbound policy from the store, applied after the
    /// operator's global and `--tenant-policy` scopes, never instead of them.
    pub(crate) policy: Option<Arc<Policy>>,
}

impl TenantSpec {
    /// Policy scopes every component of the tenant starts from: the
    /// operator's global policy, the operator's policy for this tenant, then
    /// the tenant's own. Every scope must pass, so the tenant's policy can
    /// only narrow what the operator allows.
    fn scopes(&self, outbound: &Outbound) -> Vec<Arc<tenant_config::policy::Scope>> {
        let mut scopes = outbound.tenant_scopes(&self.name);
        scopes.extend(self.policy.as_ref().map(|p| p.scope.clone()));
        scopes
    }

    /// Who verifies inbound bearer tokens: the operator's keys for this
    /// tenant when it set any (the tenant cannot swap in keys of its own and
    /// mint the claims the operator's conditions test), else the tenant's.
    fn verifier(&self, outbound: &Outbound) -> anyhow::Result<Option<Arc<JwtVerifier>>> {
        if let Some(operator) = outbound.verifier(&self.name) {
            if self.policy.as_ref().is_some_and(|p| p.auth.is_some()) {
                tracing::warn!(
                    tenant = %self.name,
                    "the tenant's policy sets auth keys, but the operator's tenant policy does too; the operator's verify inbound tokens"
                );
            }
            return Ok(Some(operator));
        }
        match self.policy.as_ref().and_then(|p| p.auth.as_ref()) {
            Some(auth) => Ok(Some(Arc::new(
                JwtVerifier::new(auth).context("the tenant policy's auth keys")?,
            ))),
            None => Ok(None),
        }
    }
}

/// What compiling one component needs to know about its app.
struct AppContext<'a> {
    tenant: &'a TenantSpec,
    manifest: &'a AppManifest,
    policy: Option<&'a Policy>,
    variables: &'a AppVariables,
    limits: &'a Limits,
    components: &'a Arc<AppComponents>,
    /// The manifest's directory, and whether every path must stay inside it.
    dir: &'a Path,
    scope: PathScope,
    /// The app's name in labels and logs.
    name: &'a str,
    /// What its key-value data is keyed by.
    data_id: &'a str,
}

impl App {
    /// Loads `spin.toml`, resolves its variables (`provider` first, then
    /// defaults) and compiles every component a trigger names. A tenant's
    /// bundle is loaded with [`PathScope::InsideApp`]: no component reads or
    /// mounts anything outside the manifest's directory.
    pub(crate) fn load(
        services: &AppServices,
        tenant: &TenantSpec,
        source: &AppSource<'_>,
        provider: VariableProvider<'_>,
    ) -> anyhow::Result<App> {
        let (manifest_path, scope) = (source.manifest, source.scope);
        let limits = tenant.limits.clone();
        let most = services.runtime.config.max_memory_bytes;
        if limits.memory_bytes > most {
            bail!(
                "tenant {}: memory limit {} bytes is more than this gateway's pool slots hold ({most} bytes, --max-memory-bytes)",
                tenant.name,
                limits.memory_bytes
            );
        }
        let manifest = AppManifest::load_in(manifest_path, scope)?;
        // Labels, logs and rate buckets name the app as the tenant deployed
        // it (a DNS label), never by the manifest's free-form name.
        let name = source.name.unwrap_or(&manifest.name).to_string();
        if matches!(scope, PathScope::Anywhere) {
            // A tenant's deploy answers with these; an operator's app (and
            // `okra up`) has only this log to say them.
            for warning in &manifest.warnings {
                tracing::warn!(app = %name, "{}: {warning}", manifest_path.display());
            }
        }
        let policy = load_app_policy(manifest_path, &manifest)?;
        let variables = AppVariables::resolve(&manifest, provider)
            .with_context(|| format!("{}", manifest_path.display()))?;
        let admission =
            services
                .admissions
                .tenant(&tenant.name, &limits, services.default_cpu_parallelism);
        let components = AppComponents::new(admission.clone());
        let app = AppContext {
            tenant,
            manifest: &manifest,
            policy: policy.as_ref(),
            variables: &variables,
            limits: &limits,
            components: &components,
            dir: manifest_path.parent().unwrap_or(Path::new(".")),
            scope,
            name: &name,
            data_id: source.data_id.unwrap_or(&name),
        };
        let mut compiled: BTreeMap<String, Arc<ComponentRunner>> = BTreeMap::new();
        let mut routes = Vec::new();
        for trigger in &manifest.http_triggers {
            let target = match &trigger.handler {
                TriggerHandler::Static(s) => RouteTarget::Static(Arc::new(s.clone())),
                TriggerHandler::Component(id) => {
                    let runner = match compiled.get(id) {
                        Some(r) => r.clone(),
                        None => {
                            let r = Arc::new(compile_component(services, &app, id)?);
                            compiled.insert(id.clone(), r.clone());
                            r
                        }
                    };
                    RouteTarget::Component(runner)
                }
            };
            // Private routes are reachable only by chaining, never from the edge.
            if let Some(route) = &trigger.route {
                routes.push((route.clone(), target));
            }
        }
        components.fill(&compiled);
        Ok(App {
            tenant: tenant.name.clone(),
            name,
            routes: RouteTable::new(routes),
            admission,
            verifier: tenant.verifier(&services.outbound)?,
            limits,
            components: compiled,
        })
    }
}

/// The app's `okra.json` (next to `spin.toml`), if it has one; its
/// `services` must name components of the app.
fn load_app_policy(manifest_path: &Path, manifest: &AppManifest) -> anyhow::Result<Option<Policy>> {
    let path = manifest_path.with_file_name("okra.json");
    if !path.exists() {
        return Ok(None);
    }
    let policy = Policy::load(&path, ScopeLevel::App, &format!("app {}", manifest.name))?;
    for component in policy.services.keys() {
        if !manifest.components.contains_key(component) {
            let known: Vec<&String> = manifest.components.keys().collect();
            bail!(
                "{}: key `services.{component}`: the app has no component `{component}`; it has {known:?}",
                path.display()
            );
        }
    }
    Ok(Some(policy))
}

impl AppContext<'_> {
    /// `path` as the component may use it: for a tenant's bundle, resolved
    /// and refused unless it lies inside the bundle's directory.
    fn confined(&self, path: &Path, id: &str, key: &str) -> anyhow::Result<PathBuf> {
        match self.scope {
            PathScope::Anywhere => Ok(path.to_path_buf()),
            PathScope::InsideApp => resolve_inside(self.dir, path).map_err(|why| {
                anyhow::anyhow!(
                    "component `{id}`: {key} {} is not allowed: {why}",
                    path.display()
                )
            }),
        }
    }
}

fn compile_component(
    services: &AppServices,
    app: &AppContext<'_>,
    id: &str,
) -> anyhow::Result<ComponentRunner> {
    let AppContext {
        tenant, manifest, ..
    } = *app;
    let component = manifest
        .components
        .get(id)
        .with_context(|| format!("component `{id}` is not defined"))?;
    let source = app.confined(&component.source, id, "source")?;
    let wasm = std::fs::read(&source).with_context(|| {
        format!(
            "component `{id}`: cannot read source {} (build it first)",
            component.source.display()
        )
    })?;
    if !wasm.starts_with(b"\0asm") {
        bail!(
            "component `{id}`: source {} is not a WebAssembly file (is `source` the built .wasm?)",
            component.source.display()
        );
    }
    let mut dirs = Vec::new();
    for mount in &component.files {
        if !mount.host_path.is_dir() {
            bail!(
                "component `{id}`: files entry {} must be an existing directory (glob patterns and single files are not supported yet)",
                mount.host_path.display()
            );
        }
        let host = app.confined(&mount.host_path, id, "files")?;
        dirs.push((host, mount.guest_path.clone()));
    }
    let labels = ComponentLabels {
        tenant: tenant.name.clone(),
        app: app.name.to_string(),
        component: id.to_string(),
    };
    let environment = GuestEnvironment {
        env: component
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        dirs,
        variables: Arc::new(app.variables.for_component(manifest, id)?),
        key_value: (!component.key_value_stores.is_empty()).then(|| KeyValueGrant {
            scope: okra_kv::Scope {
                tenant: tenant.data_id.clone(),
                app: app.data_id.to_string(),
            },
            stores: Arc::new(component.key_value_stores.iter().cloned().collect()),
            backend: services.key_value.clone(),
        }),
        sqlite: (!component.sqlite_databases.is_empty()).then(|| SqliteGrant {
            scope: SqliteScope {
                tenant: tenant.data_id.clone(),
                app: app.data_id.to_string(),
            },
            databases: Arc::new(component.sqlite_databases.iter().cloned().collect()),
            backend: services.sqlite.clone(),
        }),
    };
    let value_of = |name: &str| app.variables.get(name);
    let mut scopes = tenant.scopes(&services.outbound);
    if let Some(policy) = app.policy {
        scopes.push(policy.scope.clone());
        scopes.extend(policy.services.get(id).cloned());
    }
    let policy = PolicyChain::new(scopes);
    let settings = policy
        .settings(&value_of)
        .map_err(|e| anyhow::anyhow!("component `{id}`: {e}"))?;
    let inject_headers = crate::outbound::inject_headers(&settings)
        .map_err(|e| anyhow::anyhow!("component `{id}`: {e}"))?;
    let outbound = Arc::new(ComponentOutbound {
        inject_headers,
        labels: labels.clone(),
        allowed: manifest
            .allowed_hosts(id, &value_of)
            .with_context(|| format!("component `{id}`"))?,
        policy,
        settings,
        pools: services.outbound.pools(&tenant.name),
        app: app.components.clone(),
        outbound: services.outbound.clone(),
    });
    let runner = ComponentRunner::compile(
        &services.runtime,
        &wasm,
        labels,
        environment,
        app.limits.clone(),
        services.metrics.clone(),
        outbound,
    )?;
    tracing::info!(
        app = %app.name,
        component = id,
        wasi_http = runner.wasi_http_version,
        "component ready"
    );
    Ok(runner)
}
