//! Apps' key-value data, which guests reach through Spin's and WASI's
//! key-value interfaces and operators through the REST API: one
//! [`KeyValue`] over either backend, the embedded one (one SQLite file under
//! the data directory, Spin's own default: [`embedded`]) or a Redis that
//! every gateway of a cluster shares ([`shared`]).
//!
//! Every entry is keyed by the tenant's and the app's ids ([`Scope`]), so no
//! app ever reads another's data whatever store or key names it uses. Each
//! tenant's keys and bytes are counted as they change, and a write that
//! would take them past the tenant's [`Quota`] is refused, naming the limit,
//! with nothing stored changed.

#![warn(unreachable_pub, missing_docs)]

mod embedded;
mod shared;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// The most keys one app's store may hold: `get-keys` lists them all at
/// once, so this bounds what one call returns.
pub const MAX_KEYS_PER_STORE: u64 = 10_000;
/// The most value bytes one `get-many` returns.
pub const MAX_BATCH_BYTES: usize = 16 << 20;
/// The longest store label, in bytes: labels are part of every entry's
/// key in both backends, so they are bounded like keys.
pub const MAX_STORE_LABEL_BYTES: usize = 64;

/// The most keys one batch call may name.
pub const MAX_BATCH_KEYS: usize = 1000;
/// The most entries one page of a listing holds.
pub const MAX_PAGE: usize = 1000;

/// A key and its value, if it has one.
pub type KeyAndValue = (String, Option<Vec<u8>>);

/// Whose data a call reads or writes: the tenant's and the app's ids (never
/// their names, so an app deleted and made again starts with no data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The tenant's id.
    pub tenant: String,
    /// The app's id.
    pub app: String,
}

/// What one tenant may keep, over all its apps and stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// The longest key, in bytes.
    pub max_key_bytes: usize,
    /// The largest value, in bytes.
    pub max_value_bytes: usize,
    /// Keys the tenant may hold.
    pub max_keys: u64,
    /// Bytes of keys and values the tenant may hold, together.
    pub max_bytes: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            max_key_bytes: 1024,
            max_value_bytes: 1 << 20,
            max_keys: 100_000,
            max_bytes: 256 << 20,
        }
    }
}

/// How much of a quota a tenant uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Keys held.
    pub keys: u64,
    /// Bytes of keys and values held.
    pub bytes: u64,
}

/// Why a call failed; its text is what the guest or API client is told.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The store holds [`MAX_KEYS_PER_STORE`] keys already.
    StoreFull,
    /// The write would take the tenant past a limit of its [`Quota`]; the
    /// text names the limit.
    OverQuota(String),
    /// The call cannot be done as asked (an increment of a value that is
    /// not a number, an overflow, a batch too large), with why.
    Refused(String),
    /// The storage failed; the details are in the gateway's log only.
    Unavailable,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::StoreFull => write!(
                f,
                "the store holds {MAX_KEYS_PER_STORE} keys, the most it may; delete some first"
            ),
            Failure::OverQuota(why) | Failure::Refused(why) => f.write_str(why),
            Failure::Unavailable => f.write_str("key-value storage is unavailable; try again"),
        }
    }
}

impl std::error::Error for Failure {}

/// A change to a tenant's usage, and whether it may be made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Change {
    keys: i64,
    bytes: i64,
}

impl Quota {
    /// Refuses a key longer than [`Quota::max_key_bytes`], naming the limit.
    pub fn check_key(&self, key: &str) -> Result<(), Failure> {
        if key.len() > self.max_key_bytes {
            return Err(Failure::OverQuota(format!(
                "a key of {} bytes is over the {}-byte limit on keys",
                key.len(),
                self.max_key_bytes
            )));
        }
        Ok(())
    }

    /// Refuses a value larger than [`Quota::max_value_bytes`], naming the
    /// limit.
    pub fn check_value(&self, value: &[u8]) -> Result<(), Failure> {
        if value.len() > self.max_value_bytes {
            return Err(Failure::OverQuota(format!(
                "a value of {} bytes is over the {}-byte limit on values",
                value.len(),
                self.max_value_bytes
            )));
        }
        Ok(())
    }

    /// Refuses `change` when it would take `usage` past a limit. A change
    /// that shrinks what is held always passes, even over a lowered quota.
    fn admit(&self, usage: Usage, change: Change) -> Result<(), Failure> {
        let after = |held: u64, delta: i64| held.saturating_add_signed(delta);
        if change.keys > 0 && after(usage.keys, change.keys) > self.max_keys {
            return Err(self.over_keys(usage.keys));
        }
        if change.bytes > 0 && after(usage.bytes, change.bytes) > self.max_bytes {
            return Err(self.over_bytes(usage.bytes));
        }
        Ok(())
    }

    /// The refusal of a write past the key quota, when `held` are held.
    fn over_keys(&self, held: u64) -> Failure {
        Failure::OverQuota(format!(
            "the tenant holds {held} keys and may hold {}; delete some first",
            self.max_keys
        ))
    }

    /// The refusal of a write past the byte quota, when `held` are held.
    fn over_bytes(&self, held: u64) -> Failure {
        Failure::OverQuota(format!(
            "the tenant holds {held} bytes of keys and values and may hold {}; delete some first",
            self.max_bytes
        ))
    }
}

/// The SHA-256 of a value, which compare-and-swap compares.
pub fn value_digest(value: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(value).into()
}

/// What a 64-bit counter's bytes hold (8 bytes, little-endian, as Spin keeps
/// them), or why they are not one.
fn counter(key: &str, bytes: Option<&[u8]>) -> Result<i64, Failure> {
    match bytes {
        None => Ok(0),
        Some(bytes) => Ok(i64::from_le_bytes(bytes.try_into().map_err(|_| {
            Failure::Refused(format!(
                "the value of {key:?} is {} bytes, not a 64-bit integer (8 bytes, little-endian)",
                bytes.len()
            ))
        })?)),
    }
}

/// Why a `get-many` was refused: its values are too large together.
fn batch_too_large() -> Failure {
    Failure::Refused(format!(
        "the values asked for are over {MAX_BATCH_BYTES} bytes together; ask for fewer keys"
    ))
}

/// Refuses a store label that is not 1 to [`MAX_STORE_LABEL_BYTES`]
/// printable ASCII characters (so its length in bytes and in characters
/// agree, and it never holds a control character).
pub fn check_store_label(label: &str) -> Result<(), Failure> {
    let printable = label.bytes().all(|b| (b' '..=b'~').contains(&b));
    if label.is_empty() || label.len() > MAX_STORE_LABEL_BYTES || !printable {
        return Err(Failure::Refused(format!(
            "{label:?} is not a store label: use 1 to {MAX_STORE_LABEL_BYTES} printable ASCII characters"
        )));
    }
    Ok(())
}

/// Refuses a batch naming more than [`MAX_BATCH_KEYS`] keys.
fn check_batch(keys: usize) -> Result<(), Failure> {
    if keys > MAX_BATCH_KEYS {
        return Err(Failure::Refused(format!(
            "a batch of {keys} keys is over the limit of {MAX_BATCH_KEYS}; split it"
        )));
    }
    Ok(())
}

/// `old + delta`, or why not.
fn add(old: i64, delta: i64) -> Result<i64, Failure> {
    old.checked_add(delta)
        .ok_or_else(|| Failure::Refused(format!("{old} + {delta} overflows a 64-bit integer")))
}

/// One page of a store's keys, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The keys, at most the limit asked for.
    pub keys: Vec<String>,
    /// Where the next page starts (pass it as `after`), if there is one.
    pub next: Option<String>,
}

/// Cuts a sorted list of keys (already past `after`) to those starting with
/// `prefix`, at most `limit` of them.
fn page_of(keys: impl IntoIterator<Item = String>, prefix: &str, limit: usize) -> Page {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut matching = keys.into_iter().filter(|k| k.starts_with(prefix));
    let keys: Vec<String> = matching.by_ref().take(limit).collect();
    let next = if keys.len() == limit && matching.next().is_some() {
        keys.last().cloned()
    } else {
        None
    };
    Page { keys, next }
}

/// Where apps' key-value data lives.
#[derive(Clone)]
enum Backend {
    Embedded(Arc<embedded::Embedded>),
    Shared(Arc<shared::Shared>),
}

/// Apps' key-value data in one backend, under one quota for every tenant.
#[derive(Clone)]
pub struct KeyValue {
    backend: Backend,
    quota: Quota,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("backend", &self.describe())
            .field("quota", &self.quota)
            .finish()
    }
}

/// The file the embedded backend keeps, under the data directory.
pub const FILE_NAME: &str = "key-value.sqlite";

impl KeyValue {
    /// The embedded backend, in the SQLite file `path` (made when first
    /// used, so a gateway whose apps use no store makes no file).
    pub fn embedded(path: PathBuf, quota: Quota) -> Self {
        KeyValue {
            backend: Backend::Embedded(Arc::new(embedded::Embedded::new(path))),
            quota,
        }
    }

    /// The Redis at `url` (connected lazily: a gateway may start while
    /// Redis is down and reach it once it is up).
    pub fn redis(url: &str, quota: Quota) -> Result<Self, String> {
        Ok(KeyValue {
            backend: Backend::Shared(Arc::new(shared::Shared::new(url)?)),
            quota,
        })
    }

    /// The quota every tenant has.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Where the data lives, for logs (no password).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Embedded(e) => format!("embedded ({})", e.path().display()),
            Backend::Shared(s) => format!("redis ({})", s.describe()),
        }
    }

    /// Runs `call` on the embedded backend off the executor.
    async fn blocking<T: Send + 'static>(
        embedded: &Arc<embedded::Embedded>,
        call: impl FnOnce(&embedded::Embedded) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        let embedded = embedded.clone();
        tokio::task::spawn_blocking(move || call(&embedded))
            .await
            .map_err(|e| {
                tracing::warn!("key-value storage: {e}");
                Failure::Unavailable
            })?
    }

    /// The value of `key`, if set.
    pub async fn get(
        &self,
        scope: &Scope,
        store: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, Failure> {
        check_store_label(store)?;
        self.quota.check_key(key)?;
        match &self.backend {
            Backend::Embedded(e) => {
                let (scope, store, key) = (scope.clone(), store.to_string(), key.to_string());
                Self::blocking(e, move |e| e.get(&scope, &store, &key)).await
            }
            Backend::Shared(s) => s.get(scope, store, key).await,
        }
    }

    /// Sets `key` to `value`, replacing what was there.
    pub async fn set(
        &self,
        scope: &Scope,
        store: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), Failure> {
        self.set_many(scope, store, vec![(key.to_string(), value.to_vec())])
            .await
    }

    /// Removes `key`; removing a key that is not there is not an error.
    pub async fn delete(&self, scope: &Scope, store: &str, key: &str) -> Result<(), Failure> {
        self.delete_many(scope, store, vec![key.to_string()]).await
    }

    /// Every key of the store, sorted (at most [`MAX_KEYS_PER_STORE`]).
    pub async fn keys(&self, scope: &Scope, store: &str) -> Result<Vec<String>, Failure> {
        self.keys_after(scope, store, None).await
    }

    /// The store's keys after `after` (all when `None`), sorted, at most
    /// [`MAX_KEYS_PER_STORE`].
    pub async fn keys_after(
        &self,
        scope: &Scope,
        store: &str,
        after: Option<&str>,
    ) -> Result<Vec<String>, Failure> {
        check_store_label(store)?;
        match &self.backend {
            Backend::Embedded(e) => {
                let (scope, store) = (scope.clone(), store.to_string());
                let after = after.map(str::to_string);
                Self::blocking(e, move |e| e.keys_after(&scope, &store, after.as_deref())).await
            }
            Backend::Shared(s) => s.keys_after(scope, store, after).await,
        }
    }

    /// A page of at most `limit` of the store's keys that start with
    /// `prefix`, after `after`.
    pub async fn list(
        &self,
        scope: &Scope,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, Failure> {
        check_store_label(store)?;
        let limit = limit.clamp(1, MAX_PAGE);
        let keys = match &self.backend {
            // One more than the page, so the page knows whether one follows.
            Backend::Embedded(e) => {
                let (scope, store, prefix) = (scope.clone(), store.to_string(), prefix.to_string());
                let after = after.map(str::to_string);
                Self::blocking(e, move |e| {
                    e.list(&scope, &store, &prefix, after.as_deref(), limit + 1)
                })
                .await?
            }
            Backend::Shared(s) => s.keys_after(scope, store, after).await?,
        };
        Ok(page_of(keys, prefix, limit))
    }

    /// Adds `delta` to the 64-bit integer at `key` (a missing key counts as
    /// 0) and returns the sum, atomically: concurrent increments never lose
    /// an update.
    pub async fn increment(
        &self,
        scope: &Scope,
        store: &str,
        key: &str,
        delta: i64,
    ) -> Result<i64, Failure> {
        check_store_label(store)?;
        self.quota.check_key(key)?;
        let quota = self.quota;
        match &self.backend {
            Backend::Embedded(e) => {
                let (scope, store, key) = (scope.clone(), store.to_string(), key.to_string());
                Self::blocking(e, move |e| e.increment(&quota, &scope, &store, &key, delta)).await
            }
            Backend::Shared(s) => s.increment(&quota, scope, store, key, delta).await,
        }
    }

    /// Sets `key` to `value` if it still holds a value of digest `expected`
    /// (`None`: if it is still missing), atomically; answers whether it did.
    pub async fn swap_if(
        &self,
        scope: &Scope,
        store: &str,
        key: &str,
        expected: Option<[u8; 32]>,
        value: Vec<u8>,
    ) -> Result<bool, Failure> {
        check_store_label(store)?;
        self.quota.check_key(key)?;
        self.quota.check_value(&value)?;
        let quota = self.quota;
        match &self.backend {
            Backend::Embedded(e) => {
                let (scope, store, key) = (scope.clone(), store.to_string(), key.to_string());
                Self::blocking(e, move |e| {
                    e.swap_if(&quota, &scope, &store, &key, expected.as_ref(), &value)
                })
                .await
            }
            Backend::Shared(s) => {
                s.swap_if(&quota, scope, store, key, expected.as_ref(), &value)
                    .await
            }
        }
    }

    /// The values of `keys`, in order, read together; refused past
    /// [`MAX_BATCH_BYTES`] of values.
    pub async fn get_many(
        &self,
        scope: &Scope,
        store: &str,
        keys: Vec<String>,
    ) -> Result<Vec<KeyAndValue>, Failure> {
        check_store_label(store)?;
        check_batch(keys.len())?;
        for key in &keys {
            self.quota.check_key(key)?;
        }
        let values = match &self.backend {
            Backend::Embedded(e) => {
                let (scope, store) = (scope.clone(), store.to_string());
                let keys = keys.clone();
                Self::blocking(e, move |e| e.get_many(&scope, &store, &keys)).await?
            }
            Backend::Shared(s) => s.get_many(scope, store, &keys).await?,
        };
        Ok(keys.into_iter().zip(values).collect())
    }

    /// Sets every entry, or none of them.
    pub async fn set_many(
        &self,
        scope: &Scope,
        store: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Failure> {
        check_store_label(store)?;
        check_batch(entries.len())?;
        let mut bytes = 0usize;
        for (key, value) in &entries {
            self.quota.check_key(key)?;
            self.quota.check_value(value)?;
            bytes += key.len() + value.len();
        }
        if bytes > MAX_BATCH_BYTES {
            return Err(Failure::Refused(format!(
                "a batch of {bytes} bytes is over the limit of {MAX_BATCH_BYTES}; split it"
            )));
        }
        let quota = self.quota;
        match &self.backend {
            Backend::Embedded(e) => {
                let (scope, store) = (scope.clone(), store.to_string());
                Self::blocking(e, move |e| e.set_many(&quota, &scope, &store, &entries)).await
            }
            Backend::Shared(s) => s.set_many(&quota, scope, store, &entries).await,
        }
    }

    /// Removes every key of `keys`, together.
    pub async fn delete_many(
        &self,
        scope: &Scope,
        store: &str,
        keys: Vec<String>,
    ) -> Result<(), Failure> {
        check_store_label(store)?;
        check_batch(keys.len())?;
        for key in &keys {
            self.quota.check_key(key)?;
        }
        match &self.backend {
            Backend::Embedded(e) => {
                let (scope, store) = (scope.clone(), store.to_string());
                Self::blocking(e, move |e| e.delete_many(&scope, &store, &keys)).await
            }
            Backend::Shared(s) => s.delete_many(scope, store, &keys).await,
        }
    }

    /// Removes every store of the app `scope` names, giving its tenant's
    /// quota back (an app purged: its data would be unreachable).
    pub async fn forget_app(&self, scope: &Scope) -> Result<(), Failure> {
        match &self.backend {
            Backend::Embedded(e) => {
                let scope = scope.clone();
                Self::blocking(e, move |e| e.forget_app(&scope)).await
            }
            Backend::Shared(s) => s.forget_app(scope).await,
        }
    }

    /// Removes everything `tenant` (an id) holds, and its usage.
    pub async fn forget_tenant(&self, tenant: &str) -> Result<(), Failure> {
        match &self.backend {
            Backend::Embedded(e) => {
                let tenant = tenant.to_string();
                Self::blocking(e, move |e| e.forget_tenant(&tenant)).await
            }
            Backend::Shared(s) => s.forget_tenant(tenant).await,
        }
    }

    /// What `tenant` (an id) holds.
    pub async fn usage(&self, tenant: &str) -> Result<Usage, Failure> {
        match &self.backend {
            Backend::Embedded(e) => {
                let tenant = tenant.to_string();
                Self::blocking(e, move |e| e.usage(&tenant)).await
            }
            Backend::Shared(s) => s.usage(tenant).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_stop_at_the_limit_and_say_where_to_go_on() {
        let keys = |n: usize| (0..n).map(|i| format!("k{i:02}"));
        let page = page_of(keys(5), "k", 2);
        assert_eq!(page.keys, ["k00", "k01"]);
        assert_eq!(page.next.as_deref(), Some("k01"));
        let last = page_of(keys(5).skip(4), "k", 2);
        assert_eq!(last.keys, ["k04"]);
        assert_eq!(last.next, None);
        let exact = page_of(keys(2), "k", 2);
        assert_eq!(exact.next, None, "no empty page after a full last one");
        assert_eq!(page_of(keys(12), "k1", 100).keys, ["k10", "k11"]);
    }

    #[test]
    fn quotas_refuse_growth_and_name_the_limit_but_never_a_shrink() {
        let quota = Quota {
            max_keys: 2,
            max_bytes: 10,
            ..Quota::default()
        };
        let at = Usage { keys: 2, bytes: 10 };
        let grow_keys = quota.admit(at, Change { keys: 1, bytes: 0 });
        assert!(matches!(grow_keys, Err(Failure::OverQuota(why)) if why.contains("may hold 2")));
        let grow_bytes = quota.admit(at, Change { keys: 0, bytes: 1 });
        assert!(matches!(grow_bytes, Err(Failure::OverQuota(why)) if why.contains("may hold 10")));
        let over = Usage { keys: 5, bytes: 50 };
        assert_eq!(
            quota.admit(
                over,
                Change {
                    keys: -1,
                    bytes: -5
                }
            ),
            Ok(())
        );
        assert!(
            matches!(quota.check_key(&"k".repeat(1025)), Err(Failure::OverQuota(why)) if why.contains("1024-byte limit"))
        );
        assert_eq!(quota.check_key(&"k".repeat(1024)), Ok(()));
    }
}
