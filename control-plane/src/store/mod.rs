//! Where the configuration lives: the [`Store`] trait, its two backends
//! ([`file`] for a single node, [`redis`] for a cluster) and opening one from
//! a `--store` URL.
//!
//! A store keeps one record per tenant (its apps, versions, variables,
//! domains, limits and policy), an index of custom domains so no two tenants
//! hold one, a global version that every change bumps, a log of which tenant
//! each version changed, and content-addressed blobs. A change touches one
//! tenant's record and the domains it claims or releases, so what a change
//! costs does not grow with the number of tenants; a gateway that is behind
//! reads only the tenants that changed since the version it serves
//! ([`Store::changes_since`]).

pub mod file;
pub mod redis;

use crate::model::{State, TenantRecord};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How many versions the change log reaches back; a gateway further behind
/// than this reloads everything.
pub const LOG_KEEP: usize = 10_000;

/// The tenant name a log entry gives when every tenant may have changed (a
/// migration): readers behind it reload everything.
const EVERYTHING: &str = "*";

/// A store that could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file in the data directory could not be read or written, or a
    /// blocking store task failed.
    #[error("{0}")]
    Io(String),
    /// Redis could not be reached, failed a command or gave an unexpected
    /// reply, or concurrent writes kept winning until the update gave up.
    #[error("redis: {0}")]
    Redis(String),
    /// What the store holds is not what it should be: a record, log line or
    /// legacy state that does not parse, or a name that is not valid.
    #[error("the stored state is corrupt: {0}")]
    Corrupt(String),
    /// No blob is stored under the hash asked for.
    #[error("blob {0} is missing from the store")]
    MissingBlob(String),
    /// The `--store` URL is empty, or not a valid Redis URL.
    #[error("{0}")]
    BadUrl(String),
}

/// Why a change was refused; nothing was written. The store's own words,
/// which the API maps to HTTP.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Something the change needs does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change contradicts what is stored (a name or domain taken).
    #[error("{0}")]
    Conflict(String),
    /// The change would take the tenant past one of its quotas.
    #[error("{0}")]
    Quota(String),
    /// The change is not acceptable as given; `code` says how.
    #[error("{message}")]
    Invalid {
        /// The API error code to answer with, such as `invalid_name`.
        code: &'static str,
        /// What is wrong, for the client.
        message: String,
    },
}

/// Why an update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The change was refused; nothing was written.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The store itself failed (I/O, Redis, corrupt data), not the change.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A change to one tenant: it is given the tenant's record (`None` when
/// there is no such tenant) and may edit it, create it (set `Some`) or
/// delete it (set `None`). Refuse with a [`Rejection`] and nothing changes.
/// It may run more than once (Redis retries on a concurrent write), so it
/// must only look at the record it is given.
pub type TenantChange<'a> =
    &'a mut (dyn FnMut(&mut Option<TenantRecord>) -> Result<(), Rejection> + Send);

/// What changed after a version.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// The version the changes bring a reader to.
    pub version: u64,
    /// Each tenant that changed, as it is now (`None`: deleted).
    pub tenants: BTreeMap<String, Option<TenantRecord>>,
}

impl Changes {
    /// Applies these changes to `state`, bringing it to `self.version`.
    pub fn apply_to(self, state: &mut State) {
        for (name, record) in self.tenants {
            match record {
                Some(record) => {
                    state.tenants.insert(name, record);
                }
                None => {
                    state.tenants.remove(&name);
                }
            }
        }
        state.version = self.version;
    }
}

/// The configuration store.
#[async_trait]
pub trait Store: Send + Sync {
    /// Everything, at one version (a gateway's start, the admin's listing).
    async fn load(&self) -> Result<State, StoreError>;
    /// The current global version, cheaply.
    async fn version(&self) -> Result<u64, StoreError>;
    /// One tenant's record, if it exists.
    async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError>;
    /// The tenants that changed after `version`, or `None` when the change
    /// log no longer reaches back that far (then [`Store::load`]).
    async fn changes_since(&self, version: u64) -> Result<Option<Changes>, StoreError>;
    /// Applies `change` to tenant `name` atomically, with the domains its
    /// apps claim or release, bumps the version and announces it. A domain
    /// held by another tenant is refused as a [`Rejection::Conflict`].
    /// Returns the record as written (`None` once deleted).
    async fn update_tenant(
        &self,
        name: &str,
        change: TenantChange<'_>,
    ) -> Result<Option<TenantRecord>, UpdateError>;
    /// Stores bytes under their SHA-256 (hex) and returns it; storing the
    /// same bytes again is free.
    async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError>;
    /// The bytes stored under `hash`; [`StoreError::MissingBlob`] if there are none.
    async fn get_blob(&self, hash: &str) -> Result<Vec<u8>, StoreError>;
    /// Deletes the blobs not in `referenced` that were last stored more than
    /// `grace` ago (so a deploy between storing its blobs and naming them in
    /// a version never loses one). Returns how many it deleted.
    async fn delete_unreferenced_blobs(
        &self,
        referenced: &BTreeSet<String>,
        grace: Duration,
    ) -> Result<usize, StoreError>;
    /// The change feed: the latest version this process has heard of. A
    /// subscriber must still compare versions (messages can be missed).
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// What this store is, for logs (`file:./okra-data`, `redis://...`).
    fn describe(&self) -> String;
}

/// Every blob some version of some app names.
pub fn referenced_blobs(state: &State) -> BTreeSet<String> {
    state
        .tenants
        .values()
        .flat_map(|t| t.apps.values())
        .flat_map(|a| a.versions.values())
        .flat_map(|v| v.files.values().cloned())
        .collect()
}

/// Deletes the blobs no kept version names (those of versions dropped by
/// `versions_kept`, deleted tenants, refused deploys) once they are older
/// than `grace`. Returns how many went.
pub async fn collect_garbage(store: &dyn Store, grace: Duration) -> Result<usize, StoreError> {
    let referenced = referenced_blobs(&store.load().await?);
    store.delete_unreferenced_blobs(&referenced, grace).await
}

/// The SHA-256 of a blob, as stores name it.
pub fn blob_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `hash` could be a blob name (so it is safe as a file name or key).
pub fn is_blob_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `url` as it may be shown in logs, errors and `/readyz`: any user name
/// and password (`redis://:secret@host`) replaced by `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Opens `file:PATH` (or a bare path) or `redis://HOST:PORT[/DB]`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Arc::new(redis::RedisStore::open(url).await?))
    } else {
        let path = url.strip_prefix("file:").unwrap_or(url);
        if path.is_empty() {
            return Err(StoreError::BadUrl(format!(
                "--store {url:?}: give file:PATH or redis://HOST:PORT"
            )));
        }
        Ok(Arc::new(file::FileStore::open(Path::new(path))?))
    }
}

/// What one tenant change writes: the record, and the domain index entries
/// it claims (domain → owner) and releases.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    record: Option<TenantRecord>,
    claimed: BTreeMap<String, String>,
    released: Vec<String>,
}

/// Runs `change` on `current` for the write that will be `version`: the new
/// record carries that version, and its domains are compared with the old
/// ones to find what to claim and release.
fn plan(
    name: &str,
    current: Option<TenantRecord>,
    change: TenantChange<'_>,
    version: u64,
) -> Result<Plan, Rejection> {
    let before = current.as_ref().map(domain_owners).unwrap_or_default();
    let mut record = current;
    change(&mut record)?;
    if let Some(record) = &mut record {
        record.name = name.to_string();
        record.version = version;
    }
    let after = record.as_ref().map(domain_owners).unwrap_or_default();
    let claimed = after
        .iter()
        .filter(|(domain, owner)| before.get(*domain) != Some(*owner))
        .map(|(domain, owner)| (domain.clone(), owner.clone()))
        .collect();
    let released = before
        .keys()
        .filter(|domain| !after.contains_key(*domain))
        .cloned()
        .collect();
    Ok(Plan {
        record,
        claimed,
        released,
    })
}

/// Every custom domain of a tenant's apps, with the owner the domain index
/// records for it: `tenant/app`.
fn domain_owners(record: &TenantRecord) -> BTreeMap<String, String> {
    record
        .apps
        .iter()
        .flat_map(|(name, app)| {
            app.domains
                .iter()
                .map(move |domain| (domain.clone(), format!("{}/{name}", record.name)))
        })
        .collect()
}

/// Whether a domain index entry (`tenant/app`) belongs to `tenant`.
fn owned_by(owner: &str, tenant: &str) -> bool {
    owner
        .split_once('/')
        .is_some_and(|(holder, _)| holder == tenant)
}

/// The refusal for a domain another tenant holds.
fn domain_taken(domain: &str) -> Rejection {
    Rejection::Conflict(format!("domain {domain:?} is already taken"))
}

fn decode_tenant(bytes: &[u8]) -> Result<TenantRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode_tenant(record: &TenantRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// One line of the change log: `<version> <tenant>`.
fn log_line(version: u64, tenant: &str) -> String {
    format!("{version} {tenant}")
}

fn parse_log_line(line: &str) -> Option<(u64, &str)> {
    let (version, tenant) = line.trim().split_once(' ')?;
    Some((version.parse().ok()?, tenant))
}

/// The tenants a log (oldest entry first) names after `since`, or `None`
/// when it does not reach back to `since + 1`.
fn changed_after(entries: &[(u64, String)], since: u64, current: u64) -> Option<Vec<String>> {
    if current <= since {
        return Some(Vec::new());
    }
    let oldest = entries.first()?.0;
    if oldest > since + 1 {
        return None;
    }
    let mut names: Vec<String> = entries
        .iter()
        .filter(|(version, _)| *version > since)
        .map(|(_, name)| name.clone())
        .collect();
    if names.iter().any(|name| name == EVERYTHING) {
        return None;
    }
    names.sort();
    names.dedup();
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AppRecord;

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.1:6379/2"),
            "redis://***@10.0.0.1:6379/2"
        );
        assert_eq!(
            redacted("rediss://user:p@ss@cache.example:6380"),
            "rediss://***@cache.example:6380"
        );
        assert_eq!(
            redacted("redis://127.0.0.1:6379/0?x=a@b"),
            "redis://127.0.0.1:6379/0?x=a@b"
        );
        assert_eq!(redacted("file:okra-data"), "file:okra-data");
    }

    fn tenant_with(domains: &[(&str, &str)]) -> TenantRecord {
        let mut record = TenantRecord {
            name: "acme".into(),
            ..TenantRecord::default()
        };
        for (app, domain) in domains {
            record
                .apps
                .entry(app.to_string())
                .or_insert_with(|| AppRecord {
                    name: app.to_string(),
                    ..AppRecord::default()
                })
                .domains
                .insert(domain.to_string());
        }
        record
    }

    #[test]
    fn a_plan_claims_and_releases_only_what_changed() {
        let current = tenant_with(&[("web", "a.example"), ("web", "b.example")]);
        let plan = plan(
            "acme",
            Some(current),
            &mut |record: &mut Option<TenantRecord>| {
                let web = record.as_mut().unwrap().apps.get_mut("web").unwrap();
                web.domains.remove("a.example");
                web.domains.insert("c.example".into());
                Ok(())
            },
            7,
        )
        .unwrap();
        assert_eq!(
            plan.claimed,
            BTreeMap::from([("c.example".into(), "acme/web".into())])
        );
        assert_eq!(plan.released, ["a.example"]);
        assert_eq!(plan.record.unwrap().version, 7);
    }

    #[test]
    fn deleting_a_tenant_releases_every_domain_and_refusals_write_nothing() {
        let current = tenant_with(&[("web", "a.example"), ("api", "b.example")]);
        let plan = plan(
            "acme",
            Some(current.clone()),
            &mut |r| {
                *r = None;
                Ok(())
            },
            2,
        )
        .unwrap();
        assert_eq!(plan.record, None);
        assert_eq!(plan.released, ["a.example", "b.example"]);
        let refused = super::plan(
            "acme",
            Some(current),
            &mut |_| Err(Rejection::NotFound("no".into())),
            2,
        );
        assert_eq!(refused, Err(Rejection::NotFound("no".into())));
    }

    #[test]
    fn the_log_answers_only_when_it_reaches_back() {
        let entries: Vec<(u64, String)> = vec![(5, "b".into()), (6, "a".into()), (7, "b".into())];
        assert_eq!(
            changed_after(&entries, 4, 7),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(changed_after(&entries, 6, 7), Some(vec!["b".into()]));
        assert_eq!(changed_after(&entries, 7, 7), Some(vec![]));
        assert_eq!(changed_after(&entries, 3, 7), None, "version 4 is gone");
        assert_eq!(changed_after(&[], 0, 3), None);
        assert_eq!(changed_after(&[], 3, 3), Some(vec![]));
        let migrated = vec![(9, EVERYTHING.to_string()), (10, "a".to_string())];
        assert_eq!(changed_after(&migrated, 8, 10), None);
        assert_eq!(changed_after(&migrated, 9, 10), Some(vec!["a".into()]));
        assert!(owned_by("acme/web", "acme"));
        assert!(!owned_by("acme-2/web", "acme"));
        assert_eq!(parse_log_line("12 acme\n"), Some((12, "acme")));
    }
}
