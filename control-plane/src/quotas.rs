//! What one tenant may keep in the store: apps, versions of each, variables
//! and their size, custom domains, and the size of its policy. Every change
//! the API makes is checked against these before it is written, so one
//! tenant can never grow the store (and every other tenant's API calls)
//! without bound.

use crate::model::{AppRecord, TenantRecord};
use crate::store::Rejection;
use serde::{Deserialize, Serialize};

/// The operator's quotas, the same for every tenant (`[quotas]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Apps a tenant may have, deployed or not.
    pub max_apps: usize,
    /// Versions of an app kept for rollback, the serving one included; a
    /// deploy past this drops the oldest.
    pub versions_kept: usize,
    /// Variables set on one app.
    pub max_variables: usize,
    /// Bytes of one app's variable names and values together.
    pub max_variable_bytes: usize,
    /// Custom domains one tenant may hold across its apps.
    pub max_domains: usize,
    /// Bytes of a tenant's policy document.
    pub max_policy_bytes: usize,
    /// Bytes of every version a tenant's apps keep, bundles together.
    pub max_stored_bytes: u64,
    /// Files of every version a tenant's apps keep, together: each is a
    /// line of its record.
    pub max_stored_files: usize,
    /// The longest key-value key, in bytes.
    pub max_kv_key_bytes: usize,
    /// The largest key-value value, in bytes.
    pub max_kv_value_bytes: usize,
    /// Key-value keys a tenant may hold, over all its apps and stores.
    pub max_kv_keys: u64,
    /// Bytes of key-value keys and values a tenant may hold, together.
    pub max_kv_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        let kv = okra_kv::Quota::default();
        Quotas {
            max_apps: 100,
            versions_kept: 10,
            max_variables: 100,
            max_variable_bytes: 64 << 10,
            max_domains: 20,
            max_policy_bytes: 64 << 10,
            max_stored_bytes: 1 << 30,
            max_stored_files: 50_000,
            max_kv_key_bytes: kv.max_key_bytes,
            max_kv_value_bytes: kv.max_value_bytes,
            max_kv_keys: kv.max_keys,
            max_kv_bytes: kv.max_bytes,
        }
    }
}

/// The flags of `[quotas]` in the operator's configuration, named after its
/// keys; a flag not given leaves the file's value.
#[derive(Clone, Debug, Default, clap::Args, Serialize)]
pub struct QuotaArgs {
    /// Apps a tenant may have, deployed or not.
    #[arg(long, env = "OKRA_MAX_APPS")]
    pub max_apps: Option<usize>,
    /// Versions of each app kept for rollback, the serving one included.
    #[arg(long, env = "OKRA_VERSIONS_KEPT")]
    pub versions_kept: Option<usize>,
    /// Variables set on one app.
    #[arg(long, env = "OKRA_MAX_VARIABLES")]
    pub max_variables: Option<usize>,
    /// Bytes of one app's variable names and values together.
    #[arg(long, env = "OKRA_MAX_VARIABLE_BYTES")]
    pub max_variable_bytes: Option<usize>,
    /// Custom domains one tenant may hold.
    #[arg(long, env = "OKRA_MAX_DOMAINS")]
    pub max_domains: Option<usize>,
    /// Bytes of a tenant's policy document.
    #[arg(long, env = "OKRA_MAX_POLICY_BYTES")]
    pub max_policy_bytes: Option<usize>,
    /// Bytes of every version a tenant keeps, bundles together.
    #[arg(long, env = "OKRA_MAX_STORED_BYTES")]
    pub max_stored_bytes: Option<u64>,
    /// Files of every version a tenant keeps, together.
    #[arg(long, env = "OKRA_MAX_STORED_FILES")]
    pub max_stored_files: Option<usize>,
    /// The longest key-value key, in bytes.
    #[arg(long, env = "OKRA_MAX_KV_KEY_BYTES")]
    pub max_kv_key_bytes: Option<usize>,
    /// The largest key-value value, in bytes.
    #[arg(long, env = "OKRA_MAX_KV_VALUE_BYTES")]
    pub max_kv_value_bytes: Option<usize>,
    /// Key-value keys a tenant may hold, over all its apps and stores.
    #[arg(long, env = "OKRA_MAX_KV_KEYS")]
    pub max_kv_keys: Option<u64>,
    /// Bytes of key-value keys and values a tenant may hold, together.
    #[arg(long, env = "OKRA_MAX_KV_BYTES")]
    pub max_kv_bytes: Option<u64>,
}

fn over(message: String) -> Rejection {
    Rejection::Quota(message)
}

impl Quotas {
    /// What each tenant may keep in apps' key-value stores.
    pub fn key_value(&self) -> okra_kv::Quota {
        okra_kv::Quota {
            max_key_bytes: self.max_kv_key_bytes,
            max_value_bytes: self.max_kv_value_bytes,
            max_keys: self.max_kv_keys,
            max_bytes: self.max_kv_bytes,
        }
    }

    /// Refuses a tenant with more apps than allowed.
    pub fn check_apps(&self, tenant: &TenantRecord) -> Result<(), Rejection> {
        if tenant.apps.len() > self.max_apps {
            return Err(over(format!(
                "tenant {:?} may have at most {} apps; delete one first (DELETE .../apps/APP?purge=true)",
                tenant.name, self.max_apps
            )));
        }
        Ok(())
    }

    /// Refuses an app with more variables, or bigger ones, than allowed.
    pub fn check_variables(&self, app: &AppRecord) -> Result<(), Rejection> {
        if app.variables.len() > self.max_variables {
            return Err(over(format!(
                "app {:?} may have at most {} variables set",
                app.name, self.max_variables
            )));
        }
        let bytes: usize = app.variables.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > self.max_variable_bytes {
            return Err(over(format!(
                "app {:?}'s variables would take {bytes} bytes; at most {} are allowed",
                app.name, self.max_variable_bytes
            )));
        }
        Ok(())
    }

    /// Refuses a tenant holding more custom domains than allowed.
    pub fn check_domains(&self, tenant: &TenantRecord) -> Result<(), Rejection> {
        let held: usize = tenant.apps.values().map(|a| a.domains.len()).sum();
        if held > self.max_domains {
            return Err(over(format!(
                "tenant {:?} may hold at most {} custom domains; remove one first",
                tenant.name, self.max_domains
            )));
        }
        Ok(())
    }

    /// Refuses a policy document larger than allowed.
    pub fn check_policy(&self, text: &str) -> Result<(), Rejection> {
        if text.len() > self.max_policy_bytes {
            return Err(over(format!(
                "the policy is {} bytes; at most {} are allowed",
                text.len(),
                self.max_policy_bytes
            )));
        }
        Ok(())
    }

    /// Refuses a tenant whose kept versions hold more bytes or files than
    /// allowed.
    pub fn check_stored(&self, tenant: &TenantRecord) -> Result<(), Rejection> {
        let versions = tenant.apps.values().flat_map(|a| a.versions.values());
        let (bytes, files) = versions.fold((0u64, 0usize), |(b, f), v| {
            (b.saturating_add(v.bytes), f + v.files.len())
        });
        if bytes > self.max_stored_bytes {
            return Err(over(format!(
                "tenant {:?}'s kept versions would hold {bytes} bytes; at most {} are allowed (delete an app, or keep fewer versions)",
                tenant.name, self.max_stored_bytes
            )));
        }
        if files > self.max_stored_files {
            return Err(over(format!(
                "tenant {:?}'s kept versions would hold {files} files; at most {} are allowed",
                tenant.name, self.max_stored_files
            )));
        }
        Ok(())
    }

    /// Drops an app's oldest versions past `versions_kept`, never the one
    /// it serves. Returns the versions dropped.
    pub fn prune_versions(&self, app: &mut AppRecord) -> Vec<u64> {
        let keep = self.versions_kept.max(1);
        let mut dropped = Vec::new();
        while app.versions.len() > keep {
            let Some(oldest) = app
                .versions
                .keys()
                .copied()
                .find(|v| Some(*v) != app.current)
            else {
                break;
            };
            app.versions.remove(&oldest);
            dropped.push(oldest);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::VersionRecord;

    #[test]
    fn the_oldest_versions_go_but_never_the_serving_one() {
        let quotas = Quotas {
            versions_kept: 3,
            ..Quotas::default()
        };
        let mut app = AppRecord {
            name: "web".into(),
            current: Some(1),
            ..AppRecord::default()
        };
        for v in 1..=5 {
            app.versions.insert(
                v,
                VersionRecord {
                    version: v,
                    ..VersionRecord::default()
                },
            );
        }
        assert_eq!(quotas.prune_versions(&mut app), [2, 3]);
        assert_eq!(app.versions.keys().copied().collect::<Vec<_>>(), [1, 4, 5]);
    }

    #[test]
    fn counts_and_sizes_are_refused_past_their_quota() {
        let quotas = Quotas {
            max_variables: 2,
            max_variable_bytes: 10,
            max_apps: 1,
            max_domains: 1,
            max_policy_bytes: 4,
            ..Quotas::default()
        };
        let mut app = AppRecord {
            name: "web".into(),
            ..AppRecord::default()
        };
        app.variables.insert("a".into(), "1".into());
        assert!(quotas.check_variables(&app).is_ok());
        app.variables.insert("b".into(), "123456789".into());
        assert!(
            matches!(quotas.check_variables(&app), Err(Rejection::Quota(m)) if m.contains("bytes"))
        );
        app.variables.insert("c".into(), String::new());
        assert!(
            matches!(quotas.check_variables(&app), Err(Rejection::Quota(m)) if m.contains("at most 2"))
        );
        let mut tenant = TenantRecord {
            name: "acme".into(),
            ..TenantRecord::default()
        };
        tenant.apps.insert("web".into(), app.clone());
        assert!(quotas.check_apps(&tenant).is_ok());
        tenant.apps.insert("api".into(), app);
        assert!(quotas.check_apps(&tenant).is_err());
        let web = tenant.apps.get_mut("web").unwrap();
        web.domains.insert("a.example".into());
        web.domains.insert("b.example".into());
        assert!(quotas.check_domains(&tenant).is_err());
        assert!(quotas.check_policy("{}").is_ok());
        assert!(quotas.check_policy("{\"x\":1}").is_err());
    }
}
