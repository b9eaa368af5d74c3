//! Checks a deploy must pass before anything is stored: the structural ones
//! here (manifest, referenced files, policy, variables) and, through
//! [`BundleValidator`], the gateway's own (every component compiles and links
//! against what Okra provides).

use crate::error::ApiError;
use crate::model::TenantRecord;
use async_trait::async_trait;
use http::StatusCode;
use std::collections::BTreeMap;
use std::path::Path;
use tenant_config::paths::{PathError, PathScope, resolve_inside};
use tenant_config::policy::{Policy, ScopeLevel};
use tenant_config::{AppManifest, AppVariables};

/// What a structurally valid bundle declares.
#[derive(Debug)]
pub struct BundleSummary {
    /// `[application] name`.
    pub name: String,
    /// Public routes, for display.
    pub routes: Vec<String>,
    /// What the manifest asks for that Okra does not serve.
    pub warnings: Vec<String>,
    /// The application variables the manifest declares.
    pub variables: Vec<String>,
    /// Components that list `sqlite_databases` (node-local data).
    pub sqlite_components: Vec<String>,
}

/// A deeper check of an unpacked bundle, supplied by whoever can run wasm.
#[async_trait]
pub trait BundleValidator: Send + Sync {
    /// Refuses with a message naming the component and the problem.
    async fn validate(
        &self,
        tenant: &TenantRecord,
        manifest: &Path,
        variables: &BTreeMap<String, String>,
    ) -> Result<(), String>;
}

/// A validator that adds nothing to the structural checks.
pub struct StructuralOnly;

#[async_trait]
impl BundleValidator for StructuralOnly {
    async fn validate(
        &self,
        _: &TenantRecord,
        _: &Path,
        _: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        Ok(())
    }
}

fn invalid(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// Checks an unpacked bundle in `dir`: the manifest parses (errors carry
/// `spin.toml:LINE:COLUMN`), every referenced file is in the bundle, the
/// policy compiles, and every required variable has a value.
pub fn structural_check(
    dir: &Path,
    variables: &BTreeMap<String, String>,
) -> Result<BundleSummary, ApiError> {
    let text = std::fs::read_to_string(dir.join(crate::bundle::MANIFEST))
        .map_err(|e| invalid("invalid_manifest", format!("spin.toml: {e}")))?;
    let manifest = AppManifest::parse_in(
        &text,
        Path::new(crate::bundle::MANIFEST),
        dir,
        PathScope::InsideApp,
    )
    .map_err(|e| invalid("invalid_manifest", e.to_string()))?;
    let shown = |path: &Path| path.strip_prefix(dir).unwrap_or(path).display().to_string();
    for (id, component) in &manifest.components {
        if !component.source.is_file() {
            return Err(invalid(
                "missing_file",
                format!(
                    "component `{id}`: source {} is not in the bundle (build it before deploying)",
                    shown(&component.source)
                ),
            ));
        }
        inside_bundle(dir, &component.source).map_err(|why| {
            invalid(
                "invalid_manifest",
                format!("component `{id}`: source {why}"),
            )
        })?;
        for mount in &component.files {
            if !mount.host_path.exists() {
                return Err(invalid(
                    "missing_file",
                    format!(
                        "component `{id}`: files source {} is not in the bundle",
                        shown(&mount.host_path)
                    ),
                ));
            }
            inside_bundle(dir, &mount.host_path).map_err(|why| {
                invalid(
                    "invalid_manifest",
                    format!("component `{id}`: files source {why}"),
                )
            })?;
        }
    }
    let policy_path = dir.join(crate::bundle::POLICY);
    if policy_path.exists() {
        let text = std::fs::read_to_string(&policy_path)
            .map_err(|e| invalid("invalid_policy", format!("okra.json: {e}")))?;
        let policy = Policy::parse(
            &text,
            Path::new(crate::bundle::POLICY),
            ScopeLevel::App,
            &format!("app {}", manifest.name),
        )
        .map_err(|e| invalid("invalid_policy", e.to_string()))?;
        if let Some(unknown) = policy
            .services
            .keys()
            .find(|c| !manifest.components.contains_key(*c))
        {
            return Err(invalid(
                "invalid_policy",
                format!(
                    "okra.json: key `services.{unknown}`: the app has no component `{unknown}`"
                ),
            ));
        }
    }
    for (id, component) in &manifest.components {
        if let Some(why) = component
            .key_value_stores
            .iter()
            .find_map(|label| okra_kv::check_store_label(label).err())
        {
            return Err(invalid(
                "invalid_manifest",
                format!("spin.toml: key `component.{id}.key_value_stores`: {why}"),
            ));
        }
        if let Some(label) = component
            .sqlite_databases
            .iter()
            .find(|label| !tenant_config::manifest::is_database_label(label))
        {
            return Err(invalid(
                "invalid_manifest",
                format!(
                    "spin.toml: key `component.{id}.sqlite_databases`: {label:?} is not a database label; use 1 to 64 lowercase letters, digits, `_` or `-`"
                ),
            ));
        }
    }
    if manifest.http_triggers.is_empty() {
        let mut why = manifest.warnings.clone();
        why.push("with no [[trigger.http]], this app has nothing Okra can serve".into());
        return Err(invalid("invalid_manifest", why.join("; ")));
    }
    let provider = |name: &str| variables.get(name).cloned();
    AppVariables::resolve(&manifest, provider).map_err(|e| {
        invalid(
            "missing_variable",
            format!("{e} (for a deploy: `okra deploy --var NAME=VALUE`, `okra vars set`, or PUT .../variables)"),
        )
    })?;
    Ok(BundleSummary {
        name: manifest.name.clone(),
        routes: manifest
            .http_triggers
            .iter()
            .filter_map(|t| t.route.as_ref().map(|r| r.raw().to_string()))
            .collect(),
        warnings: manifest.warnings.clone(),
        variables: manifest.variables.keys().cloned().collect(),
        sqlite_components: manifest
            .components
            .iter()
            .filter(|(_, c)| !c.sqlite_databases.is_empty())
            .map(|(id, _)| id.clone())
            .collect(),
    })
}

/// Refuses a path that resolves (symlinks included) outside the bundle.
fn inside_bundle(dir: &Path, path: &Path) -> Result<(), String> {
    // The reason is told without the server's own paths.
    resolve_inside(dir, path).map(|_| ()).map_err(|why| {
        let shown = path.strip_prefix(dir).unwrap_or(path).display();
        match why {
            PathError::Outside { .. } => format!("{shown} resolves outside the bundle"),
            _ => format!("{shown} cannot be resolved inside the bundle"),
        }
    })
}

/// Checks a tenant-wide policy document.
pub fn check_tenant_policy(tenant: &str, text: &str) -> Result<(), ApiError> {
    Policy::parse(
        text,
        Path::new("policy"),
        ScopeLevel::Tenant,
        &format!("tenant {tenant}"),
    )
    .map(|_| ())
    .map_err(|e| invalid("invalid_policy", e.to_string()))
}
