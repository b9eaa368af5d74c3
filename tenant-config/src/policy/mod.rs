//! Okra's outbound policy (`http.fetch`): documents loaded from `okra.json`
//! (app scope, with per-component `services`), a tenant file and an operator
//! file; compiled once (CEL included) into [`Scope`]s; and a [`PolicyChain`]
//! per component that every outbound request must pass scope by scope.
//!
//! Combining scopes: a request must pass every scope; for injected headers
//! the narrowest scope wins; for timeouts and body limits the minimum applies;
//! `audit` is on if any scope turns it on; `enableTracing` follows the
//! narrowest scope that sets it.

mod condition;
mod document;
#[cfg(test)]
mod tests;

pub use condition::{Condition, RequestFacts};
pub use document::{AuthKeys, FetchConfig, PolicyDocument, json_schema};

use crate::allowed_hosts::{AllowedHost, AllowedHosts, AppContext, OutboundUrl, with_web_schemes};
use crate::template;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which level a policy file sits at; decides which keys it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeLevel {
    /// The operator's policy, which applies to every tenant.
    Operator,
    /// A tenant's policy, the only level that may hold `auth` keys.
    Tenant,
    /// An app's `okra.json`, the only level that may hold `services`.
    App,
}

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct PolicyError {
    /// The policy file at fault.
    pub file: PathBuf,
    /// What is wrong with it; for bad JSON, with the line and column.
    pub message: String,
}

/// One loaded policy file.
#[derive(Debug)]
pub struct Policy {
    /// The file's own (top-level) scope.
    pub scope: Arc<Scope>,
    /// Component scopes, from `services` (app files only).
    pub services: BTreeMap<String, Arc<Scope>>,
    /// Inbound JWT keys (tenant files only).
    pub auth: Option<AuthKeys>,
}

impl Policy {
    /// Reads and compiles `path`; `name` labels the scope in denials (e.g. `tenant acme`).
    pub fn load(path: &Path, level: ScopeLevel, name: &str) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Policy::parse(&text, path, level, name)
    }

    /// Parses and compiles policy JSON; `file` names it in errors.
    pub fn parse(
        text: &str,
        file: &Path,
        level: ScopeLevel,
        name: &str,
    ) -> Result<Policy, PolicyError> {
        let error = |message: String| PolicyError {
            file: file.to_path_buf(),
            message,
        };
        // A derived struct would also accept a JSON array, field by field.
        if !text.trim_start().starts_with('{') {
            return Err(error(
                "a policy is a JSON object such as {\"policy.http.fetch.allowMethods\": [\"GET\"]}"
                    .into(),
            ));
        }
        let doc: PolicyDocument = serde_json::from_str(text).map_err(|e| {
            error(format!(
                "line {}, column {}: {}",
                e.line(),
                e.column(),
                e.to_string().split(" at line ").next().unwrap_or_default()
            ))
        })?;
        if level != ScopeLevel::App && !doc.services.is_empty() {
            return Err(error(
                "key `services`: per-component overrides belong in an app's okra.json".into(),
            ));
        }
        if level != ScopeLevel::Tenant && doc.auth.is_some() {
            return Err(error(
                "key `auth`: JWT keys belong in the tenant's policy, not here".into(),
            ));
        }
        let scope = Scope::compile(&doc, name, "").map_err(error)?;
        let mut services = BTreeMap::new();
        for (component, service) in &doc.services {
            let prefix = format!("services.{component}.");
            if !service.services.is_empty() || service.auth.is_some() {
                return Err(error(format!(
                    "key `{prefix}`: a service entry takes policy keys and `http.fetch` only"
                )));
            }
            let scope = Scope::compile(service, &format!("component {component}"), &prefix)
                .map_err(error)?;
            services.insert(component.clone(), Arc::new(scope));
        }
        Ok(Policy {
            scope: Arc::new(scope),
            services,
            auth: doc.auth,
        })
    }
}

/// One scope, compiled.
#[derive(Debug, Default)]
pub struct Scope {
    /// Names the scope in denials and audit records, e.g. `app shop`.
    pub name: String,
    allowed_sites: Vec<AllowedHosts>,
    allow_methods: Option<Vec<String>>,
    condition: Option<Condition>,
    max_timeout_ms: Option<u64>,
    required_headers: Vec<String>,
    audit: bool,
    inject_headers: Vec<(String, String)>,
    timeout_ms_default: Option<u64>,
    max_body_size_kb: Option<u64>,
    enable_tracing: Option<bool>,
}

/// Headers a policy may not inject or require: the transport owns them.
const TRANSPORT_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "content-length",
];

impl Scope {
    fn compile(doc: &PolicyDocument, name: &str, prefix: &str) -> Result<Scope, String> {
        let key = |k: &str| format!("key `{prefix}{k}`");
        let fetch = doc.http_fetch.clone().unwrap_or_default();
        let mut allowed_sites = Vec::new();
        for (k, sites) in [
            ("policy.http.fetch.allowedSites", &doc.allowed_sites),
            ("http.fetch.allowedSites", &fetch.allowed_sites),
        ] {
            if let Some(sites) = sites {
                allowed_sites.push(compile_sites(sites).map_err(|e| format!("{}: {e}", key(k)))?);
            }
        }
        let allow_methods = match &doc.allow_methods {
            Some(methods) => {
                let mut out = Vec::new();
                for m in methods {
                    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                        return Err(format!(
                            "{}: {m:?} is not an HTTP method such as \"GET\"",
                            key("policy.http.fetch.allowMethods")
                        ));
                    }
                    out.push(m.to_ascii_uppercase());
                }
                Some(out)
            }
            None => None,
        };
        let condition = match &doc.condition {
            Some(source) => Some(
                Condition::compile(source)
                    .map_err(|e| format!("{}: {e}", key("policy.http.fetch.condition")))?,
            ),
            None => None,
        };
        let mut required_headers = Vec::new();
        for h in doc.required_headers.iter().flatten() {
            required_headers.push(
                header_name(h)
                    .map_err(|e| format!("{}: {e}", key("policy.http.fetch.requiredHeaders")))?,
            );
        }
        let mut inject_headers = Vec::new();
        for (h, value) in &fetch.inject_headers {
            let name =
                header_name(h).map_err(|e| format!("{}: {e}", key("http.fetch.injectHeaders")))?;
            if value.contains(['\r', '\n']) {
                return Err(format!(
                    "{}: the value of {h:?} contains a line break",
                    key("http.fetch.injectHeaders")
                ));
            }
            inject_headers.push((name, value.clone()));
        }
        for (k, v) in [
            ("policy.http.fetch.maxTimeoutMs", doc.max_timeout_ms),
            ("http.fetch.timeoutMsDefault", fetch.timeout_ms_default),
        ] {
            if v == Some(0) {
                return Err(format!("{}: must be at least 1 (ms)", key(k)));
            }
        }
        Ok(Scope {
            name: name.to_string(),
            allowed_sites,
            allow_methods,
            condition,
            max_timeout_ms: doc.max_timeout_ms,
            required_headers,
            audit: doc.audit.unwrap_or(false),
            inject_headers,
            timeout_ms_default: fetch.timeout_ms_default,
            max_body_size_kb: fetch.max_body_size_kb,
            enable_tracing: fetch.enable_tracing,
        })
    }
}

/// `allowedSites`: any `allowed_outbound_hosts` entry, or a bare host
/// pattern such as `*.trusted.net`, which means http and https.
fn compile_sites(sites: &[String]) -> Result<AllowedHosts, String> {
    let mut entries = Vec::new();
    for site in sites {
        let variants = with_web_schemes(site);
        for variant in &variants {
            AllowedHost::parse(variant).map_err(|e| format!("site {site:?}: {}", e.reason))?;
        }
        entries.extend(variants);
    }
    let no_ids: [String; 0] = [];
    AllowedHosts::build(
        &entries,
        &AppContext {
            component_ids: &no_ids,
            variable: &|_| None,
        },
    )
    .map_err(|e| e.to_string())
}

fn header_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(format!("{name:?} is not a header name"));
    }
    let lower = name.to_ascii_lowercase();
    if TRANSPORT_HEADERS.contains(&lower.as_str()) {
        return Err(format!("{name:?} is set by the transport, not by policy"));
    }
    Ok(lower)
}

/// Why a request was refused: which scope, which rule, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The name of the scope that refused, e.g. `tenant acme`.
    pub scope: String,
    /// The policy key whose rule refused, e.g. `policy.http.fetch.allowMethods`.
    pub rule: &'static str,
    /// What the rule found wrong with the request.
    pub reason: String,
}

/// What the scopes settle between them, computed once per component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Narrowest scope wins per header; templates filled in.
    pub inject_headers: Vec<(String, String)>,
    /// Timeout for requests that set none, in ms: the smallest any scope sets.
    pub timeout_ms_default: Option<u64>,
    /// The longest timeout a request may ask for, in ms: the smallest any scope sets.
    pub max_timeout_ms: Option<u64>,
    /// Largest request or response body, in bytes: the smallest any scope sets.
    pub max_body_bytes: Option<u64>,
    /// Whether to add a `traceparent`, as the narrowest scope setting `enableTracing` says.
    pub tracing: bool,
    /// Whether to write an audit record per request: on if any scope turns it on.
    pub audit: bool,
}

/// The scopes one component's requests pass, broadest first.
#[derive(Debug, Default, Clone)]
pub struct PolicyChain {
    scopes: Vec<Arc<Scope>>,
}

impl PolicyChain {
    /// A chain of `scopes`, given broadest first (operator, tenant, app, component).
    pub fn new(scopes: Vec<Arc<Scope>>) -> Self {
        PolicyChain { scopes }
    }

    /// Whether there are no scopes, so every request passes.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Checks one request against every scope, broadest first.
    pub fn check(&self, url: &OutboundUrl, facts: &RequestFacts<'_>) -> Result<(), Denial> {
        for scope in &self.scopes {
            let deny = |rule: &'static str, reason: String| Denial {
                scope: scope.name.clone(),
                rule,
                reason,
            };
            if scope.allowed_sites.iter().any(|sites| !sites.allows(url)) {
                return Err(deny(
                    "policy.http.fetch.allowedSites",
                    format!("{url} is not an allowed site"),
                ));
            }
            if let Some(methods) = &scope.allow_methods
                && !methods.iter().any(|m| m == facts.method)
            {
                return Err(deny(
                    "policy.http.fetch.allowMethods",
                    format!("method {} is not one of {methods:?}", facts.method),
                ));
            }
            if let Some(missing) = scope
                .required_headers
                .iter()
                .find(|h| !facts.headers.iter().any(|(n, _)| n == *h))
            {
                return Err(deny(
                    "policy.http.fetch.requiredHeaders",
                    format!("header {missing:?} is required"),
                ));
            }
            if let Some(condition) = &scope.condition {
                match condition.evaluate(facts) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(deny(
                            "policy.http.fetch.condition",
                            format!("{:?} is false", condition.source),
                        ));
                    }
                    Err(e) => {
                        return Err(deny(
                            "policy.http.fetch.condition",
                            format!("{:?} failed: {e}", condition.source),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The settings every scope agrees on; injected header templates are
    /// filled from `variable` (an unknown variable is an error naming it).
    pub fn settings(&self, variable: &dyn Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let mut settings = Settings::default();
        let mut injected: BTreeMap<String, String> = BTreeMap::new();
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for scope in &self.scopes {
            for (name, value) in &scope.inject_headers {
                let value = template::render(value, variable).map_err(|e| {
                    format!("{}: http.fetch.injectHeaders {name:?}: {e}", scope.name)
                })?;
                injected.insert(name.clone(), value);
            }
            settings.timeout_ms_default =
                min(settings.timeout_ms_default, scope.timeout_ms_default);
            settings.max_timeout_ms = min(settings.max_timeout_ms, scope.max_timeout_ms);
            settings.max_body_bytes = min(
                settings.max_body_bytes,
                scope.max_body_size_kb.map(|kb| kb.saturating_mul(1024)),
            );
            if let Some(tracing) = scope.enable_tracing {
                settings.tracing = tracing;
            }
            settings.audit |= scope.audit;
        }
        settings.inject_headers = injected.into_iter().collect();
        Ok(settings)
    }
}
