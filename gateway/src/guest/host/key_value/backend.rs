//! Where apps' key-value data lives: one SQLite file under the data
//! directory (Spin's own default backend), opened on first use, with every
//! row keyed by tenant, app, store and key (the tenant's and app's ids, so
//! no app ever reads another's data whatever names it uses); and what one
//! component may reach of it. Calls block: run them off the executor.

use rusqlite::{Connection, OptionalExtension as _, params};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file, under the data directory.
pub(crate) const FILE_NAME: &str = "key-value.sqlite";
/// The most keys one app's store may hold; `get-keys` lists at most these.
pub(crate) const MAX_KEYS_PER_STORE: i64 = 10_000;
/// A key and its value, if it has one.
pub(crate) type KeyAndValue = (String, Option<Vec<u8>>);

/// The most value bytes one `get-many` returns.
pub(crate) const MAX_BATCH_BYTES: usize = 16 << 20;

/// Whose data a call reads or writes: the tenant's and the app's ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyValueScope {
    pub(crate) tenant: String,
    pub(crate) app: String,
}

/// Why a call failed, as the guest may see it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyValueFailure {
    /// The store holds [`MAX_KEYS_PER_STORE`] keys already.
    StoreFull,
    /// The call cannot be done as asked (an increment of a value that is
    /// not a number, an overflow), with why.
    Refused(String),
    /// The storage failed; the details are in the gateway's log only.
    Unavailable,
}

/// The embedded key-value backend of a gateway.
#[derive(Debug)]
pub(crate) struct KeyValueBackend {
    path: PathBuf,
    /// Opened on first use, so a gateway whose apps use no key-value store
    /// makes no file; a failed open is tried again by the next call.
    connection: Mutex<Option<Connection>>,
}

impl KeyValueBackend {
    /// A backend keeping its data in `path` (made when first used).
    pub(crate) fn new(path: PathBuf) -> Self {
        KeyValueBackend {
            path,
            connection: Mutex::new(None),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, CallError>,
    ) -> Result<T, KeyValueFailure> {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        if connection.is_none() {
            match open(&self.path) {
                Ok(opened) => *connection = Some(opened),
                Err(e) => {
                    tracing::warn!("key-value storage: {e}");
                    return Err(KeyValueFailure::Unavailable);
                }
            }
        }
        let Some(connection) = connection.as_ref() else {
            return Err(KeyValueFailure::Unavailable);
        };
        f(connection).map_err(|e| match e {
            CallError::Full => KeyValueFailure::StoreFull,
            CallError::Refused(why) => KeyValueFailure::Refused(why),
            CallError::Sqlite(e) => {
                tracing::warn!(path = %self.path.display(), "key-value storage: {e}");
                KeyValueFailure::Unavailable
            }
        })
    }

    /// The value of `key`, if set.
    pub(crate) fn get(
        &self,
        scope: &KeyValueScope,
        store: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, KeyValueFailure> {
        self.with(|c| Ok(read(c, scope, store, key)?))
    }

    /// Sets `key` to `value`, replacing what was there; a new key is
    /// refused once the store holds [`MAX_KEYS_PER_STORE`].
    pub(crate) fn set(
        &self,
        scope: &KeyValueScope,
        store: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), KeyValueFailure> {
        self.with(|c| write(c, scope, store, key, value))
    }

    /// Removes `key`; removing a key that is not there is not an error.
    pub(crate) fn delete(
        &self,
        scope: &KeyValueScope,
        store: &str,
        key: &str,
    ) -> Result<(), KeyValueFailure> {
        self.with(|c| Ok(remove(c, scope, store, key)?))
    }

    /// Every key of the store, sorted (at most [`MAX_KEYS_PER_STORE`]).
    pub(crate) fn keys(
        &self,
        scope: &KeyValueScope,
        store: &str,
    ) -> Result<Vec<String>, KeyValueFailure> {
        self.keys_after(scope, store, None)
    }

    /// The store's keys after `after` (all when `None`), sorted, at most
    /// [`MAX_KEYS_PER_STORE`].
    pub(crate) fn keys_after(
        &self,
        scope: &KeyValueScope,
        store: &str,
        after: Option<&str>,
    ) -> Result<Vec<String>, KeyValueFailure> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT key FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 \
                 AND (?4 IS NULL OR key > ?4) ORDER BY key LIMIT ?5",
            )?;
            let rows = statement.query_map(
                params![scope.tenant, scope.app, store, after, MAX_KEYS_PER_STORE],
                |row| row.get(0),
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// Adds `delta` to the 64-bit integer at `key` (a missing key counts
    /// as 0) and returns the sum, in one transaction: concurrent increments
    /// never lose an update. Values are 8 bytes, little-endian, as Spin
    /// keeps them.
    pub(crate) fn increment(
        &self,
        scope: &KeyValueScope,
        store: &str,
        key: &str,
        delta: i64,
    ) -> Result<i64, KeyValueFailure> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let old = match read(&tx, scope, store, key)? {
                None => 0,
                Some(bytes) => i64::from_le_bytes(bytes.as_slice().try_into().map_err(|_| {
                    CallError::Refused(format!(
                        "the value of {key:?} is {} bytes, not a 64-bit integer (8 bytes, little-endian)",
                        bytes.len()
                    ))
                })?),
            };
            let sum = old.checked_add(delta).ok_or_else(|| {
                CallError::Refused(format!("{old} + {delta} overflows a 64-bit integer"))
            })?;
            write(&tx, scope, store, key, &sum.to_le_bytes())?;
            tx.commit()?;
            Ok(sum)
        })
    }

    /// Sets `key` to `value` if it still holds a value of digest `expected`
    /// (`None`: if it is still missing), in one transaction; answers
    /// whether it did.
    pub(crate) fn swap_if(
        &self,
        scope: &KeyValueScope,
        store: &str,
        key: &str,
        expected: Option<&[u8; 32]>,
        value: &[u8],
    ) -> Result<bool, KeyValueFailure> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let current = read(&tx, scope, store, key)?;
            if current.as_deref().map(value_digest).as_ref() != expected {
                return Ok(false);
            }
            write(&tx, scope, store, key, value)?;
            tx.commit()?;
            Ok(true)
        })
    }

    /// The values of `keys`, in order, read together; refused past
    /// [`MAX_BATCH_BYTES`] of values.
    pub(crate) fn get_many(
        &self,
        scope: &KeyValueScope,
        store: &str,
        keys: Vec<String>,
    ) -> Result<Vec<KeyAndValue>, KeyValueFailure> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let mut out = Vec::with_capacity(keys.len());
            let mut bytes = 0usize;
            for key in keys {
                let value = read(&tx, scope, store, &key)?;
                bytes += value.as_ref().map_or(0, Vec::len);
                if bytes > MAX_BATCH_BYTES {
                    return Err(CallError::Refused(format!(
                        "the values asked for are over {MAX_BATCH_BYTES} bytes together; ask for fewer keys"
                    )));
                }
                out.push((key, value));
            }
            Ok(out)
        })
    }

    /// Sets every entry, or none of them (one transaction).
    pub(crate) fn set_many(
        &self,
        scope: &KeyValueScope,
        store: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), KeyValueFailure> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for (key, value) in entries {
                write(&tx, scope, store, key, value)?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Removes every key of `keys` (one transaction).
    pub(crate) fn delete_many(
        &self,
        scope: &KeyValueScope,
        store: &str,
        keys: &[String],
    ) -> Result<(), KeyValueFailure> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for key in keys {
                remove(&tx, scope, store, key)?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

/// The SHA-256 of a value, which compare-and-swap compares.
pub(crate) fn value_digest(value: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(value).into()
}

/// The value of `key`, if set.
fn read(
    c: &Connection,
    scope: &KeyValueScope,
    store: &str,
    key: &str,
) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached(
        "SELECT value FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 AND key = ?4",
    )?
    .query_row(params![scope.tenant, scope.app, store, key], |row| {
        row.get(0)
    })
    .optional()
}

/// Sets `key`; a new key is refused once the store holds
/// [`MAX_KEYS_PER_STORE`].
fn write(
    c: &Connection,
    scope: &KeyValueScope,
    store: &str,
    key: &str,
    value: &[u8],
) -> Result<(), CallError> {
    let exists = c
        .prepare_cached(
            "SELECT 1 FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 AND key = ?4",
        )?
        .query_row(params![scope.tenant, scope.app, store, key], |_| Ok(()))
        .optional()?
        .is_some();
    if !exists {
        let held: i64 = c
            .prepare_cached(
                "SELECT COUNT(*) FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3",
            )?
            .query_row(params![scope.tenant, scope.app, store], |row| row.get(0))?;
        if held >= MAX_KEYS_PER_STORE {
            return Err(CallError::Full);
        }
    }
    c.prepare_cached(
        "INSERT INTO entries (tenant, app, store, key, value) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (tenant, app, store, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![scope.tenant, scope.app, store, key, value])?;
    Ok(())
}

/// Removes `key` if it is there.
fn remove(c: &Connection, scope: &KeyValueScope, store: &str, key: &str) -> rusqlite::Result<()> {
    c.prepare_cached(
        "DELETE FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 AND key = ?4",
    )?
    .execute(params![scope.tenant, scope.app, store, key])?;
    Ok(())
}

/// How a call inside the lock failed.
enum CallError {
    Full,
    /// The call cannot be done as asked; the guest is told why.
    Refused(String),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for CallError {
    fn from(e: rusqlite::Error) -> Self {
        CallError::Sqlite(e)
    }
}

/// Opens (making if need be) the file and its table. `synchronous =
/// NORMAL` under WAL keeps every commit through a killed process; only an
/// OS crash may lose the last ones.
fn open(path: &Path) -> Result<Connection, String> {
    let fail = |e: &dyn std::fmt::Display| format!("opening {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    }
    let connection = Connection::open(path).map_err(|e| fail(&e))?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 1000;
             CREATE TABLE IF NOT EXISTS entries (
                 tenant TEXT NOT NULL, app TEXT NOT NULL, store TEXT NOT NULL,
                 key TEXT NOT NULL, value BLOB NOT NULL,
                 PRIMARY KEY (tenant, app, store, key)
             );",
        )
        .map_err(|e| fail(&e))?;
    Ok(connection)
}

/// What one component may reach: its app's data, in the stores its
/// manifest lists.
#[derive(Clone, Debug)]
pub(crate) struct KeyValueGrant {
    pub(crate) scope: KeyValueScope,
    pub(crate) stores: Arc<BTreeSet<String>>,
    pub(crate) backend: Arc<KeyValueBackend>,
}

/// One instance's key-value state: its grant, and how many stores it has
/// open (host memory the guest's limit does not count, so capped).
pub(crate) struct KeyValueSession {
    pub(crate) grant: KeyValueGrant,
    pub(crate) open: usize,
}

impl KeyValueSession {
    pub(crate) fn new(grant: KeyValueGrant) -> Self {
        KeyValueSession { grant, open: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(tenant: &str, app: &str) -> KeyValueScope {
        KeyValueScope {
            tenant: tenant.into(),
            app: app.into(),
        }
    }

    #[test]
    fn apps_and_tenants_never_see_each_others_keys() {
        let dir = tempfile::tempdir().unwrap();
        let kv = KeyValueBackend::new(dir.path().join(FILE_NAME));
        let (web, api, other) = (
            scope("acme", "web"),
            scope("acme", "api"),
            scope("beta", "web"),
        );
        kv.set(&web, "default", "k", b"web's").unwrap();
        kv.set(&web, "default", "k", b"web's again").unwrap();
        kv.set(&api, "default", "k", b"api's").unwrap();
        assert_eq!(
            kv.get(&web, "default", "k").unwrap().as_deref(),
            Some(&b"web's again"[..])
        );
        assert_eq!(
            kv.get(&api, "default", "k").unwrap().as_deref(),
            Some(&b"api's"[..])
        );
        assert_eq!(kv.get(&other, "default", "k").unwrap(), None);
        assert_eq!(kv.get(&web, "other", "k").unwrap(), None);
        assert_eq!(kv.keys(&web, "default").unwrap(), ["k"]);
        assert!(kv.keys(&other, "default").unwrap().is_empty());
        kv.delete(&web, "default", "k").unwrap();
        kv.delete(&web, "default", "k").unwrap();
        assert_eq!(kv.get(&web, "default", "k").unwrap(), None);
        assert_eq!(
            kv.get(&api, "default", "k").unwrap().as_deref(),
            Some(&b"api's"[..])
        );
    }

    #[test]
    fn a_full_store_takes_no_new_key_but_updates_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let kv = KeyValueBackend::new(dir.path().join(FILE_NAME));
        let web = scope("acme", "web");
        for i in 0..MAX_KEYS_PER_STORE {
            kv.set(&web, "default", &format!("k{i}"), b"v").unwrap();
        }
        assert_eq!(
            kv.set(&web, "default", "one-more", b"v"),
            Err(KeyValueFailure::StoreFull)
        );
        kv.set(&web, "default", "k0", b"new").unwrap();
        kv.set(&web, "other", "one-more", b"v").unwrap();
        assert_eq!(
            kv.keys(&web, "default").unwrap().len() as i64,
            MAX_KEYS_PER_STORE
        );
    }

    #[test]
    fn concurrent_increments_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(KeyValueBackend::new(dir.path().join(FILE_NAME)));
        let web = scope("acme", "web");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (kv, web) = (kv.clone(), web.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        kv.increment(&web, "default", "n", 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(kv.increment(&web, "default", "n", 0).unwrap(), 400);
        assert_eq!(
            kv.get(&web, "default", "n").unwrap(),
            Some(400i64.to_le_bytes().to_vec())
        );
        // Not a number, or past i64: the interface's error, nothing changed.
        kv.set(&web, "default", "text", b"abc").unwrap();
        assert!(matches!(
            kv.increment(&web, "default", "text", 1),
            Err(KeyValueFailure::Refused(why)) if why.contains("not a 64-bit integer")
        ));
        assert!(matches!(
            kv.increment(&web, "default", "n", i64::MAX),
            Err(KeyValueFailure::Refused(why)) if why.contains("overflows")
        ));
        assert_eq!(kv.increment(&web, "default", "n", -400).unwrap(), 0);
    }

    #[test]
    fn swaps_happen_only_over_the_value_expected() {
        let dir = tempfile::tempdir().unwrap();
        let kv = KeyValueBackend::new(dir.path().join(FILE_NAME));
        let web = scope("acme", "web");
        assert!(kv.swap_if(&web, "s", "k", None, b"first").unwrap());
        assert!(!kv.swap_if(&web, "s", "k", None, b"again").unwrap());
        let (stale, first) = (value_digest(b"stale"), value_digest(b"first"));
        assert!(!kv.swap_if(&web, "s", "k", Some(&stale), b"x").unwrap());
        assert!(kv.swap_if(&web, "s", "k", Some(&first), b"second").unwrap());
        assert_eq!(
            kv.get(&web, "s", "k").unwrap().as_deref(),
            Some(&b"second"[..])
        );
    }

    #[test]
    fn batches_are_all_or_nothing_and_keys_page() {
        let dir = tempfile::tempdir().unwrap();
        let kv = KeyValueBackend::new(dir.path().join(FILE_NAME));
        let web = scope("acme", "web");
        for i in 0..MAX_KEYS_PER_STORE - 1 {
            kv.set(&web, "default", &format!("k{i:05}"), b"v").unwrap();
        }
        let two = [
            ("new1".to_string(), b"a".to_vec()),
            ("new2".to_string(), b"b".to_vec()),
        ];
        assert_eq!(
            kv.set_many(&web, "default", &two),
            Err(KeyValueFailure::StoreFull)
        );
        assert_eq!(
            kv.get(&web, "default", "new1").unwrap(),
            None,
            "rolled back"
        );
        kv.delete_many(&web, "default", &["k00000".into(), "k00001".into()])
            .unwrap();
        kv.set_many(&web, "default", &two).unwrap();
        let got = kv
            .get_many(&web, "default", vec!["new2".into(), "k00000".into()])
            .unwrap();
        assert_eq!(
            got,
            [
                ("new2".into(), Some(b"b".to_vec())),
                ("k00000".into(), None)
            ]
        );
        assert_eq!(
            kv.keys_after(&web, "default", Some("k09997")).unwrap(),
            ["k09998", "new1", "new2"]
        );
    }

    #[test]
    fn nothing_is_made_until_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(FILE_NAME);
        let kv = KeyValueBackend::new(path.clone());
        assert!(!path.exists());
        kv.keys(&scope("a", "b"), "default").unwrap();
        assert!(path.exists());
    }
}
