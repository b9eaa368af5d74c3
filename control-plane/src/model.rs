//! The configuration every gateway serves, as the stores keep it: tenants,
//! their apps with every deployed version, variables, custom domains, limits
//! and policies, under one global version that every change bumps.
//!
//! Each tenant is one record, written whole and atomically, so a change to
//! one tenant costs the same however many others there are; [`State`] is all
//! of them at one version, as a gateway holds them. Bundle files are not in
//! it: versions name them by content hash, and the store keeps the bytes as
//! blobs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use tenant_config::Limits;

/// Everything configured, at one global version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Bumped by every change; gateways compare it to know they are current.
    pub version: u64,
    /// Every tenant, by name.
    pub tenants: BTreeMap<String, TenantRecord>,
}

/// One tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantRecord {
    /// The tenant's name: a DNS label, unique among tenants.
    pub name: String,
    /// A random id given at creation: data kept outside the record (an
    /// app's key-value stores) belongs to it, so a tenant created later
    /// under the same name never sees it. Empty in records written before
    /// ids existed, where the name stands in ([`TenantRecord::data_id`]).
    pub id: String,
    /// The global version of the change that last wrote this record.
    pub version: u64,
    /// SHA-256 (hex) of the tenant's bearer token; the token itself is never stored.
    pub token_hash: String,
    /// Overrides the operator's default limits, when set.
    pub limits: Option<Limits>,
    /// The tenant-wide outbound policy, as the okra.json text the tenant sent.
    pub policy: Option<String>,
    /// The tenant's apps, by name.
    pub apps: BTreeMap<String, AppRecord>,
}

/// One app of a tenant, with its history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppRecord {
    /// The app's name: a DNS label, unique within its tenant.
    pub name: String,
    /// A random id given at creation, as [`TenantRecord::id`]: an app
    /// purged and deployed again under its name starts with no data.
    pub id: String,
    /// The version being served; `None` once the app is undeployed.
    pub current: Option<u64>,
    /// The number the next deploy gets: versions are never reused.
    pub next_version: u64,
    /// The versions kept (older ones are pruned), by number.
    pub versions: BTreeMap<u64, VersionRecord>,
    /// Variable values set through the API (write-only: never read back).
    pub variables: BTreeMap<String, String>,
    /// Custom hostnames, normalised (lowercase ASCII, IDNA).
    pub domains: BTreeSet<String>,
}

/// One immutable deployed version of an app.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionRecord {
    /// The version's number within its app, counting from 1.
    pub version: u64,
    /// Every file of the bundle: relative path → SHA-256 of its bytes.
    pub files: BTreeMap<String, String>,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
    /// The public routes the manifest declares, for display.
    pub routes: Vec<String>,
    /// The bundle's size, its files' bytes together.
    pub bytes: u64,
}

impl VersionRecord {
    /// Identifies the bundle's content: equal for byte-identical bundles.
    pub fn bundle_id(&self) -> String {
        bundle_id(&self.files)
    }
}

/// The content id of a set of bundle files.
pub fn bundle_id(files: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for (path, blob) in files {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(blob.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// A fresh random id: 128 bits, hex.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Not seen on Linux; still unique: the time and a process counter.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes = (nanos ^ (u128::from(count) << 96)).to_le_bytes();
    }
    hex::encode(bytes)
}

/// A record's id, or its name when it predates ids.
fn id_or_name<'a>(id: &'a str, name: &'a str) -> &'a str {
    if id.is_empty() { name } else { id }
}

impl TenantRecord {
    /// What the tenant's data outside the store is keyed by: its id, or
    /// its name in a record from before ids.
    pub fn data_id(&self) -> &str {
        id_or_name(&self.id, &self.name)
    }
}

impl AppRecord {
    /// What the app's data outside the store is keyed by, as
    /// [`TenantRecord::data_id`].
    pub fn data_id(&self) -> &str {
        id_or_name(&self.id, &self.name)
    }

    /// The version being served, if the app is deployed.
    pub fn current_version(&self) -> Option<&VersionRecord> {
        self.current.and_then(|v| self.versions.get(&v))
    }
}

impl State {
    /// Every app being served, with its tenant.
    pub fn serving(&self) -> impl Iterator<Item = (&TenantRecord, &AppRecord, &VersionRecord)> {
        self.tenants.values().flat_map(|tenant| {
            tenant
                .apps
                .values()
                .filter_map(move |app| app.current_version().map(|v| (tenant, app, v)))
        })
    }
}

/// The tenant the operator's own `--app` apps run as; no stored tenant may
/// take the name (it would share their concurrency, CPU turns and metrics).
pub const OPERATOR_TENANT: &str = "local";

/// Checks a tenant or app name: it becomes a DNS label of the default
/// hostname, so 1–63 of `a-z`, `0-9` and `-`, not starting or ending with `-`.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} name {name:?} is not valid: use 1-63 lowercase letters, digits and '-', not starting or ending with '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for good in ["acme", "a", "team-7", &"a".repeat(63)] {
            assert!(validate_name("tenant", good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "-a", "a-", "a.b", "a_b", "ü", &"a".repeat(64)] {
            let err = validate_name("tenant", bad).unwrap_err();
            assert!(err.contains("tenant name"), "{err}");
        }
    }

    #[test]
    fn bundle_ids_depend_on_paths_and_content() {
        let mut a = BTreeMap::new();
        a.insert("spin.toml".to_string(), "11".to_string());
        let mut b = a.clone();
        assert_eq!(bundle_id(&a), bundle_id(&b));
        b.insert("x.wasm".into(), "22".into());
        assert_ne!(bundle_id(&a), bundle_id(&b));
        let mut c = BTreeMap::new();
        c.insert("spin.tom".to_string(), "l11".to_string());
        assert_ne!(bundle_id(&a), bundle_id(&c));
    }
}
