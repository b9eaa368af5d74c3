//! What one request and the instance serving it share: why the instance was
//! stopped (so the edge can answer 504 for a spent CPU budget and 500 for a
//! memory limit, since ProxyHandler does not carry the trap through), and a
//! signal that the edge has finished sending the response, so the instance
//! (whose host tasks still flush the body) lives exactly until then.

use futures::channel::oneshot;
use std::future::Future as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use wasmtime_wasi_http::handler::ExpirationError;

/// Why an instance was stopped before it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopCause {
    None,
    CpuBudget,
    MemoryLimit,
    /// The wall-clock deadline passed.
    Deadline,
    /// The gateway is shutting down and its grace period is over.
    Shutdown,
}

/// How a guest that failed ended, decided once from the cause its request's
/// link recorded and the error its run returned: the edge's answer (status,
/// code, message) and the `okra_wasm_traps_total` reason both come from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuestFailure {
    /// It ran through its `cpu_time_ms`.
    CpuBudget,
    /// It tried to grow past `memory_bytes`.
    MemoryLimit,
    /// The request's wall-clock deadline passed.
    Deadline,
    /// The gateway stopped it: shutting down, past its grace period.
    Shutdown,
    /// Anything else: a trap, a panic, a bad response.
    Trap,
}

/// What the client reads when the app failed.
const GUEST_FAILED: &str = "the app failed while handling this request";

impl GuestFailure {
    /// Classifies a failed run. A limit recorded on the link wins (every
    /// path records the deadline before it ends a request); otherwise only
    /// the error's type tells, never its text, which a guest can write:
    /// an expired `ProxyHandler` worker is `ExpirationError`, and an epoch
    /// interruption is a spent CPU budget.
    pub(crate) fn classify(recorded: StopCause, error: &wasmtime::Error) -> Self {
        match recorded {
            StopCause::CpuBudget => return GuestFailure::CpuBudget,
            StopCause::MemoryLimit => return GuestFailure::MemoryLimit,
            StopCause::Deadline => return GuestFailure::Deadline,
            StopCause::Shutdown => return GuestFailure::Shutdown,
            StopCause::None => {}
        }
        if error.downcast_ref::<ExpirationError>().is_some() {
            GuestFailure::Deadline
        } else if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            GuestFailure::CpuBudget
        } else {
            GuestFailure::Trap
        }
    }

    /// The client's status: 504 when the app ran out of time, 503 when the
    /// gateway stopped it to shut down, else 500.
    pub(crate) fn status(self) -> u16 {
        match self {
            GuestFailure::CpuBudget | GuestFailure::Deadline => 504,
            GuestFailure::Shutdown => 503,
            GuestFailure::MemoryLimit | GuestFailure::Trap => 500,
        }
    }

    /// The error code in the client's JSON body.
    pub(crate) fn code(self) -> &'static str {
        match self {
            GuestFailure::CpuBudget | GuestFailure::Deadline => "guest_timeout",
            GuestFailure::Shutdown => "shutting_down",
            GuestFailure::MemoryLimit | GuestFailure::Trap => "guest_error",
        }
    }

    /// The message in the client's JSON body.
    pub(crate) fn message(self) -> &'static str {
        match self {
            GuestFailure::CpuBudget | GuestFailure::Deadline => {
                "the app did not answer within its time limit"
            }
            GuestFailure::Shutdown => "the gateway is shutting down; retry the request",
            GuestFailure::MemoryLimit | GuestFailure::Trap => GUEST_FAILED,
        }
    }

    /// The `reason` label of `okra_wasm_traps_total`.
    pub(crate) fn trap_label(self) -> &'static str {
        match self {
            GuestFailure::CpuBudget => "cpu",
            GuestFailure::MemoryLimit => "memory",
            GuestFailure::Deadline => "timeout",
            GuestFailure::Shutdown => "shutdown",
            GuestFailure::Trap => "trap",
        }
    }
}

/// Shared between the edge (one request) and the instance serving it.
#[derive(Default)]
pub(crate) struct RequestLink {
    cause: AtomicU8,
    response_sent: Mutex<Option<oneshot::Receiver<()>>>,
}

impl RequestLink {
    /// A link and the guard whose drop says the response is fully sent.
    pub(crate) fn new() -> (std::sync::Arc<RequestLink>, ResponseSentGuard) {
        let (tx, rx) = oneshot::channel();
        let link = RequestLink {
            cause: AtomicU8::new(0),
            response_sent: Mutex::new(Some(rx)),
        };
        (std::sync::Arc::new(link), ResponseSentGuard { _tx: tx })
    }

    pub(crate) fn stop(&self, cause: StopCause) {
        let v = match cause {
            StopCause::None => 0,
            StopCause::CpuBudget => 1,
            StopCause::MemoryLimit => 2,
            StopCause::Deadline => 3,
            StopCause::Shutdown => 4,
        };
        self.cause.store(v, Ordering::Release);
    }

    pub(crate) fn cause(&self) -> StopCause {
        match self.cause.load(Ordering::Acquire) {
            1 => StopCause::CpuBudget,
            2 => StopCause::MemoryLimit,
            3 => StopCause::Deadline,
            4 => StopCause::Shutdown,
            _ => StopCause::None,
        }
    }

    /// Ready once the edge has sent the whole response (or given up on it).
    pub(crate) fn poll_response_sent(&self, cx: &mut Context<'_>) -> Poll<()> {
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

/// Dropped by the edge when it is done with the response.
pub(crate) struct ResponseSentGuard {
    _tx: oneshot::Sender<()>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_limit_wins_over_what_the_error_says() {
        let trap = wasmtime::Error::from(wasmtime::Trap::UnreachableCodeReached);
        for (cause, want) in [
            (StopCause::CpuBudget, GuestFailure::CpuBudget),
            (StopCause::MemoryLimit, GuestFailure::MemoryLimit),
            (StopCause::Deadline, GuestFailure::Deadline),
            (StopCause::None, GuestFailure::Trap),
        ] {
            assert_eq!(GuestFailure::classify(cause, &trap), want);
        }
    }

    #[test]
    fn errors_without_a_recorded_cause_are_classified_by_kind() {
        let expired = wasmtime::Error::from(ExpirationError);
        let timed_out = wasmtime::format_err!("guest timed out");
        let interrupted = wasmtime::Error::from(wasmtime::Trap::Interrupt);
        assert_eq!(
            GuestFailure::classify(StopCause::None, &expired),
            GuestFailure::Deadline
        );
        assert_eq!(
            GuestFailure::classify(StopCause::None, &timed_out),
            GuestFailure::Trap,
            "an error's text (which a guest can write) decides nothing"
        );
        assert_eq!(
            GuestFailure::classify(StopCause::None, &interrupted),
            GuestFailure::CpuBudget
        );
    }

    #[test]
    fn each_failure_maps_to_one_answer_and_one_label() {
        let answers: Vec<_> = [
            GuestFailure::CpuBudget,
            GuestFailure::MemoryLimit,
            GuestFailure::Deadline,
            GuestFailure::Trap,
        ]
        .into_iter()
        .map(|f| (f.status(), f.code(), f.trap_label()))
        .collect();
        assert_eq!(
            answers,
            [
                (504, "guest_timeout", "cpu"),
                (500, "guest_error", "memory"),
                (504, "guest_timeout", "timeout"),
                (500, "guest_error", "trap"),
            ]
        );
    }
}
