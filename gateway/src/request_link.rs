//! What one request and the instance serving it share: why the instance was
//! stopped (so the edge can answer 504 for a spent CPU budget and 500 for a
//! memory limit, since ProxyHandler does not carry the trap through), and a
//! signal that the edge has finished sending the response, so the instance
//! (whose host tasks still flush the body) lives exactly until then.

use futures::channel::oneshot;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

/// Why an instance was stopped before it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    None,
    CpuBudget,
    MemoryLimit,
    /// The wall-clock deadline passed.
    Deadline,
}

/// Shared between the edge (one request) and the instance serving it.
#[derive(Default)]
pub struct RequestLink {
    cause: AtomicU8,
    response_sent: Mutex<Option<oneshot::Receiver<()>>>,
}

impl RequestLink {
    /// A link and the guard whose drop says the response is fully sent.
    pub fn new() -> (std::sync::Arc<RequestLink>, ResponseSentGuard) {
        let (tx, rx) = oneshot::channel();
        let link = RequestLink {
            cause: AtomicU8::new(0),
            response_sent: Mutex::new(Some(rx)),
        };
        (std::sync::Arc::new(link), ResponseSentGuard { _tx: tx })
    }

    pub fn stop(&self, cause: StopCause) {
        let v = match cause {
            StopCause::None => 0,
            StopCause::CpuBudget => 1,
            StopCause::MemoryLimit => 2,
            StopCause::Deadline => 3,
        };
        self.cause.store(v, Ordering::Release);
    }

    pub fn cause(&self) -> StopCause {
        match self.cause.load(Ordering::Acquire) {
            1 => StopCause::CpuBudget,
            2 => StopCause::MemoryLimit,
            3 => StopCause::Deadline,
            _ => StopCause::None,
        }
    }

    /// Ready once the edge has sent the whole response (or given up on it).
    pub fn poll_response_sent(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Ok(mut slot) = self.response_sent.lock() else {
            return Poll::Ready(());
        };
        match slot.as_mut() {
            None => Poll::Ready(()),
            Some(rx) => match std::pin::Pin::new(rx).poll(cx) {
                Poll::Ready(_) => {
                    *slot = None;
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

use std::future::Future as _;

/// Dropped by the edge when it is done with the response.
pub struct ResponseSentGuard {
    _tx: oneshot::Sender<()>,
}
