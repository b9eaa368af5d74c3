//! Outbound Redis for guests, `fermyon:spin/redis@2.0.0` (spin-sdk 2 to 5),
//! as Spin serves it: `open` checks the address against
//! `allowed_outbound_hosts` (scheme `redis` when none is written; refused:
//! `invalid-address`), then connects through the tenant's service gate
//! (`crate::outbound::ServiceGrant`: blocked networks, the tenant's
//! connection cap as `too-many-connections`). Each `open` is its own
//! connection, held until the guest drops it or the instance ends.

use crate::guest::state::GuestState;
use crate::outbound::{ServiceGrant, ServiceRefusal};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, Value};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::{HasSelf, Linker, Resource};

wasmtime::component::bindgen!({
    inline: "
        package fermyon:spin@2.0.0;

        interface redis {
            variant error {
                invalid-address,
                too-many-connections,
                type-error,
                other(string),
            }
            resource connection {
                open: static func(address: string) -> result<connection, error>;
                publish: func(channel: string, payload: payload) -> result<_, error>;
                get: func(key: string) -> result<option<payload>, error>;
                set: func(key: string, value: payload) -> result<_, error>;
                incr: func(key: string) -> result<s64, error>;
                del: func(keys: list<string>) -> result<u32, error>;
                sadd: func(key: string, values: list<string>) -> result<u32, error>;
                smembers: func(key: string) -> result<list<string>, error>;
                srem: func(key: string, values: list<string>) -> result<u32, error>;
                execute: func(command: string, arguments: list<redis-parameter>) -> result<list<redis-result>, error>;
            }
            type payload = list<u8>;
            variant redis-parameter {
                int64(s64),
                binary(payload),
            }
            variant redis-result {
                nil,
                status(string),
                int64(s64),
                binary(payload),
            }
        }

        world redis-host {
            import redis;
        }
    ",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/redis.connection": RedisConnection,
    },
});

use fermyon::spin::redis::{Error, Host, HostConnection, RedisParameter, RedisResult};

/// The import this module serves.
const INTERFACE: &str = "fermyon:spin/redis@2.0.0";

/// The most reply bytes read between two commands.
const MAX_REPLY_BYTES: usize = 4 << 20;
/// How long one command may wait for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// True when `interface` (an import name, with version) is served here.
pub(crate) fn provides(interface: &str) -> bool {
    interface == INTERFACE
}

/// Links the Redis interface.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    fermyon::spin::redis::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)
}

/// A connection a guest opened, with the tenant's connection permit it holds.
#[expect(
    unreachable_pub,
    reason = "bindgen! re-exports the resource's type from the module it generates"
)]
pub struct RedisConnection {
    connection: MultiplexedConnection,
    _permit: OwnedSemaphorePermit,
}

/// Connects to `address` at the vetted addresses (the first that
/// answers), over a stream that bounds every reply.
async fn connect(address: &str, grant: ServiceGrant) -> Result<RedisConnection, Error> {
    let info = address
        .into_connection_info()
        .map_err(|_| Error::InvalidAddress)?;
    if !matches!(info.addr(), ConnectionAddr::Tcp(..)) {
        return Err(Error::Other(format!(
            "{address}: only plain redis:// addresses are supported"
        )));
    }
    let dial = tokio::net::TcpStream::connect(&grant.addresses[..]);
    let stream = match tokio::time::timeout(grant.connect_timeout, dial).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Error::Other(format!("connecting to Redis failed: {e}"))),
        Err(_) => return Err(Error::Other("connecting to Redis timed out".into())),
    };
    let _ = stream.set_nodelay(true);
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    let handshake = MultiplexedConnection::new_with_config(
        info.redis_settings(),
        BoundedReplies::new(stream),
        config,
    );
    let (connection, driver) = match tokio::time::timeout(grant.connect_timeout, handshake).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => return Err(Error::Other(e.to_string())),
        Err(_) => return Err(Error::Other("the Redis handshake timed out".into())),
    };
    // The driver ends when the last handle to the connection is dropped.
    tokio::spawn(driver);
    Ok(RedisConnection {
        connection,
        _permit: grant.permit,
    })
}

/// A TCP stream that fails a read once more than [`MAX_REPLY_BYTES`] have
/// arrived since the last write: no reply (a huge value, an endless array
/// from a hostile server) can take more host memory than that.
struct BoundedReplies {
    stream: tokio::net::TcpStream,
    read_since_write: usize,
}

impl BoundedReplies {
    fn new(stream: tokio::net::TcpStream) -> Self {
        BoundedReplies {
            stream,
            read_since_write: 0,
        }
    }
}

impl tokio::io::AsyncRead for BoundedReplies {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.stream).poll_read(cx, buf);
        this.read_since_write += buf.filled().len() - before;
        if this.read_since_write > MAX_REPLY_BYTES {
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "a Redis reply is over the {MAX_REPLY_BYTES}-byte limit"
            ))));
        }
        polled
    }
}

impl tokio::io::AsyncWrite for BoundedReplies {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.read_since_write = 0;
        std::pin::Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A Redis reply, flattened into the interface's results as Spin does.
fn flatten(value: Value, out: &mut Vec<RedisResult>) -> Result<(), Error> {
    match value {
        Value::Nil => out.push(RedisResult::Nil),
        Value::Int(n) => out.push(RedisResult::Int64(n)),
        Value::BulkString(bytes) => out.push(RedisResult::Binary(bytes)),
        Value::SimpleString(s) => out.push(RedisResult::Status(s)),
        Value::Okay => out.push(RedisResult::Status("OK".into())),
        Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
        Value::Boolean(b) => out.push(RedisResult::Int64(i64::from(b))),
        Value::Array(items) | Value::Set(items) => {
            for item in items {
                flatten(item, out)?;
            }
        }
        Value::ServerError(e) => return Err(Error::Other(e.to_string())),
        other => {
            return Err(Error::Other(format!(
                "the reply {other:?} has no redis-result form"
            )));
        }
    }
    Ok(())
}

/// A command failure as the interface's error: a reply of the wrong type
/// is `type-error`, anything else `other` with Redis's own words.
fn failed(e: redis::RedisError) -> Error {
    if e.kind() == redis::ErrorKind::UnexpectedReturnType {
        Error::TypeError
    } else {
        Error::Other(e.to_string())
    }
}

impl GuestState {
    /// Runs `command` on the connection `connection` and converts its reply.
    async fn redis_query<T: redis::FromRedisValue>(
        &mut self,
        connection: &Resource<RedisConnection>,
        command: redis::Cmd,
    ) -> wasmtime::Result<Result<T, Error>> {
        let mut connection = self.table.get(connection)?.connection.clone();
        Ok(command
            .query_async::<T>(&mut connection)
            .await
            .map_err(failed))
    }
}

impl Host for GuestState {}

impl HostConnection for GuestState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, Error>> {
        let outbound = self.hooks.component.clone();
        let grant = match outbound.open_service(&address, "redis").await {
            Ok(grant) => grant,
            Err(ServiceRefusal::NotAllowed(_) | ServiceRefusal::BadAddress(_)) => {
                return Ok(Err(Error::InvalidAddress));
            }
            Err(ServiceRefusal::Unreachable(crate::outbound::ConnectError::LimitReached(_))) => {
                return Ok(Err(Error::TooManyConnections));
            }
            Err(e) => return Ok(Err(Error::Other(e.for_guest()))),
        };
        match connect(&address, grant).await {
            Ok(connection) => Ok(Ok(self.table.push(connection)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn publish(
        &mut self,
        connection: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let mut command = redis::cmd("PUBLISH");
        command.arg(channel).arg(payload);
        self.redis_query::<()>(&connection, command).await
    }

    async fn get(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let mut command = redis::cmd("GET");
        command.arg(key);
        self.redis_query(&connection, command).await
    }

    async fn set(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let mut command = redis::cmd("SET");
        command.arg(key).arg(value);
        self.redis_query::<()>(&connection, command).await
    }

    async fn incr(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let mut command = redis::cmd("INCR");
        command.arg(key);
        self.redis_query(&connection, command).await
    }

    async fn del(
        &mut self,
        connection: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let mut command = redis::cmd("DEL");
        command.arg(keys);
        self.redis_query(&connection, command).await
    }

    async fn sadd(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let mut command = redis::cmd("SADD");
        command.arg(key).arg(values);
        self.redis_query(&connection, command).await
    }

    async fn smembers(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let mut command = redis::cmd("SMEMBERS");
        command.arg(key);
        self.redis_query(&connection, command).await
    }

    async fn srem(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let mut command = redis::cmd("SREM");
        command.arg(key).arg(values);
        self.redis_query(&connection, command).await
    }

    async fn execute(
        &mut self,
        connection: Resource<RedisConnection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, Error>> {
        let mut cmd = redis::cmd(&command);
        for argument in arguments {
            match argument {
                RedisParameter::Int64(n) => cmd.arg(n),
                RedisParameter::Binary(bytes) => cmd.arg(bytes),
            };
        }
        let reply = match self.redis_query::<Value>(&connection, cmd).await? {
            Ok(reply) => reply,
            Err(e) => return Ok(Err(e)),
        };
        let mut results = Vec::new();
        Ok(flatten(reply, &mut results).map(|()| results))
    }

    async fn drop(&mut self, connection: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_flatten_as_spin_does() {
        let reply = Value::Array(vec![
            Value::Nil,
            Value::Int(3),
            Value::Okay,
            Value::SimpleString("PONG".into()),
            Value::Set(vec![Value::BulkString(b"x".to_vec()), Value::Boolean(true)]),
            Value::Double(1.5),
        ]);
        let mut out = Vec::new();
        flatten(reply, &mut out).unwrap();
        let text = format!("{out:?}");
        assert_eq!(
            text,
            format!(
                "{:?}",
                vec![
                    RedisResult::Nil,
                    RedisResult::Int64(3),
                    RedisResult::Status("OK".into()),
                    RedisResult::Status("PONG".into()),
                    RedisResult::Binary(b"x".to_vec()),
                    RedisResult::Int64(1),
                    RedisResult::Binary(b"1.5".to_vec()),
                ]
            )
        );
        let map = Value::Map(vec![(Value::Int(1), Value::Int(2))]);
        assert!(matches!(
            flatten(map, &mut Vec::new()),
            Err(Error::Other(_))
        ));
    }
}
