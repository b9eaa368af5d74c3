//! The connector behind each tenant's pool: resolve, drop every address the
//! operator blocks, take one of the tenant's connection permits, dial only the
//! vetted addresses, then TLS (ALPN `h2`, `http/1.1`) for `https`.
//!
//! The permit lives inside the connection, so a tenant's cap counts open
//! connections, pooled idle ones included, and one tenant can never use up
//! another's.

use super::block_networks::BlockedNetworks;
use super::resolver::Resolver;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntGauge};
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout_at;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

tokio::task_local! {
    /// The connect timeout of the request being sent: hyper's pool gives the
    /// connector only a URI, so the timeout travels in the sending task.
    pub(crate) static CONNECT_TIMEOUT: Duration;
}

/// Why no connection could be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("{0}")]
    Dns(#[from] super::resolver::ResolveError),
    #[error("every address of {host} is in a blocked network: {addresses:?}")]
    Blocked {
        host: String,
        addresses: Vec<SocketAddr>,
    },
    #[error("DNS lookup of {0} timed out")]
    DnsTimeout(String),
    #[error("the tenant's {0} outbound connections are all in use")]
    LimitReached(usize),
    #[error("connecting took longer than {0:?}")]
    Timeout(Duration),
    #[error("connecting to {addresses:?} failed: {source}")]
    Refused {
        addresses: Vec<SocketAddr>,
        source: io::Error,
    },
    #[error("TLS with {host} failed: {source}")]
    Tls { host: String, source: io::Error },
    #[error("cannot connect to {0}: the URI has no usable host")]
    BadUri(String),
}

/// Open-connection accounting for one tenant.
#[derive(Clone)]
pub(crate) struct ConnectionMetrics {
    /// Connections open now (in use or idle in the pool).
    pub(crate) open: IntGauge,
    /// Connections ever opened; requests minus this is the reuse.
    pub(crate) opened: IntCounter,
}

/// Dials for one tenant's pool.
#[derive(Clone)]
pub(crate) struct TenantConnector {
    pub(crate) resolver: Arc<Resolver>,
    pub(crate) blocked: Arc<BlockedNetworks>,
    pub(crate) tls: TlsConnector,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) max_connections: usize,
    pub(crate) default_connect_timeout: Duration,
    pub(crate) metrics: ConnectionMetrics,
}

impl tower_service::Service<http::Uri> for TenantConnector {
    type Response = PooledStream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<PooledStream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let timeout = CONNECT_TIMEOUT
            .try_with(|t| *t)
            .unwrap_or(self.default_connect_timeout);
        let this = self.clone();
        Box::pin(this.connect(uri, timeout))
    }
}

impl TenantConnector {
    /// The addresses `host` may be dialled at, and one of the tenant's
    /// connection permits: resolves (else `Dns`, or `DnsTimeout` past
    /// `deadline`), drops blocked addresses (none left: `Blocked`) and
    /// waits for a permit until `deadline` (else `LimitReached`).
    pub(crate) async fn vet(
        &self,
        host: &str,
        port: u16,
        deadline: tokio::time::Instant,
    ) -> Result<(Vec<SocketAddr>, OwnedSemaphorePermit), ConnectError> {
        let resolved = timeout_at(deadline, self.resolver.lookup(host, port))
            .await
            .map_err(|_| ConnectError::DnsTimeout(host.to_string()))??;
        let vetted: Vec<SocketAddr> = resolved
            .iter()
            .copied()
            .filter(|a| !self.blocked.is_blocked(a.ip()))
            .collect();
        if vetted.is_empty() {
            return Err(ConnectError::Blocked {
                host: host.to_string(),
                addresses: resolved,
            });
        }
        match timeout_at(deadline, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok((vetted, permit)),
            _ => Err(ConnectError::LimitReached(self.max_connections)),
        }
    }

    /// Each step must finish within `timeout` of the start: the lookup
    /// (else `DnsTimeout`), the wait for a permit (else `LimitReached`), the
    /// TCP and TLS handshakes (else `Timeout`).
    async fn connect(
        self,
        uri: http::Uri,
        timeout: Duration,
    ) -> Result<PooledStream, ConnectError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let host = uri
            .host()
            .ok_or_else(|| ConnectError::BadUri(uri.to_string()))?
            .to_string();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });

        let (vetted, permit) = self.vet(&host, port, deadline).await?;
        let tcp = timeout_at(deadline, TcpStream::connect(&vetted[..]))
            .await
            .map_err(|_| ConnectError::Timeout(timeout))?
            .map_err(|source| ConnectError::Refused {
                addresses: vetted.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let (io, h2) = if https {
            let tls_error = |source| ConnectError::Tls {
                host: host.clone(),
                source,
            };
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(bare.to_string())
                .map_err(|e| tls_error(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
            let tls = timeout_at(deadline, self.tls.connect(name, tcp))
                .await
                .map_err(|_| ConnectError::Timeout(timeout))?
                .map_err(tls_error)?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            (MaybeTls::Tls(Box::new(tls)), h2)
        } else {
            (MaybeTls::Plain(tcp), false)
        };
        self.metrics.opened.inc();
        self.metrics.open.inc();
        Ok(PooledStream {
            io: TokioIo::new(io),
            h2,
            _permit: permit,
            open: self.metrics.open.clone(),
        })
    }
}

/// A plain or TLS TCP stream.
pub(crate) enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection in a tenant's pool, holding one of the tenant's permits.
pub(crate) struct PooledStream {
    io: TokioIo<MaybeTls>,
    h2: bool,
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for PooledStream {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Connection for PooledStream {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl hyper::rt::Read for PooledStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for PooledStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
