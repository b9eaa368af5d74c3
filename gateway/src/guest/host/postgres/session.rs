//! A guest's PostgreSQL session, whatever interface version it came
//! through: opening one (every host of the connection string checked
//! against `allowed_outbound_hosts` as Spin does, the first dialled at a
//! vetted address through the tenant's service gate; no Unix sockets, no
//! TLS), and running statements within [`STATEMENT_TIMEOUT`], reading rows
//! one at a time up to [`MAX_RESULT_BYTES`].

use super::bindings::PgConnection;
use crate::outbound::{ComponentOutbound, ConnectError, ServiceRefusal};
use std::time::Duration;
use tokio_postgres::config::Host as PgHost;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{NoTls, Row};

/// How long one statement may take.
pub(super) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest result one query may return, in bytes (roughly).
pub(super) const MAX_RESULT_BYTES: usize = 16 << 20;

/// A parameter ready to send.
pub(super) type Parameter = Box<dyn ToSql + Sync + Send>;

/// Why a statement failed.
pub(super) enum StatementError {
    /// The server or the client said no.
    Failed(tokio_postgres::Error),
    /// It ran past [`STATEMENT_TIMEOUT`].
    TimedOut,
    /// Its result is over [`MAX_RESULT_BYTES`].
    TooLarge,
    /// A value could not be converted for the guest.
    Conversion(String),
}

impl StatementError {
    /// The failure in words.
    pub(super) fn describe(&self) -> String {
        match self {
            StatementError::Failed(e) => match e.as_db_error() {
                Some(db) => db.to_string(),
                None => e.to_string(),
            },
            StatementError::TimedOut => {
                format!("the statement took longer than {STATEMENT_TIMEOUT:?}")
            }
            StatementError::TooLarge => {
                format!("the query result exceeds the limit of {MAX_RESULT_BYTES} bytes")
            }
            StatementError::Conversion(e) => e.clone(),
        }
    }
}

/// The TCP hosts and ports of a connection string, as Spin pairs them.
fn tcp_hosts(config: &tokio_postgres::Config) -> Result<Vec<(String, u16)>, String> {
    let ports = config.get_ports();
    let mut hosts = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let PgHost::Tcp(name) = host else {
            return Err("Unix-socket hosts are not allowed".into());
        };
        let port = match ports {
            [one] => *one,
            _ => ports.get(i).copied().unwrap_or(5432),
        };
        hosts.push((name.clone(), port));
    }
    if hosts.is_empty() {
        return Err("the connection string names no host".into());
    }
    Ok(hosts)
}

/// A URL for `host:port`, as allow-lists and the service gate read it.
fn url(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("postgres://[{host}]:{port}")
    } else {
        format!("postgres://{host}:{port}")
    }
}

/// Opens a session on `address`, or why not (for `connection-failed`).
pub(super) async fn connect(
    outbound: &ComponentOutbound,
    address: &str,
) -> Result<PgConnection, String> {
    if !outbound.postgres_enabled() {
        return Err(
            "outbound PostgreSQL is off on this gateway (the operator turns it on with --outbound-postgres)"
                .into(),
        );
    }
    let config: tokio_postgres::Config = address
        .parse()
        .map_err(|e: tokio_postgres::Error| e.to_string())?;
    let hosts = tcp_hosts(&config)?;
    for (host, port) in &hosts {
        if !outbound.allows_service(&url(host, *port), "postgres") {
            return Err(format!("address {} is not permitted", url(host, *port)));
        }
    }
    let (host, port) = &hosts[0];
    let grant = outbound
        .open_service(&url(host, *port), "postgres")
        .await
        .map_err(|e| match e {
            ServiceRefusal::Unreachable(ConnectError::LimitReached(n)) => {
                format!("the tenant's {n} outbound connections are all in use")
            }
            e => e.for_guest(),
        })?;
    let dial = tokio::net::TcpStream::connect(&grant.addresses[..]);
    let stream = tokio::time::timeout(grant.connect_timeout, dial)
        .await
        .map_err(|_| format!("connecting took longer than {:?}", grant.connect_timeout))?
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (client, connection) =
        tokio::time::timeout(grant.connect_timeout, config.connect_raw(stream, NoTls))
            .await
            .map_err(|_| "the server did not finish the startup in time".to_string())?
            .map_err(|e| e.to_string())?;
    // The session lives as long as the client; the task ends with it.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("a guest's PostgreSQL session ended: {e}");
        }
    });
    Ok(PgConnection {
        client,
        _permit: grant.permit,
    })
}

/// Runs `statement` and reads its rows one at a time, each value through
/// `convert` and charged `size` bytes, stopping past [`MAX_RESULT_BYTES`]
/// (so a huge result never sits whole on the host). Answers the columns'
/// names and types with the rows.
pub(super) async fn query<V>(
    client: &tokio_postgres::Client,
    statement: &str,
    params: &[Parameter],
    convert: impl Fn(&Row, usize) -> Result<V, String>,
    size: impl Fn(&V) -> usize,
) -> Result<(Vec<(String, Type)>, Vec<Vec<V>>), StatementError> {
    let read = async {
        use futures::StreamExt as _;
        let prepared = client
            .prepare(statement)
            .await
            .map_err(StatementError::Failed)?;
        let refs = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync));
        let stream = client
            .query_raw(&prepared, refs)
            .await
            .map_err(StatementError::Failed)?;
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::new();
        let mut bytes = 0usize;
        while let Some(row) = stream.next().await {
            let row = row.map_err(StatementError::Failed)?;
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                // Decoders a server's bytes can make panic (rust_decimal
                // past 96 bits, range normalising at the type's limit)
                // cost this value, not the gateway's task.
                let value =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| convert(&row, i)))
                        .unwrap_or_else(|_| {
                            Err(format!("column {i}: the value cannot be converted"))
                        })
                        .map_err(StatementError::Conversion)?;
                bytes += size(&value);
                values.push(value);
            }
            if bytes > MAX_RESULT_BYTES {
                return Err(StatementError::TooLarge);
            }
            rows.push(values);
        }
        let columns = prepared
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.type_().clone()))
            .collect();
        Ok((columns, rows))
    };
    tokio::time::timeout(STATEMENT_TIMEOUT, read)
        .await
        .unwrap_or(Err(StatementError::TimedOut))
}

/// Runs `statement`; answers the rows it changed.
pub(super) async fn execute(
    client: &tokio_postgres::Client,
    statement: &str,
    params: &[Parameter],
) -> Result<u64, StatementError> {
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    match tokio::time::timeout(STATEMENT_TIMEOUT, client.execute(statement, &refs)).await {
        Ok(done) => done.map_err(StatementError::Failed),
        Err(_) => Err(StatementError::TimedOut),
    }
}

/// The guest's parameters, each converted by `convert`, or why one cannot
/// be (for `bad-parameter`).
pub(super) fn parameters<P>(
    params: Vec<P>,
    convert: impl Fn(P) -> Result<Parameter, String>,
) -> Result<Vec<Parameter>, String> {
    params
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| convert(p)))
                .unwrap_or_else(|_| Err("the value cannot be sent".into()))
                .map_err(|e| format!("parameter ${}: {e}", i + 1))
        })
        .collect()
}

/// Column `i` of `row` as `T` (`None` for NULL), or what went wrong,
/// naming the column.
pub(super) fn column<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<Option<T>, String> {
    row.try_get::<_, Option<T>>(i)
        .map_err(|e| format!("column {}: {e}", row.columns()[i].name()))
}

/// `impl HostConnection for GuestState` for one interface version, from
/// its functions: `parameter` (a guest parameter to a `Parameter`),
/// `value`, `size` and `data_type` (for rows and columns) and `failed` (a
/// `StatementError` to its error). The version's `Error`, `ParameterValue`,
/// `RowSet`, `Column` and `HostConnection` must be in scope.
macro_rules! host_connection {
    ($parameter:path, $value:path, $size:path, $data_type:path, $failed:path) => {
        impl HostConnection for GuestState {
            async fn open(
                &mut self,
                address: String,
            ) -> wasmtime::Result<Result<Resource<PgConnection>, Error>> {
                let outbound = self.hooks.component.clone();
                match session::connect(&outbound, &address).await {
                    Ok(connection) => Ok(Ok(self.table.push(connection)?)),
                    Err(e) => Ok(Err(Error::ConnectionFailed(e))),
                }
            }

            async fn query(
                &mut self,
                connection: Resource<PgConnection>,
                statement: String,
                params: Vec<ParameterValue>,
            ) -> wasmtime::Result<Result<RowSet, Error>> {
                let params = match session::parameters(params, $parameter) {
                    Ok(params) => params,
                    Err(e) => return Ok(Err(Error::BadParameter(e))),
                };
                let client = &self.table.get(&connection)?.client;
                let read = session::query(client, &statement, &params, $value, $size);
                Ok(read.await.map_err($failed).map(|(columns, rows)| RowSet {
                    columns: columns
                        .into_iter()
                        .map(|(name, ty)| Column {
                            name,
                            data_type: $data_type(&ty),
                        })
                        .collect(),
                    rows,
                }))
            }

            async fn execute(
                &mut self,
                connection: Resource<PgConnection>,
                statement: String,
                params: Vec<ParameterValue>,
            ) -> wasmtime::Result<Result<u64, Error>> {
                let params = match session::parameters(params, $parameter) {
                    Ok(params) => params,
                    Err(e) => return Ok(Err(Error::BadParameter(e))),
                };
                let client = &self.table.get(&connection)?.client;
                Ok(session::execute(client, &statement, &params)
                    .await
                    .map_err($failed))
            }

            async fn drop(&mut self, connection: Resource<PgConnection>) -> wasmtime::Result<()> {
                self.table.delete(connection)?;
                Ok(())
            }
        }
    };
}
pub(super) use host_connection;

#[cfg(test)]
mod tests {
    use super::super::bindings::spin::postgres::postgres::{ParameterValue, RangeBoundKind};
    use super::super::values;
    use super::*;

    #[test]
    fn a_parameter_whose_conversion_panics_is_a_bad_parameter_not_a_crash() {
        // Normalising an inclusive upper bound at i32::MAX overflows (the
        // range crate asserts): the guest gets a refusal naming it.
        let range = ParameterValue::RangeInt32((None, Some((i32::MAX, RangeBoundKind::Inclusive))));
        match parameters(vec![ParameterValue::Int32(1), range], values::parameter) {
            Err(e) => assert_eq!(e, "parameter $2: the value cannot be sent"),
            Ok(_) => panic!("accepted"),
        }
    }
}
