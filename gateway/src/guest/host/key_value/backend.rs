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
        self.with(|c| {
            Ok(c.query_row(
                "SELECT value FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 AND key = ?4",
                params![scope.tenant, scope.app, store, key],
                |row| row.get(0),
            )
            .optional()?)
        })
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
        self.with(|c| {
            let exists = c
                .query_row(
                    "SELECT 1 FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 AND key = ?4",
                    params![scope.tenant, scope.app, store, key],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !exists {
                let held: i64 = c.query_row(
                    "SELECT COUNT(*) FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3",
                    params![scope.tenant, scope.app, store],
                    |row| row.get(0),
                )?;
                if held >= MAX_KEYS_PER_STORE {
                    return Err(CallError::Full);
                }
            }
            c.execute(
                "INSERT INTO entries (tenant, app, store, key, value) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (tenant, app, store, key) DO UPDATE SET value = excluded.value",
                params![scope.tenant, scope.app, store, key, value],
            )?;
            Ok(())
        })
    }

    /// Removes `key`; removing a key that is not there is not an error.
    pub(crate) fn delete(
        &self,
        scope: &KeyValueScope,
        store: &str,
        key: &str,
    ) -> Result<(), KeyValueFailure> {
        self.with(|c| {
            c.execute(
                "DELETE FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 AND key = ?4",
                params![scope.tenant, scope.app, store, key],
            )?;
            Ok(())
        })
    }

    /// Every key of the store, sorted (at most [`MAX_KEYS_PER_STORE`]).
    pub(crate) fn keys(
        &self,
        scope: &KeyValueScope,
        store: &str,
    ) -> Result<Vec<String>, KeyValueFailure> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT key FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 ORDER BY key LIMIT ?4",
            )?;
            let rows = statement.query_map(
                params![scope.tenant, scope.app, store, MAX_KEYS_PER_STORE],
                |row| row.get(0),
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }
}

/// How a call inside the lock failed.
enum CallError {
    Full,
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
    fn nothing_is_made_until_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(FILE_NAME);
        let kv = KeyValueBackend::new(path.clone());
        assert!(!path.exists());
        kv.keys(&scope("a", "b"), "default").unwrap();
        assert!(path.exists());
    }
}
