//! `fermyon:spin/postgres@2.0.0` (spin-sdk 2 to 5's `pg`) over the same
//! sessions as 4.0, with the older value set of `fermyon:spin/rdbms-types`:
//! booleans, signed integers, floats, text and bytes; a column of any
//! other type is `unsupported`, as in Spin. Unsigned parameters go as the
//! next wider signed type (PostgreSQL has no unsigned ones); a `u64` past
//! `i64` is `bad-parameter`.

use super::session::{self, Parameter, StatementError};
use crate::guest::state::GuestState;
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use wasmtime::component::{HasSelf, Linker, Resource};

wasmtime::component::bindgen!({
    inline: "
        package fermyon:spin@2.0.0;

        interface rdbms-types {
            variant error {
                connection-failed(string),
                bad-parameter(string),
                query-failed(string),
                value-conversion-failed(string),
                other(string)
            }
            enum db-data-type {
                boolean, int8, int16, int32, int64, uint8, uint16, uint32, uint64,
                floating32, floating64, str, binary, other,
            }
            variant db-value {
                boolean(bool),
                int8(s8),
                int16(s16),
                int32(s32),
                int64(s64),
                uint8(u8),
                uint16(u16),
                uint32(u32),
                uint64(u64),
                floating32(f32),
                floating64(f64),
                str(string),
                binary(list<u8>),
                db-null,
                unsupported,
            }
            variant parameter-value {
                boolean(bool),
                int8(s8),
                int16(s16),
                int32(s32),
                int64(s64),
                uint8(u8),
                uint16(u16),
                uint32(u32),
                uint64(u64),
                floating32(f32),
                floating64(f64),
                str(string),
                binary(list<u8>),
                db-null,
            }
            record column {
                name: string,
                data-type: db-data-type,
            }
            type row = list<db-value>;
            record row-set {
                columns: list<column>,
                rows: list<row>,
            }
        }

        interface postgres {
            use rdbms-types.{parameter-value, row-set, error};
            resource connection {
                open: static func(address: string) -> result<connection, error>;
                query: func(statement: string, params: list<parameter-value>) -> result<row-set, error>;
                execute: func(statement: string, params: list<parameter-value>) -> result<u64, error>;
            }
        }

        world postgres-host {
            import postgres;
        }
    ",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/postgres.connection": super::bindings::PgConnection,
    },
});

use super::bindings::PgConnection;
use fermyon::spin::postgres::{Host, HostConnection};
use fermyon::spin::rdbms_types::{Column, DbDataType, DbValue, Error, ParameterValue, RowSet};

/// Links the interface.
pub(super) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    fermyon::spin::postgres::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)
}

fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::CHAR => DbDataType::Int8,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DbDataType::Str,
        Type::BYTEA => DbDataType::Binary,
        _ => DbDataType::Other,
    }
}

fn value(row: &Row, i: usize) -> Result<DbValue, String> {
    let ty = row.columns()[i].type_().clone();
    macro_rules! get {
        ($t:ty, $case:expr) => {
            session::column::<$t>(row, i)?.map_or(DbValue::DbNull, $case)
        };
    }
    Ok(match ty {
        Type::BOOL => get!(bool, DbValue::Boolean),
        Type::CHAR => get!(i8, DbValue::Int8),
        Type::INT2 => get!(i16, DbValue::Int16),
        Type::INT4 => get!(i32, DbValue::Int32),
        Type::INT8 => get!(i64, DbValue::Int64),
        Type::FLOAT4 => get!(f32, DbValue::Floating32),
        Type::FLOAT8 => get!(f64, DbValue::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => get!(String, DbValue::Str),
        Type::BYTEA => get!(Vec<u8>, DbValue::Binary),
        _ => DbValue::Unsupported,
    })
}

fn size(value: &DbValue) -> usize {
    match value {
        DbValue::Str(s) => s.len(),
        DbValue::Binary(b) => b.len(),
        _ => 16,
    }
}

fn parameter(value: ParameterValue) -> Result<Parameter, String> {
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(v),
        ParameterValue::Int8(v) => Box::new(i16::from(v)),
        ParameterValue::Int16(v) => Box::new(v),
        ParameterValue::Int32(v) => Box::new(v),
        ParameterValue::Int64(v) => Box::new(v),
        ParameterValue::Uint8(v) => Box::new(i16::from(v)),
        ParameterValue::Uint16(v) => Box::new(i32::from(v)),
        ParameterValue::Uint32(v) => Box::new(i64::from(v)),
        ParameterValue::Uint64(v) => Box::new(
            i64::try_from(v).map_err(|_| format!("{v} is past PostgreSQL's largest integer"))?,
        ),
        ParameterValue::Floating32(v) => Box::new(v),
        ParameterValue::Floating64(v) => Box::new(v),
        ParameterValue::Str(v) => Box::new(v),
        ParameterValue::Binary(v) => Box::new(v),
        ParameterValue::DbNull => Box::new(super::values::Null),
    })
}

/// A failed statement as this interface reports it: in words.
fn failed(e: StatementError) -> Error {
    match e {
        StatementError::Conversion(e) => Error::ValueConversionFailed(e),
        e @ StatementError::TooLarge => Error::Other(e.describe()),
        e => Error::QueryFailed(e.describe()),
    }
}

impl fermyon::spin::rdbms_types::Host for GuestState {}

impl Host for GuestState {}

session::host_connection!(parameter, value, size, data_type, failed);
