//! The embedded backend: one SQLite file (Spin's own default), opened on
//! first use, with every row keyed by tenant, app, store and key, and each
//! tenant's usage kept in the same transaction as every write. Calls block:
//! [`crate::KeyValue`] runs them off the executor.
//!
//! Writes take the write lock up front (`BEGIN IMMEDIATE`), so a second
//! process on the same file (the control plane's API) waits its turn
//! instead of failing a read-then-write upgrade.

use crate::{Change, Failure, MAX_BATCH_BYTES, MAX_KEYS_PER_STORE, Quota, Scope, Usage};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The embedded backend of one process.
#[derive(Debug)]
pub(crate) struct Embedded {
    path: PathBuf,
    /// Opened on first use; a failed open is tried again by the next call.
    connection: Mutex<Option<Connection>>,
}

/// How a call inside the lock failed.
enum CallError {
    Failure(Failure),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for CallError {
    fn from(e: rusqlite::Error) -> Self {
        CallError::Sqlite(e)
    }
}

impl From<Failure> for CallError {
    fn from(f: Failure) -> Self {
        CallError::Failure(f)
    }
}

type CallResult<T> = Result<T, CallError>;

impl Embedded {
    pub(crate) fn new(path: PathBuf) -> Self {
        Embedded {
            path,
            connection: Mutex::new(None),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> CallResult<T>) -> Result<T, Failure> {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        if connection.is_none() {
            match open(&self.path) {
                Ok(opened) => *connection = Some(opened),
                Err(e) => {
                    tracing::warn!("key-value storage: {e}");
                    return Err(Failure::Unavailable);
                }
            }
        }
        let Some(connection) = connection.as_mut() else {
            return Err(Failure::Unavailable);
        };
        f(connection).map_err(|e| match e {
            CallError::Failure(f) => f,
            CallError::Sqlite(e) => {
                tracing::warn!(path = %self.path.display(), "key-value storage: {e}");
                Failure::Unavailable
            }
        })
    }

    /// Runs `f` in one write transaction, committed if it succeeds.
    fn writing<T>(&self, f: impl FnOnce(&Connection) -> CallResult<T>) -> Result<T, Failure> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    pub(crate) fn get(
        &self,
        scope: &Scope,
        store: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, Failure> {
        self.with(|c| Ok(read(c, scope, store, key)?))
    }

    pub(crate) fn keys_after(
        &self,
        scope: &Scope,
        store: &str,
        after: Option<&str>,
    ) -> Result<Vec<String>, Failure> {
        self.list(scope, store, "", after, MAX_KEYS_PER_STORE as usize)
    }

    /// At most `limit` keys starting with `prefix`, after `after`, sorted.
    pub(crate) fn list(
        &self,
        scope: &Scope,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, Failure> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT key FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 \
                 AND (?4 IS NULL OR key > ?4) AND key >= ?5 AND substr(key, 1, ?6) = ?5 \
                 ORDER BY key LIMIT ?7",
            )?;
            let rows = statement.query_map(
                params![
                    scope.tenant,
                    scope.app,
                    store,
                    after,
                    prefix,
                    prefix.chars().count() as i64,
                    limit as i64
                ],
                |row| row.get(0),
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    pub(crate) fn increment(
        &self,
        quota: &Quota,
        scope: &Scope,
        store: &str,
        key: &str,
        delta: i64,
    ) -> Result<i64, Failure> {
        self.writing(|tx| {
            let old = read(tx, scope, store, key)?;
            let sum = crate::add(crate::counter(key, old.as_deref())?, delta)?;
            write(tx, quota, scope, store, key, &sum.to_le_bytes())?;
            Ok(sum)
        })
    }

    pub(crate) fn swap_if(
        &self,
        quota: &Quota,
        scope: &Scope,
        store: &str,
        key: &str,
        expected: Option<&[u8; 32]>,
        value: &[u8],
    ) -> Result<bool, Failure> {
        self.writing(|tx| {
            let current = read(tx, scope, store, key)?;
            if current.as_deref().map(crate::value_digest).as_ref() != expected {
                return Ok(false);
            }
            write(tx, quota, scope, store, key, value)?;
            Ok(true)
        })
    }

    pub(crate) fn get_many(
        &self,
        scope: &Scope,
        store: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, Failure> {
        self.with(|c| {
            let tx = c.transaction()?;
            let mut out = Vec::with_capacity(keys.len());
            let mut bytes = 0usize;
            for key in keys {
                let value = read(&tx, scope, store, key)?;
                bytes += value.as_ref().map_or(0, Vec::len);
                if bytes > MAX_BATCH_BYTES {
                    return Err(crate::batch_too_large().into());
                }
                out.push(value);
            }
            Ok(out)
        })
    }

    pub(crate) fn set_many(
        &self,
        quota: &Quota,
        scope: &Scope,
        store: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), Failure> {
        self.writing(|tx| {
            for (key, value) in entries {
                write(tx, quota, scope, store, key, value)?;
            }
            Ok(())
        })
    }

    pub(crate) fn delete_many(
        &self,
        scope: &Scope,
        store: &str,
        keys: &[String],
    ) -> Result<(), Failure> {
        self.writing(|tx| {
            for key in keys {
                remove(tx, scope, store, key)?;
            }
            Ok(())
        })
    }

    pub(crate) fn forget_app(&self, scope: &Scope) -> Result<(), Failure> {
        self.writing(|tx| {
            let (keys, bytes): (i64, i64) = tx
                .prepare_cached(
                    "SELECT COUNT(*), COALESCE(SUM(length(CAST(key AS BLOB)) + length(value)), 0) \
                     FROM entries WHERE tenant = ?1 AND app = ?2",
                )?
                .query_row(params![scope.tenant, scope.app], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            tx.prepare_cached("DELETE FROM entries WHERE tenant = ?1 AND app = ?2")?
                .execute(params![scope.tenant, scope.app])?;
            let change = Change {
                keys: -keys,
                bytes: -bytes,
            };
            record(tx, &scope.tenant, change)?;
            Ok(())
        })
    }

    pub(crate) fn forget_tenant(&self, tenant: &str) -> Result<(), Failure> {
        self.writing(|tx| {
            tx.prepare_cached("DELETE FROM entries WHERE tenant = ?1")?
                .execute(params![tenant])?;
            tx.prepare_cached("DELETE FROM usage WHERE tenant = ?1")?
                .execute(params![tenant])?;
            Ok(())
        })
    }

    pub(crate) fn usage(&self, tenant: &str) -> Result<Usage, Failure> {
        self.with(|c| Ok(usage(c, tenant)?))
    }
}

/// The value of `key`, if set.
fn read(
    c: &Connection,
    scope: &Scope,
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

/// What `tenant` holds.
fn usage(c: &Connection, tenant: &str) -> rusqlite::Result<Usage> {
    let held = c
        .prepare_cached("SELECT keys, bytes FROM usage WHERE tenant = ?1")?
        .query_row(params![tenant], |row| {
            Ok(Usage {
                keys: row.get::<_, i64>(0)?.max(0) as u64,
                bytes: row.get::<_, i64>(1)?.max(0) as u64,
            })
        })
        .optional()?;
    Ok(held.unwrap_or_default())
}

/// Adds `change` to `tenant`'s usage.
fn record(c: &Connection, tenant: &str, change: Change) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO usage (tenant, keys, bytes) VALUES (?1, ?2, ?3) \
         ON CONFLICT (tenant) DO UPDATE SET keys = keys + excluded.keys, bytes = bytes + excluded.bytes",
    )?
    .execute(params![tenant, change.keys, change.bytes])?;
    Ok(())
}

/// Sets `key`, within the store's cap and the tenant's quota.
fn write(
    c: &Connection,
    quota: &Quota,
    scope: &Scope,
    store: &str,
    key: &str,
    value: &[u8],
) -> CallResult<()> {
    let old: Option<i64> = c
        .prepare_cached(
            "SELECT length(value) FROM entries \
             WHERE tenant = ?1 AND app = ?2 AND store = ?3 AND key = ?4",
        )?
        .query_row(params![scope.tenant, scope.app, store, key], |row| {
            row.get(0)
        })
        .optional()?;
    let change = match old {
        Some(old) => Change {
            keys: 0,
            bytes: value.len() as i64 - old,
        },
        None => {
            let held: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3",
                )?
                .query_row(params![scope.tenant, scope.app, store], |row| row.get(0))?;
            if held as u64 >= MAX_KEYS_PER_STORE {
                return Err(Failure::StoreFull.into());
            }
            Change {
                keys: 1,
                bytes: (key.len() + value.len()) as i64,
            }
        }
    };
    quota.admit(usage(c, &scope.tenant)?, change)?;
    c.prepare_cached(
        "INSERT INTO entries (tenant, app, store, key, value) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (tenant, app, store, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![scope.tenant, scope.app, store, key, value])?;
    record(c, &scope.tenant, change)?;
    Ok(())
}

/// Removes `key` if it is there.
fn remove(c: &Connection, scope: &Scope, store: &str, key: &str) -> rusqlite::Result<()> {
    let old: Option<i64> = c
        .prepare_cached(
            "DELETE FROM entries WHERE tenant = ?1 AND app = ?2 AND store = ?3 AND key = ?4 \
             RETURNING length(value)",
        )?
        .query_row(params![scope.tenant, scope.app, store, key], |row| {
            row.get(0)
        })
        .optional()?;
    if let Some(old) = old {
        let change = Change {
            keys: -1,
            bytes: -((key.len() as i64) + old),
        };
        record(c, &scope.tenant, change)?;
    }
    Ok(())
}

/// Opens (making if need be) the file and its tables. A file from before
/// usage was counted gets its usage counted once, from its entries.
/// `synchronous = NORMAL` under WAL keeps every commit through a killed
/// process; only an OS crash may lose the last ones.
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
             PRAGMA busy_timeout = 5000;
             BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS entries (
                 tenant TEXT NOT NULL, app TEXT NOT NULL, store TEXT NOT NULL,
                 key TEXT NOT NULL, value BLOB NOT NULL,
                 PRIMARY KEY (tenant, app, store, key)
             );
             CREATE TABLE IF NOT EXISTS usage (
                 tenant TEXT PRIMARY KEY, keys INTEGER NOT NULL, bytes INTEGER NOT NULL
             );
             INSERT INTO usage (tenant, keys, bytes)
                 SELECT tenant, COUNT(*), SUM(length(CAST(key AS BLOB)) + length(value))
                 FROM entries WHERE (SELECT user_version FROM pragma_user_version) = 0
                 GROUP BY tenant;
             PRAGMA user_version = 1;
             COMMIT;",
        )
        .map_err(|e| fail(&e))?;
    Ok(connection)
}
