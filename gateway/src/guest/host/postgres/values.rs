//! How PostgreSQL values cross the `spin:postgres@4.0.0` interface, both
//! ways, as Spin maps them: each column type to its `db-data-type`, each
//! value to its `db-value` (types the interface has no case for arrive as
//! their raw bytes, `unsupported`), and each `parameter-value` to a value
//! tokio-postgres can send. Types tokio-postgres lacks (interval, numeric
//! ranges, an untyped NULL, raw bytes) get small wrappers here.

use super::bindings::spin::postgres::postgres::{
    DbDataType, DbValue, Interval, ParameterValue, RangeBoundKind,
};
use super::session::Parameter;
use bytes::BytesMut;
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use postgres_range::{BoundSided, BoundType, Normalizable, Range, RangeBound};
use rust_decimal::Decimal;
use std::error::Error as StdError;
use std::str::FromStr;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, accepts, to_sql_checked};

type BoxError = Box<dyn StdError + Sync + Send>;

/// The interface's name for a column's type.
pub(crate) fn data_type(ty: &Type) -> DbDataType {
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
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_RANGE => DbDataType::RangeInt32,
        Type::INT8_RANGE => DbDataType::RangeInt64,
        Type::NUM_RANGE => DbDataType::RangeDecimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        _ => DbDataType::Other(ty.name().to_string()),
    }
}

/// Column `i` of `row`, as the interface carries it.
pub(crate) fn value(row: &Row, i: usize) -> Result<DbValue, String> {
    let ty = row.columns()[i].type_().clone();
    macro_rules! get {
        ($t:ty, $case:expr) => {
            super::session::column::<$t>(row, i)?.map_or(DbValue::DbNull, $case)
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
        Type::DATE => get!(NaiveDate, |d| DbValue::Date(date_tuple(d))),
        Type::TIME => get!(NaiveTime, |t| DbValue::Time(time_tuple(t))),
        Type::TIMESTAMP => get!(NaiveDateTime, |dt| DbValue::Datetime(datetime_tuple(dt))),
        Type::TIMESTAMPTZ => get!(chrono::DateTime<chrono::Utc>, |dt| {
            DbValue::Datetime(datetime_tuple(dt.naive_utc()))
        }),
        Type::UUID => get!(uuid::Uuid, |u| DbValue::Uuid(u.to_string())),
        Type::JSONB => get!(serde_json::Value, |j| DbValue::Jsonb(
            j.to_string().into_bytes()
        )),
        Type::NUMERIC => get!(Decimal, |d| DbValue::Decimal(d.to_string())),
        Type::INT4_RANGE => get!(Range<i32>, |r| DbValue::RangeInt32(bounds(&r, |v| *v))),
        Type::INT8_RANGE => get!(Range<i64>, |r| DbValue::RangeInt64(bounds(&r, |v| *v))),
        Type::NUM_RANGE => get!(Range<Numeric>, |r| {
            DbValue::RangeDecimal(bounds(&r, |v| v.0.to_string()))
        }),
        Type::INT4_ARRAY => get!(Vec<Option<i32>>, DbValue::ArrayInt32),
        Type::INT8_ARRAY => get!(Vec<Option<i64>>, DbValue::ArrayInt64),
        Type::NUMERIC_ARRAY => get!(Vec<Option<Decimal>>, |a| {
            DbValue::ArrayDecimal(a.into_iter().map(|d| d.map(|d| d.to_string())).collect())
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            get!(Vec<Option<String>>, DbValue::ArrayStr)
        }
        Type::INTERVAL => get!(PgInterval, |i| DbValue::Interval(i.0)),
        _ => get!(Raw, |r| DbValue::Unsupported(r.0)),
    })
}

/// Bytes a value takes on the host, roughly, for the result cap.
pub(crate) fn size(value: &DbValue) -> usize {
    match value {
        DbValue::Str(s) | DbValue::Uuid(s) | DbValue::Decimal(s) => s.len(),
        DbValue::Binary(b) | DbValue::Jsonb(b) | DbValue::Unsupported(b) => b.len(),
        DbValue::ArrayInt32(a) => a.len() * 8,
        DbValue::ArrayInt64(a) => a.len() * 16,
        DbValue::ArrayDecimal(a) | DbValue::ArrayStr(a) => {
            a.iter().map(|s| s.as_ref().map_or(8, String::len)).sum()
        }
        _ => 16,
    }
}

/// A parameter from the guest, ready to send; a value that cannot be one
/// (an impossible date, a decimal that does not parse) says why.
pub(crate) fn parameter(value: ParameterValue) -> Result<Parameter, String> {
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(v),
        ParameterValue::Int8(v) => Box::new(v),
        ParameterValue::Int16(v) => Box::new(v),
        ParameterValue::Int32(v) => Box::new(v),
        ParameterValue::Int64(v) => Box::new(v),
        ParameterValue::Floating32(v) => Box::new(v),
        ParameterValue::Floating64(v) => Box::new(v),
        ParameterValue::Str(v) => Box::new(v),
        ParameterValue::Binary(v) => Box::new(v),
        ParameterValue::Date((y, m, d)) => Box::new(date(y, m, d)?),
        ParameterValue::Time((h, mi, s, ns)) => Box::new(time(h, mi, s, ns)?),
        ParameterValue::Datetime((y, m, d, h, mi, s, ns)) => {
            Box::new(NaiveDateTime::new(date(y, m, d)?, time(h, mi, s, ns)?))
        }
        ParameterValue::Timestamp(seconds) => Box::new(
            chrono::DateTime::from_timestamp(seconds, 0)
                .ok_or_else(|| format!("timestamp {seconds} is out of range"))?,
        ),
        ParameterValue::Uuid(v) => {
            Box::new(uuid::Uuid::parse_str(&v).map_err(|e| format!("uuid {v:?}: {e}"))?)
        }
        ParameterValue::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(&v)
                .map_err(|e| format!("jsonb is not JSON: {e}"))?,
        ),
        ParameterValue::Decimal(v) => Box::new(decimal(&v)?),
        ParameterValue::RangeInt32((lower, upper)) => Box::new(range(lower, upper, Ok)?),
        ParameterValue::RangeInt64((lower, upper)) => Box::new(range(lower, upper, Ok)?),
        ParameterValue::RangeDecimal((lower, upper)) => {
            Box::new(range(lower, upper, |s: String| decimal(&s).map(Numeric))?)
        }
        ParameterValue::ArrayInt32(v) => Box::new(v),
        ParameterValue::ArrayInt64(v) => Box::new(v),
        ParameterValue::ArrayDecimal(v) => Box::new(
            v.iter()
                .map(|d| d.as_deref().map(decimal).transpose())
                .collect::<Result<Vec<_>, _>>()?,
        ),
        ParameterValue::ArrayStr(v) => Box::new(v),
        ParameterValue::Interval(v) => Box::new(PgInterval(v)),
        ParameterValue::DbNull => Box::new(Null),
    })
}

fn decimal(text: &str) -> Result<Decimal, String> {
    Decimal::from_str(text).map_err(|e| format!("decimal {text:?}: {e}"))
}

fn date(year: i32, month: u8, day: u8) -> Result<NaiveDate, String> {
    NaiveDate::from_ymd_opt(year, month.into(), day.into())
        .ok_or_else(|| format!("{year}-{month}-{day} is not a date"))
}

fn time(hour: u8, minute: u8, second: u8, nanos: u32) -> Result<NaiveTime, String> {
    NaiveTime::from_hms_nano_opt(hour.into(), minute.into(), second.into(), nanos)
        .ok_or_else(|| format!("{hour}:{minute}:{second}.{nanos:09} is not a time"))
}

fn date_tuple(d: NaiveDate) -> (i32, u8, u8) {
    // Month and day always fit a byte.
    (d.year(), d.month() as u8, d.day() as u8)
}

fn time_tuple(t: NaiveTime) -> (u8, u8, u8, u32) {
    (
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond(),
    )
}

fn datetime_tuple(dt: NaiveDateTime) -> (i32, u8, u8, u8, u8, u8, u32) {
    let (y, mo, d) = date_tuple(dt.date());
    let (h, mi, s, ns) = time_tuple(dt.time());
    (y, mo, d, h, mi, s, ns)
}

/// A range's bounds as the interface carries them (an empty range has
/// none).
type Bounds<W> = (Option<(W, RangeBoundKind)>, Option<(W, RangeBoundKind)>);

fn bounds<T, W>(range: &Range<T>, wit: impl Fn(&T) -> W) -> Bounds<W>
where
    T: PartialOrd + Normalizable,
{
    fn kind(t: BoundType) -> RangeBoundKind {
        match t {
            BoundType::Inclusive => RangeBoundKind::Inclusive,
            BoundType::Exclusive => RangeBoundKind::Exclusive,
        }
    }
    (
        range.lower().map(|b| (wit(&b.value), kind(b.type_))),
        range.upper().map(|b| (wit(&b.value), kind(b.type_))),
    )
}

fn range<W, T>(
    lower: Option<(W, RangeBoundKind)>,
    upper: Option<(W, RangeBoundKind)>,
    value: impl Fn(W) -> Result<T, String>,
) -> Result<Range<T>, String>
where
    T: PartialOrd + Normalizable,
{
    fn bound<S: BoundSided, W, T: PartialOrd>(
        (v, kind): (W, RangeBoundKind),
        value: &impl Fn(W) -> Result<T, String>,
    ) -> Result<RangeBound<S, T>, String> {
        let type_ = match kind {
            RangeBoundKind::Inclusive => BoundType::Inclusive,
            RangeBoundKind::Exclusive => BoundType::Exclusive,
        };
        Ok(RangeBound::new(value(v)?, type_))
    }
    Ok(Range::new(
        lower.map(|b| bound(b, &value)).transpose()?,
        upper.map(|b| bound(b, &value)).transpose()?,
    ))
}

/// A numeric range bound: continuous, so normalising changes nothing.
#[derive(Debug, PartialEq, PartialOrd)]
pub(crate) struct Numeric(Decimal);

impl Normalizable for Numeric {
    fn normalize<S: BoundSided>(bound: RangeBound<S, Self>) -> RangeBound<S, Self> {
        bound
    }
}

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Decimal::from_sql(ty, raw).map(Numeric)
    }
    accepts!(NUMERIC);
}

impl ToSql for Numeric {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.0.to_sql(ty, out)
    }
    accepts!(NUMERIC);
    to_sql_checked!();
}

/// An `interval`: microseconds, days and months, as PostgreSQL sends it.
#[derive(Debug)]
pub(crate) struct PgInterval(Interval);

impl<'a> FromSql<'a> for PgInterval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let raw: &[u8; 16] = raw
            .try_into()
            .map_err(|_| format!("an interval is 16 bytes, not {}", raw.len()))?;
        let (micros, rest) = raw.split_at(8);
        let (days, months) = rest.split_at(4);
        Ok(PgInterval(Interval {
            micros: i64::from_be_bytes(micros.try_into()?),
            days: i32::from_be_bytes(days.try_into()?),
            months: i32::from_be_bytes(months.try_into()?),
        }))
    }
    accepts!(INTERVAL);
}

impl ToSql for PgInterval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.extend_from_slice(&self.0.micros.to_be_bytes());
        out.extend_from_slice(&self.0.days.to_be_bytes());
        out.extend_from_slice(&self.0.months.to_be_bytes());
        Ok(IsNull::No)
    }
    accepts!(INTERVAL);
    to_sql_checked!();
}

/// The bytes of a value of a type the interface has no case for.
pub(crate) struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// NULL, for a parameter of any type.
#[derive(Debug)]
pub(crate) struct Null;

impl ToSql for Null {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}
