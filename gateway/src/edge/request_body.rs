//! Streams a client's request body into a guest with bounded memory: a small
//! channel between the Pingora session and the guest's body, a byte limit
//! enforced while streaming (413), and backpressure when the guest is slow.

use bytes::Bytes;
use http_body::Frame;
use pingora::protocols::http::ServerSession;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use wasmtime_wasi_http::Error as HttpError;

/// Chunks in flight between the client and the guest.
const CHANNEL_DEPTH: usize = 4;

/// The guest's side: a body fed from the channel.
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, HttpError>>,
}

impl ChannelBody {
    /// A body and the pump that fills it, refusing more than `max_bytes`.
    pub(crate) fn new(max_bytes: u64) -> (ChannelBody, RequestBodyPump) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        (
            ChannelBody { rx },
            RequestBodyPump {
                tx: Some(tx),
                pending: None,
                received: 0,
                max_bytes,
                done: false,
                read_to_end: false,
            },
        )
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(Frame::data)))
    }
}

/// The client's side: reads the session's body and feeds the channel.
pub(crate) struct RequestBodyPump {
    tx: Option<mpsc::Sender<Result<Bytes, HttpError>>>,
    pending: Option<Bytes>,
    received: u64,
    max_bytes: u64,
    done: bool,
    read_to_end: bool,
}

/// Why a client's request body could not be fed to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// It passed `max_request_body_bytes`: 413.
    TooLarge,
    /// It was malformed or cut off: 400.
    Malformed,
}

impl BodyError {
    /// The status the request is counted (and, when possible, answered) with.
    pub(crate) fn status(self) -> u16 {
        match self {
            BodyError::TooLarge => 413,
            BodyError::Malformed => 400,
        }
    }
}

impl RequestBodyPump {
    /// True once there is nothing more to feed.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// True when the client's body was read completely, so the connection can be reused.
    pub(crate) fn read_to_end(&self) -> bool {
        self.read_to_end
    }

    /// One step: hand the pending chunk to the guest, or read the next one.
    /// Safe to cancel between awaits.
    pub(crate) async fn step(&mut self, session: &mut ServerSession) -> Result<(), BodyError> {
        if self.pending.is_some() {
            let Some(tx) = self.tx.clone() else {
                self.done = true;
                return Ok(());
            };
            match tx.reserve().await {
                Ok(permit) => {
                    if let Some(chunk) = self.pending.take() {
                        permit.send(Ok(chunk));
                    }
                }
                // The guest dropped its body: stop feeding it.
                Err(_) => {
                    self.tx = None;
                    self.done = true;
                }
            }
            return Ok(());
        }
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                self.received += chunk.len() as u64;
                if self.received > self.max_bytes {
                    self.fail(HttpError::HttpRequestBodySize(Some(self.received)));
                    return Err(BodyError::TooLarge);
                }
                self.pending = Some(chunk);
                Ok(())
            }
            Ok(None) => {
                self.tx = None;
                self.done = true;
                self.read_to_end = true;
                Ok(())
            }
            Err(e) => {
                tracing::debug!("reading the request body: {e}");
                self.fail(HttpError::HttpProtocolError);
                Err(BodyError::Malformed)
            }
        }
    }

    fn fail(&mut self, error: HttpError) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.try_send(Err(error));
        }
        self.pending = None;
        self.done = true;
    }
}
