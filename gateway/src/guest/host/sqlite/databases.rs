//! Where apps' SQLite databases live and how they are opened: one file per
//! app and database label, `<data-dir>/sqlite/<tenant id>/<app id>/<label>.db`
//! (node-local, like Spin's default database), with the limits a hostile
//! guest must not get around:
//!
//! - each statement runs for at most [`STATEMENT_TIME_LIMIT`], then is
//!   interrupted;
//! - a tenant's databases together hold at most the tenant quota: each
//!   connection's `max_page_count` is what the tenant's other files leave;
//! - no other file is reachable: `ATTACH` (and `VACUUM INTO`, which
//!   attaches) is refused by SQLite's own limit, extensions never load;
//! - guest SQL passes an authorizer: only harmless `PRAGMA`s run (no
//!   `max_page_count`, `hard_heap_limit`, `temp_store_directory`, ...),
//!   and no `TEMP` objects (they would live outside the quota), with
//!   SQLite's defensive mode on;
//! - a string or blob is at most [`MAX_RESULT_BYTES`] inside SQLite, and a
//!   result at most that in all.
//!
//! Calls block: run them off the executor.

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one statement may run.
pub(crate) const STATEMENT_TIME_LIMIT: Duration = Duration::from_secs(5);
/// The largest result one statement may return, in bytes (roughly).
pub(crate) const MAX_RESULT_BYTES: usize = 16 << 20;
/// The tenant quota when the operator sets none: all of a tenant's
/// databases together.
pub(crate) const DEFAULT_TENANT_QUOTA_BYTES: u64 = 256 << 20;

/// Whose databases these are: the tenant's and the app's ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SqliteScope {
    pub(crate) tenant: String,
    pub(crate) app: String,
}

/// The gateway's SQLite databases.
#[derive(Debug)]
pub(crate) struct SqliteDatabases {
    root: PathBuf,
    tenant_quota_bytes: u64,
}

/// What one component may open: its app's databases, those its manifest
/// lists in `sqlite_databases`.
#[derive(Clone, Debug)]
pub(crate) struct SqliteGrant {
    pub(crate) scope: SqliteScope,
    pub(crate) databases: Arc<BTreeSet<String>>,
    pub(crate) backend: Arc<SqliteDatabases>,
}

/// A value, as the interface carries it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// A statement's result.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Rows {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
}

/// Why a call failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SqliteFailure {
    /// The tenant's quota is used up.
    Full,
    /// Anything else, with SQLite's (or Okra's) words.
    Io(String),
}

/// One open database.
#[derive(Debug)]
pub(crate) struct SqliteConnection {
    connection: Arc<Mutex<Connection>>,
    /// Set while the host itself runs a statement, which the authorizer
    /// then lets through.
    host_statement: Arc<AtomicBool>,
    /// The tenant's directory and this file, to keep the quota current.
    quota: Quota,
}

/// What sizes a connection: the tenant's quota, its directory and the
/// file it is charged for.
#[derive(Clone, Debug)]
struct Quota {
    tenant_bytes: u64,
    tenant_dir: PathBuf,
    file: PathBuf,
}

/// PRAGMAs that only describe the schema or check the file: a guest may
/// run them with or without an argument.
const QUERY_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];
/// PRAGMAs a guest may read (without an argument).
const READABLE_PRAGMAS: &[&str] = &[
    "foreign_keys",
    "user_version",
    "application_id",
    "page_count",
    "freelist_count",
];
/// PRAGMAs a guest may also set: they change only its own connection or
/// its own file's header.
const SETTABLE_PRAGMAS: &[&str] = &[
    "foreign_keys",
    "defer_foreign_keys",
    "recursive_triggers",
    "user_version",
    "application_id",
];

/// Whether guest SQL may do `action`.
fn authorize(action: &AuthAction<'_>) -> Authorization {
    let allowed = match action {
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            QUERY_PRAGMAS.contains(&name.as_str())
                || match pragma_value {
                    None => READABLE_PRAGMAS.contains(&name.as_str()),
                    Some(_) => SETTABLE_PRAGMAS.contains(&name.as_str()),
                }
        }
        AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => false,
        _ => true,
    };
    if allowed {
        Authorization::Allow
    } else {
        Authorization::Deny
    }
}

impl SqliteDatabases {
    /// Databases under `root` (made when first used).
    pub(crate) fn new(root: PathBuf, tenant_quota_bytes: u64) -> Self {
        SqliteDatabases {
            root,
            tenant_quota_bytes,
        }
    }

    /// The file of database `label` of the app of `scope`. Ids and labels
    /// are single path segments of safe characters, or there is none.
    fn path(&self, scope: &SqliteScope, label: &str) -> Option<PathBuf> {
        [&scope.tenant, &scope.app, label]
            .iter()
            .all(|part| is_safe_segment(part))
            .then(|| {
                self.root
                    .join(&scope.tenant)
                    .join(&scope.app)
                    .join(format!("{label}.db"))
            })
    }

    /// Opens database `label` of the app of `scope`, sized to what the
    /// tenant's other databases leave of its quota.
    pub(crate) fn open(
        &self,
        scope: &SqliteScope,
        label: &str,
    ) -> Result<SqliteConnection, SqliteFailure> {
        let path = self
            .path(scope, label)
            .ok_or_else(|| SqliteFailure::Io(format!("{label:?} cannot name a database file")))?;
        let io = |e: &dyn std::fmt::Display| SqliteFailure::Io(e.to_string());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
        }
        let mut connection = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| io(&e))?;
        use rusqlite::limits::Limit;
        let max_length = i32::try_from(MAX_RESULT_BYTES).unwrap_or(i32::MAX);
        for (limit, value) in [
            (Limit::SQLITE_LIMIT_ATTACHED, 0),
            (Limit::SQLITE_LIMIT_LENGTH, max_length),
            (Limit::SQLITE_LIMIT_SQL_LENGTH, 1 << 20),
        ] {
            connection.set_limit(limit, value).map_err(|e| io(&e))?;
        }
        connection
            .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
            .map_err(|e| io(&e))?;
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 1000; \
                 PRAGMA journal_size_limit = {MAX_RESULT_BYTES};"
            ))
            .map_err(|e| io(&e))?;
        let host_statement = Arc::new(AtomicBool::new(false));
        let host = host_statement.clone();
        connection
            .authorizer(Some(move |context: AuthContext<'_>| {
                if host.load(Ordering::Relaxed) {
                    Authorization::Allow
                } else {
                    authorize(&context.action)
                }
            }))
            .map_err(|e| io(&e))?;
        let quota = Quota {
            tenant_bytes: self.tenant_quota_bytes,
            tenant_dir: self.root.join(&scope.tenant),
            file: path,
        };
        fit_quota(&connection, &quota, &host_statement).map_err(|e| io(&e))?;
        Ok(SqliteConnection {
            connection: Arc::new(Mutex::new(connection)),
            host_statement,
            quota,
        })
    }
}

/// Sets the connection's `max_page_count` to what the tenant's other files
/// leave of its quota. SQLite keeps it at least the file's current size: a
/// file already over the quota can shrink, not grow.
fn fit_quota(
    connection: &Connection,
    quota: &Quota,
    host_statement: &AtomicBool,
) -> rusqlite::Result<()> {
    host_statement.store(true, Ordering::Relaxed);
    let result = (|| {
        let others = used_bytes(&quota.tenant_dir, &quota.file);
        let page_size: i64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let page_size = u64::try_from(page_size).unwrap_or(4096).max(1);
        let pages = quota.tenant_bytes.saturating_sub(others) / page_size;
        connection.query_row(
            &format!("PRAGMA max_page_count = {}", pages.max(1)),
            [],
            |_| Ok(()),
        )
    })();
    host_statement.store(false, Ordering::Relaxed);
    result
}

/// Bytes the files under `dir` (recursively) use, except `except` (and
/// its `-wal` and `-shm` companions, which are its own).
fn used_bytes(dir: &Path, except: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => used_bytes(&path, except),
                Ok(t) if t.is_file() && !is_file_of(&path, except) => {
                    entry.metadata().map_or(0, |m| m.len())
                }
                _ => 0,
            }
        })
        .sum()
}

/// Whether `path` is `database` or one of its SQLite companion files.
fn is_file_of(path: &Path, database: &Path) -> bool {
    let (Some(name), Some(db)) = (path.to_str(), database.to_str()) else {
        return false;
    };
    name == db
        || name
            .strip_prefix(db)
            .is_some_and(|rest| rest == "-wal" || rest == "-shm")
}

/// Letters, digits, `-` and `_`, 1 to 64 of them.
pub(crate) fn is_safe_segment(part: &str) -> bool {
    (1..=64).contains(&part.len())
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SqliteConnection {
    /// Runs `statement` with `parameters`, within the time limit and the
    /// result cap.
    pub(crate) fn execute(
        &self,
        statement: &str,
        parameters: Vec<Value>,
    ) -> Result<Rows, SqliteFailure> {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        // Other connections of the tenant may have grown since the last
        // statement: charge this one what is left now.
        fit_quota(&connection, &self.quota, &self.host_statement)
            .map_err(|e| SqliteFailure::Io(e.to_string()))?;
        let deadline = Instant::now() + STATEMENT_TIME_LIMIT;
        connection
            .progress_handler(10_000, Some(move || Instant::now() > deadline))
            .map_err(|e| SqliteFailure::Io(e.to_string()))?;
        run(&connection, statement, parameters).map_err(|e| match e {
            RunError::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => {
                SqliteFailure::Full
            }
            RunError::Sqlite(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) =>
            {
                SqliteFailure::Io(format!(
                    "the statement ran longer than {STATEMENT_TIME_LIMIT:?} and was stopped"
                ))
            }
            RunError::Sqlite(e) => SqliteFailure::Io(e.to_string()),
            RunError::TooLarge => SqliteFailure::Io(format!(
                "the query result exceeds the limit of {MAX_RESULT_BYTES} bytes"
            )),
        })
    }
}

impl SqliteConnection {
    /// The rowid of the last row inserted through this connection.
    pub(crate) fn last_insert_rowid(&self) -> i64 {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_insert_rowid()
    }

    /// Rows the last statement changed.
    pub(crate) fn changes(&self) -> u64 {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .changes()
    }

    /// Another handle to the same connection, for a blocking call.
    pub(crate) fn share(&self) -> SqliteConnection {
        SqliteConnection {
            connection: self.connection.clone(),
            host_statement: self.host_statement.clone(),
            quota: self.quota.clone(),
        }
    }
}

enum RunError {
    Sqlite(rusqlite::Error),
    TooLarge,
}

impl From<rusqlite::Error> for RunError {
    fn from(e: rusqlite::Error) -> Self {
        RunError::Sqlite(e)
    }
}

fn run(connection: &Connection, statement: &str, parameters: Vec<Value>) -> Result<Rows, RunError> {
    let mut prepared = connection.prepare(statement)?;
    let columns: Vec<String> = prepared.column_names().map(String::from).collect();
    let parameters: Vec<SqlValue> = parameters.into_iter().map(to_sql).collect();
    let mut rows = prepared.query(rusqlite::params_from_iter(parameters))?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let value = from_sql(row.get_ref(i)?);
            bytes += match &value {
                Value::Text(t) => t.len(),
                Value::Blob(b) => b.len(),
                _ => 8,
            };
            values.push(value);
        }
        if bytes > MAX_RESULT_BYTES {
            return Err(RunError::TooLarge);
        }
        out.push(values);
    }
    Ok(Rows { columns, rows: out })
}

fn to_sql(value: Value) -> SqlValue {
    match value {
        Value::Integer(n) => SqlValue::Integer(n),
        Value::Real(r) => SqlValue::Real(r),
        Value::Text(t) => SqlValue::Text(t),
        Value::Blob(b) => SqlValue::Blob(b),
        Value::Null => SqlValue::Null,
    }
}

fn from_sql(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Real(r) => Value::Real(r),
        // Text SQLite holds as bytes that are not UTF-8 is read lossily,
        // never a panic.
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Null => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(tenant: &str, app: &str) -> SqliteScope {
        SqliteScope {
            tenant: tenant.into(),
            app: app.into(),
        }
    }

    fn exec(c: &SqliteConnection, sql: &str) -> Result<Rows, SqliteFailure> {
        c.execute(sql, Vec::new())
    }

    #[test]
    fn values_round_trip_and_apps_have_their_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqliteDatabases::new(dir.path().to_path_buf(), 1 << 30);
        let a = dbs.open(&scope("t1", "a"), "default").unwrap();
        exec(&a, "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)").unwrap();
        let values = vec![
            Value::Integer(-7),
            Value::Real(1.5),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 255]),
            Value::Null,
        ];
        a.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", values.clone())
            .unwrap();
        let rows = exec(&a, "SELECT * FROM t").unwrap();
        assert_eq!(rows.columns, ["i", "r", "s", "b", "n"]);
        assert_eq!(rows.rows, vec![values]);
        // Another app of the tenant, and another tenant, see nothing of it.
        for other in [scope("t1", "b"), scope("t2", "a")] {
            let c = dbs.open(&other, "default").unwrap();
            assert!(exec(&c, "SELECT * FROM t").is_err(), "{other:?}");
        }
    }

    #[test]
    fn no_other_file_is_reachable() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqliteDatabases::new(dir.path().join("sqlite"), 1 << 30);
        let c = dbs.open(&scope("t1", "a"), "default").unwrap();
        let outside = dir.path().join("outside.db");
        for sql in [
            format!("ATTACH DATABASE '{}' AS other", outside.display()),
            format!("VACUUM INTO '{}'", outside.display()),
            "SELECT load_extension('/lib/x.so')".to_string(),
        ] {
            assert!(exec(&c, &sql).is_err(), "{sql}");
        }
        assert!(!outside.exists());
        // PRAGMAs that reach past this file, its quota or the guest's
        // limits, and TEMP objects (outside the quota), are refused.
        for sql in [
            "PRAGMA hard_heap_limit = 1",
            "PRAGMA soft_heap_limit = 1",
            "PRAGMA max_page_count = 4294967294",
            "PRAGMA page_size = 65536",
            "PRAGMA temp_store_directory = '/tmp'",
            "PRAGMA temp_store = MEMORY",
            "PRAGMA cache_size = 1000000",
            "PRAGMA writable_schema = 1",
            "PRAGMA journal_mode = DELETE",
            "PRAGMA max_page_count",
            "CREATE TEMP TABLE t (x)",
            "SELECT zeroblob(999999999)",
        ] {
            assert!(exec(&c, sql).is_err(), "{sql}");
        }
        // Harmless ones still work.
        exec(&c, "CREATE TABLE kept (x)").unwrap();
        exec(&c, "PRAGMA user_version = 3").unwrap();
        assert_eq!(
            exec(&c, "PRAGMA user_version").unwrap().rows,
            vec![vec![Value::Integer(3)]]
        );
        assert_eq!(exec(&c, "PRAGMA table_info(kept)").unwrap().rows.len(), 1);
        // Labels and ids that are not one safe path segment open nothing.
        for (s, label) in [
            (scope("t1", "a"), "../x"),
            (scope("t1", "a"), "a/b"),
            (scope("..", "a"), "default"),
            (scope("t1", ""), "default"),
        ] {
            assert!(dbs.open(&s, label).is_err(), "{s:?} {label}");
        }
    }

    #[test]
    fn the_tenant_quota_spans_its_databases_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqliteDatabases::new(dir.path().to_path_buf(), 1 << 20);
        let a = dbs.open(&scope("t1", "a"), "default").unwrap();
        // Opened before `a` grows: it must still be charged what `a` takes.
        let b = dbs.open(&scope("t1", "b"), "default").unwrap();
        exec(&a, "CREATE TABLE t (b BLOB)").unwrap();
        exec(&b, "CREATE TABLE t (b BLOB)").unwrap();
        let fill = |c: &SqliteConnection| loop {
            match c.execute(
                "INSERT INTO t VALUES (?)",
                vec![Value::Blob(vec![7; 64 << 10])],
            ) {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(fill(&a), SqliteFailure::Full);
        let kept = exec(&a, "SELECT count(*) FROM t").unwrap().rows[0][0].clone();
        assert!(matches!(kept, Value::Integer(n) if n > 0));
        drop(a);
        // Another app of the same tenant finds the quota used.
        let blob = vec![Value::Blob(vec![7; 256 << 10])];
        assert_eq!(
            b.execute("INSERT INTO t VALUES (?)", blob.clone())
                .unwrap_err(),
            SqliteFailure::Full
        );
        // Another tenant does not.
        let c = dbs.open(&scope("t2", "a"), "default").unwrap();
        exec(&c, "CREATE TABLE t (b BLOB)").unwrap();
        c.execute("INSERT INTO t VALUES (?)", blob).unwrap();
        // What was stored stays.
        let a = dbs.open(&scope("t1", "a"), "default").unwrap();
        assert_eq!(exec(&a, "SELECT count(*) FROM t").unwrap().rows[0][0], kept);
    }

    #[test]
    fn a_runaway_statement_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqliteDatabases::new(dir.path().to_path_buf(), 1 << 30);
        let c = dbs.open(&scope("t1", "a"), "default").unwrap();
        let forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                       SELECT count(*) FROM n";
        match exec(&c, forever) {
            Err(SqliteFailure::Io(e)) => assert!(e.contains("was stopped"), "{e}"),
            other => panic!("{other:?}"),
        }
        // The connection still works.
        assert_eq!(
            exec(&c, "SELECT 1").unwrap().rows,
            vec![vec![Value::Integer(1)]]
        );
    }
}
