//! `spin:postgres/postgres@4.0.0` (spin-sdk 5's `pg4`, the version Spin's
//! conformance suite tests): every value type of the interface, mapped as
//! `values` says, and the server's errors with their fields.

use super::bindings::PgConnection;
use super::bindings::spin::postgres::postgres::{
    Column, DbError, Error, Host, HostConnection, ParameterValue, QueryError, RowSet,
};
use super::session::{self, StatementError};
use super::values;
use crate::guest::state::GuestState;
use wasmtime::component::Resource;

/// A failed statement as the interface reports it: the server's error
/// with its fields, or the words for anything else.
fn failed(e: StatementError) -> Error {
    match e {
        StatementError::Failed(e) => match e.as_db_error() {
            Some(db) => Error::QueryFailed(QueryError::DbError(DbError {
                as_text: db.to_string(),
                severity: db.severity().to_string(),
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(String::from),
                extras: Vec::new(),
            })),
            None => Error::QueryFailed(QueryError::Text(e.to_string())),
        },
        StatementError::Conversion(e) => Error::ValueConversionFailed(e),
        e @ StatementError::TooLarge => Error::Other(e.describe()),
        e @ StatementError::TimedOut => Error::QueryFailed(QueryError::Text(e.describe())),
    }
}

impl Host for GuestState {}

session::host_connection!(
    values::parameter,
    values::value,
    values::size,
    values::data_type,
    failed
);
