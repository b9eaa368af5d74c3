//! Spin's SQLite interfaces, `fermyon:spin/sqlite@2.0.0` (spin-sdk 2 to 5)
//! and `spin:sqlite/sqlite@3.0.0`: a guest opens only the databases its
//! component lists in `sqlite_databases` (others: `access-denied`), each
//! its app's own node-local file, with the limits `databases` enforces.
//! Both versions share one implementation; 3.0 adds `last-insert-rowid`
//! and `changes`.

pub(crate) mod databases;

use crate::guest::state::GuestState;
use databases::{Rows, SqliteConnection, SqliteFailure, Value};
use wasmtime::component::{HasSelf, Linker, Resource};

// Both versions in one document; 3.0 uses 2.0's value types, which the
// component model compares by structure, so one set of conversions serves
// both (only the `connection` resources are each interface's own).
wasmtime::component::bindgen!({
    inline: "
        package okra:sqlite-host;

        world host {
            import fermyon:spin/sqlite@2.0.0;
            import spin:sqlite/sqlite@3.0.0;
        }

        package fermyon:spin@2.0.0 {
            interface sqlite {
                resource connection {
                    open: static func(database: string) -> result<connection, error>;
                    execute: func(statement: string, parameters: list<value>) -> result<query-result, error>;
                }
                variant error {
                    no-such-database,
                    access-denied,
                    invalid-connection,
                    database-full,
                    io(string)
                }
                record query-result {
                    columns: list<string>,
                    rows: list<row-result>,
                }
                record row-result {
                    values: list<value>
                }
                variant value {
                    integer(s64),
                    real(f64),
                    text(string),
                    blob(list<u8>),
                    null
                }
            }
        }

        package spin:sqlite@3.0.0 {
            interface sqlite {
                use fermyon:spin/sqlite@2.0.0.{error, query-result, value};
                resource connection {
                    open: static func(database: string) -> result<connection, error>;
                    execute: func(statement: string, parameters: list<value>) -> result<query-result, error>;
                    last-insert-rowid: func() -> s64;
                    changes: func() -> u64;
                }
            }
        }
    ",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/sqlite.connection": OpenDatabase,
        "spin:sqlite/sqlite.connection": OpenDatabase,
    },
});

use fermyon::spin::sqlite::{Error, QueryResult, RowResult, Value as WitValue};

const V2: &str = "fermyon:spin/sqlite@2.0.0";
const V3: &str = "spin:sqlite/sqlite@3.0.0";

/// Databases one instance may have open at once.
const MAX_OPEN_DATABASES: usize = 8;

/// True when `interface` (an import name, with version) is served here.
pub(crate) fn provides(interface: &str) -> bool {
    interface == V2 || interface == V3
}

/// Links both SQLite interfaces.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    fermyon::spin::sqlite::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)?;
    spin::sqlite::sqlite::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)
}

/// A database a guest opened.
#[expect(
    unreachable_pub,
    reason = "bindgen! re-exports the resource's type from the module it generates"
)]
pub struct OpenDatabase {
    connection: SqliteConnection,
}

/// Why `open` or `execute` failed, before it becomes a version's error.
enum Failure {
    AccessDenied,
    TooMany,
    Full,
    Io(String),
}

impl From<SqliteFailure> for Failure {
    fn from(failure: SqliteFailure) -> Self {
        match failure {
            SqliteFailure::Full => Failure::Full,
            SqliteFailure::Io(e) => Failure::Io(e),
        }
    }
}

impl GuestState {
    async fn sqlite_open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenDatabase>, Failure>> {
        let Some(grant) = self.sqlite.clone() else {
            return Ok(Err(Failure::AccessDenied));
        };
        if !grant.databases.contains(&label) {
            return Ok(Err(Failure::AccessDenied));
        }
        if self.sqlite_open >= MAX_OPEN_DATABASES {
            return Ok(Err(Failure::TooMany));
        }
        let opened =
            tokio::task::spawn_blocking(move || grant.backend.open(&grant.scope, &label)).await?;
        match opened {
            Ok(connection) => {
                self.sqlite_open += 1;
                Ok(Ok(self.table.push(OpenDatabase { connection })?))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn sqlite_execute(
        &mut self,
        database: &Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, Failure>> {
        let connection = self.table.get(database)?.connection.share();
        let rows =
            tokio::task::spawn_blocking(move || connection.execute(&statement, parameters)).await?;
        Ok(rows.map_err(Failure::from))
    }

    fn sqlite_close(&mut self, database: Resource<OpenDatabase>) -> wasmtime::Result<()> {
        self.table.delete(database)?;
        self.sqlite_open = self.sqlite_open.saturating_sub(1);
        Ok(())
    }
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::AccessDenied => Error::AccessDenied,
            Failure::TooMany => Error::Io(format!(
                "{MAX_OPEN_DATABASES} databases are open in this instance, the most it may"
            )),
            Failure::Full => Error::DatabaseFull,
            Failure::Io(e) => Error::Io(e),
        }
    }
}

fn to_value(value: WitValue) -> Value {
    match value {
        WitValue::Integer(n) => Value::Integer(n),
        WitValue::Real(r) => Value::Real(r),
        WitValue::Text(t) => Value::Text(t),
        WitValue::Blob(b) => Value::Blob(b),
        WitValue::Null => Value::Null,
    }
}

fn from_value(value: Value) -> WitValue {
    match value {
        Value::Integer(n) => WitValue::Integer(n),
        Value::Real(r) => WitValue::Real(r),
        Value::Text(t) => WitValue::Text(t),
        Value::Blob(b) => WitValue::Blob(b),
        Value::Null => WitValue::Null,
    }
}

fn query_result(rows: Rows) -> QueryResult {
    QueryResult {
        columns: rows.columns,
        rows: rows
            .rows
            .into_iter()
            .map(|row| RowResult {
                values: row.into_iter().map(from_value).collect(),
            })
            .collect(),
    }
}

impl GuestState {
    /// `open` for both versions.
    async fn sqlite_open_label(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenDatabase>, Error>> {
        Ok(self.sqlite_open(database).await?.map_err(Error::from))
    }

    /// `execute` for both versions.
    async fn sqlite_run(
        &mut self,
        database: Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<WitValue>,
    ) -> wasmtime::Result<Result<QueryResult, Error>> {
        let parameters = parameters.into_iter().map(to_value).collect();
        let rows = self
            .sqlite_execute(&database, statement, parameters)
            .await?;
        Ok(rows.map(query_result).map_err(Error::from))
    }
}

impl fermyon::spin::sqlite::Host for GuestState {}

/// `open`, `execute` and `drop`, the same in both versions.
macro_rules! connection_methods {
    () => {
        async fn open(
            &mut self,
            database: String,
        ) -> wasmtime::Result<Result<Resource<OpenDatabase>, Error>> {
            self.sqlite_open_label(database).await
        }

        async fn execute(
            &mut self,
            database: Resource<OpenDatabase>,
            statement: String,
            parameters: Vec<WitValue>,
        ) -> wasmtime::Result<Result<QueryResult, Error>> {
            self.sqlite_run(database, statement, parameters).await
        }

        async fn drop(&mut self, database: Resource<OpenDatabase>) -> wasmtime::Result<()> {
            self.sqlite_close(database)
        }
    };
}

impl fermyon::spin::sqlite::HostConnection for GuestState {
    connection_methods!();
}

impl spin::sqlite::sqlite::Host for GuestState {}

impl spin::sqlite::sqlite::HostConnection for GuestState {
    connection_methods!();

    async fn last_insert_rowid(
        &mut self,
        database: Resource<OpenDatabase>,
    ) -> wasmtime::Result<i64> {
        Ok(self.table.get(&database)?.connection.last_insert_rowid())
    }

    async fn changes(&mut self, database: Resource<OpenDatabase>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&database)?.connection.changes())
    }
}
