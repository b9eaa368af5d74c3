//! Outbound PostgreSQL for guests, `spin:postgres/postgres@4.0.0` (spin-sdk
//! 5's `pg4`, Spin's conformance suite), with tokio-postgres, as Spin
//! serves it:
//!
//! - `open(address)` takes a connection string (`host=… port=… user=…` or a
//!   `postgres://` URL). Every host in it must be in
//!   `allowed_outbound_hosts` (scheme `postgres`, port 5432 by default), or
//!   the answer is `connection-failed("address postgres://host:port is not
//!   permitted")`. The first host is then vetted by the tenant's service
//!   gate (block list, connection permit) and dialled at a vetted address
//!   only; Unix sockets and TLS are not offered.
//! - One `open` is one backend session, held until the guest drops it.
//! - Values map as `values` says; a statement waits at most
//!   [`STATEMENT_TIMEOUT`], and a result is at most [`MAX_RESULT_BYTES`].

mod bindings;
mod values;

use crate::guest::state::GuestState;
use crate::outbound::{ComponentOutbound, ConnectError, ServiceRefusal};
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::config::Host as PgHost;
use wasmtime::component::{HasSelf, Linker, Resource};

use bindings::PgConnection;
use bindings::spin::postgres::postgres::{
    Column, DbError, DbValue, Error, Host, HostConnection, ParameterValue, QueryError, RowSet,
};

/// The import this module serves.
const INTERFACE: &str = "spin:postgres/postgres@4.0.0";

/// How long one statement may take.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest result one query may return, in bytes (roughly).
const MAX_RESULT_BYTES: usize = 16 << 20;

/// True when `interface` (an import name, with version) is served here.
pub(crate) fn provides(interface: &str) -> bool {
    interface == INTERFACE
}

/// Links the PostgreSQL interface.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    bindings::spin::postgres::postgres::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)
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

/// Opens a session on `address`, or the interface's error.
async fn connect(outbound: &ComponentOutbound, address: &str) -> Result<PgConnection, Error> {
    let config: tokio_postgres::Config = address
        .parse()
        .map_err(|e: tokio_postgres::Error| Error::ConnectionFailed(e.to_string()))?;
    let hosts = tcp_hosts(&config).map_err(Error::ConnectionFailed)?;
    for (host, port) in &hosts {
        if !outbound.allows_service(&url(host, *port), "postgres") {
            return Err(Error::ConnectionFailed(format!(
                "address {} is not permitted",
                url(host, *port)
            )));
        }
    }
    let (host, port) = &hosts[0];
    let grant = outbound
        .open_service(&url(host, *port), "postgres")
        .await
        .map_err(|e| match e {
            ServiceRefusal::Unreachable(ConnectError::LimitReached(n)) => Error::ConnectionFailed(
                format!("the tenant's {n} outbound connections are all in use"),
            ),
            e => Error::ConnectionFailed(e.for_guest()),
        })?;
    let dial = tokio::net::TcpStream::connect(&grant.addresses[..]);
    let stream = tokio::time::timeout(grant.connect_timeout, dial)
        .await
        .map_err(|_| {
            Error::ConnectionFailed(format!(
                "connecting took longer than {:?}",
                grant.connect_timeout
            ))
        })?
        .map_err(|e| Error::ConnectionFailed(format!("connecting to {host}:{port}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (client, connection) =
        tokio::time::timeout(grant.connect_timeout, config.connect_raw(stream, NoTls))
            .await
            .map_err(|_| {
                Error::ConnectionFailed("the server did not finish the startup in time".into())
            })?
            .map_err(|e| Error::ConnectionFailed(e.to_string()))?;
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

/// A failed statement as the interface reports it: the server's error
/// with its fields, or the client's words.
fn query_failed(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::QueryFailed(QueryError::DbError(DbError {
            as_text: db.to_string(),
            severity: db.severity().to_string(),
            code: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(String::from),
            extras: Vec::new(),
        })),
        None => Error::QueryFailed(QueryError::Text(e.to_string())),
    }
}

/// The guest's parameters, ready to send, or why one cannot be (for
/// `bad-parameter`).
fn parameters(params: Vec<ParameterValue>) -> Result<Vec<values::Parameter>, String> {
    params
        .into_iter()
        .enumerate()
        .map(|(i, p)| values::parameter(p).map_err(|e| format!("parameter ${}: {e}", i + 1)))
        .collect()
}

/// Runs `statement` and reads its rows one at a time, stopping past
/// [`MAX_RESULT_BYTES`] (so a huge result never sits whole on the host).
async fn read_rows(
    client: &tokio_postgres::Client,
    statement: &str,
    params: &[values::Parameter],
) -> Result<(Vec<Column>, Vec<Vec<DbValue>>), Error> {
    use futures::StreamExt as _;
    let prepared = client.prepare(statement).await.map_err(query_failed)?;
    let refs = params
        .iter()
        .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync));
    let stream = client
        .query_raw(&prepared, refs)
        .await
        .map_err(query_failed)?;
    let mut stream = std::pin::pin!(stream);
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = stream.next().await {
        let row = row.map_err(query_failed)?;
        let mut values = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            let value = values::value(&row, i).map_err(Error::ValueConversionFailed)?;
            bytes += values::size(&value);
            values.push(value);
        }
        if bytes > MAX_RESULT_BYTES {
            return Err(Error::Other(format!(
                "the query result exceeds the limit of {MAX_RESULT_BYTES} bytes"
            )));
        }
        rows.push(values);
    }
    let columns = prepared
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_string(),
            data_type: values::data_type(c.type_()),
        })
        .collect();
    Ok((columns, rows))
}

/// The answer to a statement that ran past [`STATEMENT_TIMEOUT`].
fn timed_out() -> Error {
    Error::QueryFailed(QueryError::Text(format!(
        "the statement took longer than {STATEMENT_TIMEOUT:?}"
    )))
}

/// Runs `work` within [`STATEMENT_TIMEOUT`].
async fn within_timeout<T>(
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
        Ok(done) => done.map_err(query_failed),
        Err(_) => Err(timed_out()),
    }
}

impl Host for GuestState {}

impl HostConnection for GuestState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, Error>> {
        let outbound = self.hooks.component.clone();
        match connect(&outbound, &address).await {
            Ok(connection) => Ok(Ok(self.table.push(connection)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn query(
        &mut self,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        let params = match parameters(params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(Error::BadParameter(e))),
        };
        let client = &self.table.get(&connection)?.client;
        let read = read_rows(client, &statement, &params);
        let (columns, rows) = match tokio::time::timeout(STATEMENT_TIMEOUT, read).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return Ok(Err(e)),
            Err(_) => return Ok(Err(timed_out())),
        };
        Ok(Ok(RowSet { columns, rows }))
    }

    async fn execute(
        &mut self,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let params = match parameters(params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(Error::BadParameter(e))),
        };
        let client = &self.table.get(&connection)?.client;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        Ok(within_timeout(client.execute(&statement, &refs)).await)
    }

    async fn drop(&mut self, connection: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}
