//! The host bindings of `spin:postgres/postgres@4.0.0`, generated from its
//! WIT, and the resource a guest's connection is.

use tokio::sync::OwnedSemaphorePermit;

wasmtime::component::bindgen!({
    inline: "
        package spin:postgres@4.0.0;

        interface postgres {
            variant error {
                connection-failed(string),
                bad-parameter(string),
                query-failed(query-error),
                value-conversion-failed(string),
                other(string)
            }
            variant query-error {
                text(string),
                db-error(db-error),
            }
            record db-error {
                as-text: string,
                severity: string,
                code: string,
                message: string,
                detail: option<string>,
                extras: list<tuple<string, string>>,
            }
            variant db-data-type {
                boolean, int8, int16, int32, int64, floating32, floating64, str, binary,
                date, time, datetime, timestamp, uuid, jsonb, decimal,
                range-int32, range-int64, range-decimal,
                array-int32, array-int64, array-decimal, array-str,
                interval,
                other(string),
            }
            variant db-value {
                boolean(bool),
                int8(s8),
                int16(s16),
                int32(s32),
                int64(s64),
                floating32(f32),
                floating64(f64),
                str(string),
                binary(list<u8>),
                date(tuple<s32, u8, u8>),
                time(tuple<u8, u8, u8, u32>),
                datetime(tuple<s32, u8, u8, u8, u8, u8, u32>),
                timestamp(s64),
                uuid(string),
                jsonb(list<u8>),
                decimal(string),
                range-int32(tuple<option<tuple<s32, range-bound-kind>>, option<tuple<s32, range-bound-kind>>>),
                range-int64(tuple<option<tuple<s64, range-bound-kind>>, option<tuple<s64, range-bound-kind>>>),
                range-decimal(tuple<option<tuple<string, range-bound-kind>>, option<tuple<string, range-bound-kind>>>),
                array-int32(list<option<s32>>),
                array-int64(list<option<s64>>),
                array-decimal(list<option<string>>),
                array-str(list<option<string>>),
                interval(interval),
                db-null,
                unsupported(list<u8>),
            }
            variant parameter-value {
                boolean(bool),
                int8(s8),
                int16(s16),
                int32(s32),
                int64(s64),
                floating32(f32),
                floating64(f64),
                str(string),
                binary(list<u8>),
                date(tuple<s32, u8, u8>),
                time(tuple<u8, u8, u8, u32>),
                datetime(tuple<s32, u8, u8, u8, u8, u8, u32>),
                timestamp(s64),
                uuid(string),
                jsonb(list<u8>),
                decimal(string),
                range-int32(tuple<option<tuple<s32, range-bound-kind>>, option<tuple<s32, range-bound-kind>>>),
                range-int64(tuple<option<tuple<s64, range-bound-kind>>, option<tuple<s64, range-bound-kind>>>),
                range-decimal(tuple<option<tuple<string, range-bound-kind>>, option<tuple<string, range-bound-kind>>>),
                array-int32(list<option<s32>>),
                array-int64(list<option<s64>>),
                array-decimal(list<option<string>>),
                array-str(list<option<string>>),
                interval(interval),
                db-null,
            }
            record interval {
                micros: s64,
                days: s32,
                months: s32,
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
            enum range-bound-kind {
                inclusive,
                exclusive,
            }
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
        "spin:postgres/postgres.connection": PgConnection,
    },
});

/// A session a guest opened, with the tenant's connection permit it holds.
#[expect(
    unreachable_pub,
    reason = "bindgen! re-exports the resource's type from the module it generates"
)]
pub struct PgConnection {
    pub(super) client: tokio_postgres::Client,
    pub(super) _permit: OwnedSemaphorePermit,
}
