//! Apps as the edge serves them: a Spin manifest turned into a route table of
//! compiled components and static responses (with its variables resolved and
//! its components linked for chaining), and the `Snapshot` that maps
//! hostnames to apps.

use crate::component::{ComponentLabels, ComponentRunner, GuestEnvironment};
use crate::inbound::JwtVerifier;
use crate::metrics::Metrics;
use crate::outbound::{AppComponents, ComponentOutbound, Outbound};
use crate::runtime::Runtime;
use anyhow::{Context as _, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use tenant_config::policy::{Policy, PolicyChain, ScopeLevel};
use tenant_config::{
    AppManifest, AppVariables, Limits, RouteTable, StaticResponse, TriggerHandler,
};
use tokio::sync::Semaphore;

/// What a route leads to.
pub enum RouteTarget {
    Component(Arc<ComponentRunner>),
    Static(Arc<StaticResponse>),
}

/// What every app of the gateway shares.
pub struct AppServices {
    pub runtime: Runtime,
    pub metrics: Arc<Metrics>,
    pub outbound: Arc<Outbound>,
}

/// One deployed app.
pub struct App {
    pub tenant: String,
    pub name: String,
    pub routes: RouteTable<RouteTarget>,
    pub limits: Limits,
    /// Caps the tenant's requests in flight.
    pub inflight: Arc<Semaphore>,
    /// Verifies inbound bearer tokens, when the tenant configured keys.
    pub verifier: Option<Arc<JwtVerifier>>,
    /// Every component a trigger names, private ones included; chaining
    /// reaches them through weak links, so this map keeps them alive.
    pub components: BTreeMap<String, Arc<ComponentRunner>>,
}

/// Where variable values come from, before the manifest defaults.
pub type VariableProvider<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The tenant an app is loaded for.
pub struct TenantSpec {
    pub name: String,
    pub limits: Limits,
    /// The tenant's outbound policy from the store; when `None`, the
    /// operator's `--tenant-policy` file for this tenant (if any) applies.
    pub policy: Option<Arc<Policy>>,
}

impl TenantSpec {
    /// Policy scopes every component of the tenant starts from: the
    /// operator's global policy, then the tenant's.
    fn scopes(&self, outbound: &Outbound) -> Vec<Arc<tenant_config::policy::Scope>> {
        match &self.policy {
            Some(policy) => outbound
                .global_scopes()
                .into_iter()
                .chain([policy.scope.clone()])
                .collect(),
            None => outbound.tenant_scopes(&self.name),
        }
    }

    fn verifier(&self, outbound: &Outbound) -> anyhow::Result<Option<Arc<JwtVerifier>>> {
        match &self.policy {
            Some(policy) => match &policy.auth {
                Some(auth) => Ok(Some(Arc::new(
                    JwtVerifier::new(auth).context("the tenant policy's auth keys")?,
                ))),
                None => Ok(None),
            },
            None => Ok(outbound.verifier(&self.name)),
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
}

impl App {
    /// Loads `spin.toml`, resolves its variables (`provider` first, then
    /// defaults) and compiles every component a trigger names.
    pub fn load(
        services: &AppServices,
        tenant: &TenantSpec,
        manifest_path: &Path,
        provider: VariableProvider<'_>,
    ) -> anyhow::Result<App> {
        let limits = tenant.limits.clone();
        let most = services.runtime.config.max_memory_bytes;
        if limits.memory_bytes > most {
            bail!(
                "tenant {}: memory limit {} bytes is more than this gateway's pool slots hold ({most} bytes, --max-memory-bytes)",
                tenant.name,
                limits.memory_bytes
            );
        }
        let manifest = AppManifest::load(manifest_path)?;
        let policy = load_app_policy(manifest_path, &manifest)?;
        let variables = AppVariables::resolve(&manifest, provider)
            .with_context(|| format!("{}", manifest_path.display()))?;
        let inflight = Arc::new(Semaphore::new(limits.max_concurrent_requests as usize));
        let components = AppComponents::new(inflight.clone());
        let app = AppContext {
            tenant,
            manifest: &manifest,
            policy: policy.as_ref(),
            variables: &variables,
            limits: &limits,
            components: &components,
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
            name: manifest.name.clone(),
            routes: RouteTable::new(routes),
            inflight,
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
    let wasm = std::fs::read(&component.source).with_context(|| {
        format!(
            "component `{id}`: cannot read source {} (build it first)",
            component.source.display()
        )
    })?;
    let mut dirs = Vec::new();
    for mount in &component.files {
        if !mount.host_path.is_dir() {
            bail!(
                "component `{id}`: files entry {} must be an existing directory (glob patterns and single files are not supported yet)",
                mount.host_path.display()
            );
        }
        dirs.push((mount.host_path.clone(), mount.guest_path.clone()));
    }
    let labels = ComponentLabels {
        tenant: tenant.name.clone(),
        app: manifest.name.clone(),
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
    let outbound = Arc::new(ComponentOutbound {
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
        app = %manifest.name,
        component = id,
        wasi_http = runner.wasi_http_version,
        "component ready"
    );
    Ok(runner)
}

/// The host that matches any `Host` no other app claims.
pub const ANY_HOST: &str = "*";

/// Every app the gateway serves, by hostname (lowercase, no port).
#[derive(Default)]
pub struct Snapshot {
    apps: HashMap<String, Arc<App>>,
}

impl Snapshot {
    pub fn insert(&mut self, host: &str, app: Arc<App>) {
        self.apps.insert(host.to_ascii_lowercase(), app);
    }

    /// The app for a `Host` header value: port stripped, case-insensitive;
    /// else the app given for host `*`, if any (`okra up`).
    pub fn lookup(&self, host: &str) -> Option<&Arc<App>> {
        let name = host_without_port(host);
        let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.apps.get(&name.to_ascii_lowercase())
        } else {
            self.apps.get(name)
        };
        found.or_else(|| self.apps.get(ANY_HOST))
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`; trailing dot dropped.
pub fn host_without_port(host: &str) -> &str {
    let host = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("hello.localhost:8080"), "hello.localhost");
        assert_eq!(host_without_port("hello.localhost"), "hello.localhost");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("example.com."), "example.com");
    }
}
