//! Where apps' key-value data lives: one SQLite file under the data
//! directory (Spin's own default backend), opened on first use, with every
//! row keyed by tenant, app, store and key, so no app ever reads another's
//! data whatever names it uses; and what one component may reach of it.
//! Calls block: run them off the executor.

use rusqlite::{Connection, OptionalExtension as _, params};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The file, under the data directory.
pub(crate) const FILE_NAME: &str = "key-value.sqlite";

/// Whose data a call reads or writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyValueScope {
    pub(crate) tenant: String,
    pub(crate) app: String,
}

/// The embedded key-value backend of a gateway.
#[derive(Debug)]
pub(crate) struct KeyValueBackend {
    path: PathBuf,
    /// Opened on first use, so a gateway whose apps use no key-value store
    /// makes no file.
    connection: OnceLock<Result<Mutex<Connection>, String>>,
}

impl KeyValueBackend {
    /// A backend keeping its data in `path` (made when first used).
    pub(crate) fn new(path: PathBuf) -> Self {
        KeyValueBackend {
            path,
            connection: OnceLock::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, String> {
        let connection = self
            .connection
            .get_or_init(|| open(&self.path).map(Mutex::new))
            .as_ref()
            .map_err(Clone::clone)?;
        let connection = connection.lock().unwrap_or_else(|e| e.into_inner());
        f(&connection).map_err(|e| format!("key-value storage: {e}"))
    }

    /// The value of `key`, if set.
    pub(crate) fn get(
        &self,
        scope: &KeyValueScope,
        store: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, String> {
        self.with(|c| {
            c.query_row(
                "SELECT value FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 AND key = ?4",
                params![scope.tenant, scope.app, store, key],
                |row| row.get(0),
            )
            .optional()
        })
    }

    /// Sets `key` to `value`, replacing what was there.
    pub(crate) fn set(
        &self,
        scope: &KeyValueScope,
        store: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), String> {
        self.with(|c| {
            c.execute(
                "INSERT INTO entries (tenant, app, store, key, value) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (tenant, app, store, key) DO UPDATE SET value = excluded.value",
                params![scope.tenant, scope.app, store, key, value],
            )
            .map(|_| ())
        })
    }

    /// Removes `key`; removing a key that is not there is not an error.
    pub(crate) fn delete(
        &self,
        scope: &KeyValueScope,
        store: &str,
        key: &str,
    ) -> Result<(), String> {
        self.with(|c| {
            c.execute(
                "DELETE FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 AND key = ?4",
                params![scope.tenant, scope.app, store, key],
            )
            .map(|_| ())
        })
    }

    /// Every key of the store, sorted.
    pub(crate) fn keys(&self, scope: &KeyValueScope, store: &str) -> Result<Vec<String>, String> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT key FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 ORDER BY key",
            )?;
            let rows =
                statement.query_map(params![scope.tenant, scope.app, store], |row| row.get(0))?;
            rows.collect()
        })
    }
}

fn open(path: &PathBuf) -> Result<Connection, String> {
    let fail = |e: &dyn std::fmt::Display| format!("opening {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    }
    let connection = Connection::open(path).map_err(|e| fail(&e))?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS entries (
                 tenant TEXT NOT NULL, app TEXT NOT NULL, store TEXT NOT NULL,
                 key TEXT NOT NULL, value BLOB NOT NULL,
                 PRIMARY KEY (tenant, app, store, key)
             ) WITHOUT ROWID;",
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
    fn nothing_is_made_until_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(FILE_NAME);
        let kv = KeyValueBackend::new(path.clone());
        assert!(!path.exists());
        kv.keys(&scope("a", "b"), "default").unwrap();
        assert!(path.exists());
    }
}
