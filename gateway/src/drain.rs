//! The gateway's graceful shutdown. SIGTERM and SIGINT (and SIGQUIT, which
//! hands the listening sockets to a new gateway first) start it: Pingora
//! stops accepting and ends keep-alive, `/readyz` fails, and the requests in
//! flight get up to `shutdown_grace_ms` to finish. Guests still running then
//! are stopped at their next epoch tick and answered 503, and the process
//! exits 0 once no request is left (or a short wait after that). A second
//! SIGTERM or SIGINT exits at once, with 130. Guests waiting on I/O rather
//! than running wasm are not reached by the stop: they are cut when the
//! process exits.
//!
//! The process exits here rather than through Pingora's runtime shutdown,
//! which drops every task where it stands: a wasi:http 0.2 guest dropped
//! while suspended in its own code overflowed the edge thread's stack.

use crate::in_flight::InFlight;
use crate::readiness::Readiness;
use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long stopped guests get to unwind before the process exits anyway.
const STOPPED_GUESTS_WAIT: Duration = Duration::from_secs(2);
/// How long the process lingers once nothing is in flight, so that what the
/// connections still buffer (HTTP/2 frames, the final GOAWAY) goes out.
const LINGER: Duration = Duration::from_millis(500);
/// How often the drain looks at the requests in flight.
const POLL: Duration = Duration::from_millis(20);

/// The background service that drains the gateway once Pingora signals
/// shutdown, then ends the process.
pub(crate) struct Drain {
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) readiness: Arc<Readiness>,
    /// The runtime's flag that stops every guest at its next tick.
    pub(crate) stop_guests: Arc<AtomicBool>,
    pub(crate) grace: Duration,
}

impl Drain {
    /// Waits until no request is in flight or `limit` has passed; returns
    /// how many are left.
    async fn settle(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let left = self.in_flight.count();
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drain {
    /// Waits for the requests in flight, stops the guests still running
    /// after the grace period, and waits a little more.
    async fn drain(&self) {
        let started = Instant::now();
        tracing::info!(
            in_flight = self.in_flight.count(),
            grace_ms = self.grace.as_millis() as u64,
            "shutting down: no new connections; requests in flight may finish"
        );
        let left = self.settle(self.grace).await;
        if left > 0 {
            tracing::warn!(left, "grace period over: stopping the guests still running");
            self.stop_guests.store(true, Ordering::Release);
            let left = self.settle(STOPPED_GUESTS_WAIT).await;
            if left > 0 {
                tracing::warn!(left, "exiting with requests still in flight");
            }
        }
        tokio::time::sleep(LINGER).await;
        tracing::info!(
            after_ms = started.elapsed().as_millis() as u64,
            "drained; exiting"
        );
    }
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        self.readiness.set_stopping();
        tokio::select! {
            () = self.drain() => std::process::exit(0),
            () = second_signal() => {
                tracing::warn!("a second signal: exiting without waiting for the drain");
                std::process::exit(130);
            }
        }
    }
}

/// Resolves on the next SIGTERM or SIGINT (the first one started the drain).
async fn second_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// The signals that end the gateway: SIGTERM and SIGINT drain it, SIGQUIT
/// hands its listening sockets to a new gateway, then drains it. (Pingora's
/// own watcher treats SIGINT as "drop everything now".)
pub(crate) struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot watch for signals; only SIGKILL will stop this gateway");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::GracefulTerminate,
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
        }
    }
}
