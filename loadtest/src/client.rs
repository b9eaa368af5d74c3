//! Connections to the target and sending one request on them: HTTP/1.1
//! keep-alive (one request at a time, the worker owns the connection) or
//! HTTP/2 prior knowledge (several workers share a connection's streams).
//! A broken connection is dropped and the next request opens a new one.

use crate::scenario::Protocol;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

type Body = Full<Bytes>;

/// Why a request got no response; the report counts these by [`Failure::label`].
#[derive(Debug)]
pub enum Failure {
    Connect(std::io::ErrorKind),
    Handshake,
    Timeout,
    Closed,
    Http(String),
}

impl Failure {
    pub fn label(&self) -> String {
        match self {
            Failure::Connect(kind) => format!("connect: {kind}"),
            Failure::Handshake => "handshake failed".to_string(),
            Failure::Timeout => "timeout".to_string(),
            Failure::Closed => "connection closed".to_string(),
            Failure::Http(e) => format!("http: {e}"),
        }
    }

    fn from_hyper(e: hyper::Error) -> Failure {
        if e.is_closed() || e.is_incomplete_message() || e.is_canceled() {
            Failure::Closed
        } else {
            Failure::Http(e.to_string())
        }
    }
}

/// A worker's way to the target.
pub enum Lane {
    Http1 {
        addr: SocketAddr,
        sender: Option<http1::SendRequest<Body>>,
    },
    Http2(Arc<SharedHttp2>),
}

/// One HTTP/2 connection used by several workers; reopened when it breaks.
pub struct SharedHttp2 {
    addr: SocketAddr,
    sender: Mutex<Option<http2::SendRequest<Body>>>,
}

impl Lane {
    /// Lanes for `workers` workers: one connection each for HTTP/1, and
    /// `streams` workers per connection for HTTP/2.
    pub fn for_workers(
        addr: SocketAddr,
        protocol: Protocol,
        workers: usize,
        streams: usize,
    ) -> Vec<Lane> {
        match protocol {
            Protocol::Http1 => (0..workers)
                .map(|_| Lane::Http1 { addr, sender: None })
                .collect(),
            Protocol::Http2 => {
                let shared: Vec<_> = (0..workers.div_ceil(streams))
                    .map(|_| {
                        Arc::new(SharedHttp2 {
                            addr,
                            sender: Mutex::new(None),
                        })
                    })
                    .collect();
                (0..workers)
                    .map(|w| Lane::Http2(shared[w / streams].clone()))
                    .collect()
            }
        }
    }

    /// Sends `request` and reads the whole response body; returns the status.
    pub async fn send(&mut self, request: Request<Body>) -> Result<u16, Failure> {
        let response = match self {
            Lane::Http1 { addr, sender } => {
                let mut conn = match sender.take() {
                    Some(s) if !s.is_closed() => s,
                    _ => open_http1(*addr).await?,
                };
                conn.ready().await.map_err(Failure::from_hyper)?;
                let response = conn
                    .send_request(request)
                    .await
                    .map_err(Failure::from_hyper)?;
                *sender = Some(conn);
                response
            }
            Lane::Http2(shared) => {
                let mut conn = shared.sender().await?;
                let result = conn.send_request(request).await;
                if result.is_err() {
                    shared.forget(&conn).await;
                }
                result.map_err(Failure::from_hyper)?
            }
        };
        read_whole(response).await
    }
}

impl SharedHttp2 {
    async fn sender(&self) -> Result<http2::SendRequest<Body>, Failure> {
        let mut slot = self.sender.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        let stream = connect(self.addr).await?;
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Handshake)?;
        tokio::spawn(connection);
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// Drops the shared connection if it is still `broken`, so the next request reconnects.
    async fn forget(&self, broken: &http2::SendRequest<Body>) {
        let mut slot = self.sender.lock().await;
        if slot
            .as_ref()
            .is_some_and(|s| s.is_closed() || broken.is_closed())
        {
            *slot = None;
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::Connect(e.kind()))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn open_http1(addr: SocketAddr) -> Result<http1::SendRequest<Body>, Failure> {
    let stream = connect(addr).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Handshake)?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn read_whole(response: Response<Incoming>) -> Result<u16, Failure> {
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(Failure::from_hyper)?;
    Ok(status)
}
