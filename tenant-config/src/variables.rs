//! Application variables as Spin resolves them:
//! every `[variables]` entry takes the first value a provider has, else its
//! `default`; a `required` variable no provider answers fails the load,
//! naming it. Each component then sees only its own
//! `[component.<id>.variables]` keys, with their templates filled in.
//!
//! Values of `secret = true` variables are held as [`VariableValue`]s whose
//! `Debug` never shows them, so they cannot leak through logs or errors.

use crate::manifest::AppManifest;
pub use crate::manifest::validate_variable_name;
use crate::template::{render, template_references};
use std::collections::BTreeMap;
use std::fmt;

/// A resolved value; `secret` ones print as `<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct VariableValue {
    value: String,
    secret: bool,
}

impl VariableValue {
    /// A value, hidden from `Debug` when `secret`.
    pub fn new(value: String, secret: bool) -> Self {
        VariableValue { value, secret }
    }

    /// The value itself: for the guest only, never for logs.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Whether the value comes from a `secret = true` variable.
    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl fmt::Debug for VariableValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            f.write_str("<secret>")
        } else {
            fmt::Debug::fmt(&self.value, f)
        }
    }
}

/// Every app variable with its value.
#[derive(Clone, Debug, Default)]
pub struct AppVariables {
    values: BTreeMap<String, VariableValue>,
}

/// Why variables could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    /// A `required` variable that no provider gave a value.
    #[error(
        "variable `{0}` is required but has no value; set it with --var {0}=VALUE, OKRA_VARIABLE_{upper}, or the tenant's variables",
        upper = .0.to_ascii_uppercase()
    )]
    MissingRequired(String),
    /// A component variable's template could not be filled in.
    #[error("component `{component}` variable `{key}`: {reason}")]
    Template {
        /// The component's id.
        component: String,
        /// The key under `[component.<id>.variables]`.
        key: String,
        /// What went wrong filling in the template.
        reason: String,
    },
    /// Variables were asked for a component id the manifest does not define.
    #[error("the app has no component `{0}`")]
    NoComponent(String),
}

impl AppVariables {
    /// Resolves `[variables]`: `provider(name)` first, then the default.
    pub fn resolve(
        manifest: &AppManifest,
        provider: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, VariableError> {
        let mut values = BTreeMap::new();
        for (name, declared) in &manifest.variables {
            let value = provider(name)
                .or_else(|| declared.default.clone())
                .ok_or_else(|| VariableError::MissingRequired(name.clone()))?;
            values.insert(name.clone(), VariableValue::new(value, declared.secret));
        }
        Ok(AppVariables { values })
    }

    /// An app variable's value, for templates the host fills in (allowed
    /// hosts, policy headers).
    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).map(|v| v.value.clone())
    }

    /// The variables component `id` may read: its own keys, templates
    /// filled. A key is secret when any variable it uses is.
    pub fn for_component(
        &self,
        manifest: &AppManifest,
        id: &str,
    ) -> Result<BTreeMap<String, VariableValue>, VariableError> {
        let component = manifest
            .components
            .get(id)
            .ok_or_else(|| VariableError::NoComponent(id.to_string()))?;
        let mut out = BTreeMap::new();
        for (key, template) in &component.variables {
            let secret = template_references(template)
                .iter()
                .any(|name| self.values.get(name).is_some_and(|v| v.secret));
            let value = render(template, |name| self.get(name));
            let value = value.map_err(|e| VariableError::Template {
                component: id.to_string(),
                key: key.clone(),
                reason: e.to_string(),
            })?;
            out.insert(key.clone(), VariableValue::new(value, secret));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> AppManifest {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spin.toml");
        std::fs::write(
            &path,
            r#"spin_manifest_version = 2
[application]
name = "vars"
[variables]
api_host = { default = "books.example" }
token = { required = true, secret = true }
greeting = { default = "hi" }
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "web.wasm"
[component.web.variables]
api_url = "https://{{ api_host }}/v1"
auth = "Bearer {{ token }}"
plain = "literal"
"#,
        )
        .unwrap();
        AppManifest::load(&path).unwrap()
    }

    #[test]
    fn providers_beat_defaults_and_required_ones_must_be_set() {
        let m = manifest();
        let e = AppVariables::resolve(&m, |_| None).unwrap_err();
        assert_eq!(e, VariableError::MissingRequired("token".into()));
        assert!(e.to_string().contains("OKRA_VARIABLE_TOKEN"), "{e}");

        let vars = AppVariables::resolve(&m, |n| match n {
            "token" => Some("s3cret".into()),
            "api_host" => Some("override.example".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(vars.get("greeting").as_deref(), Some("hi"));
        let web = vars.for_component(&m, "web").unwrap();
        assert_eq!(web["api_url"].expose(), "https://override.example/v1");
        assert_eq!(web["plain"].expose(), "literal");
        assert!(web["auth"].is_secret() && !web["api_url"].is_secret());
        // Only declared component keys exist: app variables are not readable directly.
        assert!(!web.contains_key("greeting") && !web.contains_key("token"));
    }

    #[test]
    fn secrets_never_print() {
        let m = manifest();
        let vars = AppVariables::resolve(&m, |n| (n == "token").then(|| "s3cret".into())).unwrap();
        let web = vars.for_component(&m, "web").unwrap();
        for printed in [format!("{vars:?}"), format!("{web:?}")] {
            assert!(!printed.contains("s3cret"), "{printed}");
            assert!(printed.contains("<secret>"), "{printed}");
        }
        assert!(format!("{web:?}").contains("books.example"));
    }

    #[test]
    fn names_follow_spins_rule() {
        for good in ["a", "api_url", "v2", "a_b_c9"] {
            assert!(validate_variable_name(good).is_ok(), "{good}");
        }
        for bad in ["", "A", "1a", "a_", "a__b", "a-b", "api.url", "_a"] {
            assert!(validate_variable_name(bad).is_err(), "{bad}");
        }
    }
}
