//! One tenant's pooled HTTP client (hyper-util): keep-alive, HTTP/1.1 or
//! HTTP/2 as ALPN decides, an idle timeout, and the tenant's connection cap
//! (in the connector). Sending applies the request's timeouts and turns every
//! failure into the wasi:http error code a guest understands.

use super::body::BetweenBytes;
use super::connector::{CONNECT_TIMEOUT, ConnectError, TenantConnector};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::capture_connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as StdError;
use std::time::Duration;
use wasmtime_wasi_http::{Error, WasiBody};

/// The three timeouts of one outbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// DNS, waiting for a connection permit, TCP and TLS.
    pub(crate) connect: Duration,
    /// From having a connection (pooled or new) to the response head.
    pub(crate) first_byte: Duration,
    /// Longest quiet gap while the response body streams.
    pub(crate) between_bytes: Duration,
}

/// A failure, as the guest sees it and as metrics count it.
#[derive(Debug)]
pub(crate) struct SendFailure {
    pub(crate) code: Error,
    /// A short label for metrics: `dns`, `blocked_address`, `connect_timeout`, ...
    pub(crate) reason: &'static str,
    /// The detail for the operator's log.
    pub(crate) detail: String,
}

/// A tenant's pooled client.
pub(crate) struct TenantPool {
    client: Client<TenantConnector, WasiBody>,
}

impl TenantPool {
    pub(crate) fn new(connector: TenantConnector, idle_timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        TenantPool { client }
    }

    /// Sends `request` (absolute URI, already allowed) and returns the response
    /// with a body that enforces the between-bytes timeout.
    pub(crate) async fn send(
        &self,
        mut request: http::Request<WasiBody>,
        timeouts: Timeouts,
    ) -> Result<http::Response<WasiBody>, SendFailure> {
        *request.version_mut() = http::Version::HTTP_11;
        let mut connection = capture_connection(&mut request);
        let sending = CONNECT_TIMEOUT.scope(timeouts.connect, self.client.request(request));
        tokio::pin!(sending);
        // Until a connection is chosen (pooled or new) the connector's own
        // deadline applies; this outer one only guards a stuck handshake.
        let connected = tokio::time::timeout(timeouts.connect + timeouts.first_byte, async {
            tokio::select! {
                biased;
                result = &mut sending => Some(result),
                _ = connection.wait_for_connection_metadata() => None,
            }
        });
        let result = match connected.await {
            Ok(Some(result)) => Ok(result),
            Ok(None) => tokio::time::timeout(timeouts.first_byte, &mut sending).await,
            Err(elapsed) => Err(elapsed),
        };
        let response = match result {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(classify(&e)),
            Err(_) => {
                return Err(SendFailure {
                    code: Error::HttpResponseTimeout,
                    reason: "first_byte_timeout",
                    detail: format!("no response head within {:?}", timeouts.first_byte),
                });
            }
        };
        Ok(response.map(|body| BetweenBytes::new(body, timeouts.between_bytes).boxed_unsync()))
    }
}

/// Maps a hyper-util failure to a wasi:http error code and a metrics reason.
fn classify(error: &hyper_util::client::legacy::Error) -> SendFailure {
    let detail = error_chain(error);
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(e) = source {
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            let (code, reason) = match connect {
                ConnectError::Dns(_) => (
                    Error::DnsError {
                        rcode: Some("address not available".into()),
                        info_code: None,
                    },
                    "dns",
                ),
                ConnectError::DnsTimeout(_) => (Error::DnsTimeout, "dns_timeout"),
                ConnectError::Blocked { .. } => (Error::DestinationIpProhibited, "blocked_address"),
                ConnectError::LimitReached(_) => {
                    (Error::ConnectionLimitReached, "connection_limit")
                }
                ConnectError::Timeout(_) => (Error::ConnectionTimeout, "connect_timeout"),
                ConnectError::Refused { .. } => (Error::ConnectionRefused, "connection_refused"),
                ConnectError::Tls { source, .. } => (tls_code(source), "tls"),
                ConnectError::BadUri(_) => (Error::HttpRequestUriInvalid, "bad_uri"),
            };
            return SendFailure {
                code,
                reason,
                detail,
            };
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            let (code, reason) = if h.is_timeout() {
                (Error::HttpResponseTimeout, "first_byte_timeout")
            } else if h.is_incomplete_message() || h.is_closed() {
                (Error::HttpResponseIncomplete, "protocol")
            } else {
                (Error::HttpProtocolError, "protocol")
            };
            return SendFailure {
                code,
                reason,
                detail,
            };
        }
        source = e.source();
    }
    SendFailure {
        code: Error::HttpProtocolError,
        reason: "protocol",
        detail,
    }
}

/// Certificate problems get their own code; everything else is a protocol error.
fn tls_code(source: &std::io::Error) -> Error {
    let rustls_error = source
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            Error::TlsCertificateError
        }
        _ => Error::TlsProtocolError,
    }
}

fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
