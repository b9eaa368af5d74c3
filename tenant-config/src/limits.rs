//! Per-request resource limits and their documented defaults.
//!
//! These are the limits a tenant's guest runs under. The operator sets the
//! defaults (gateway `--config` / flags); later the control plane sets them
//! per tenant. The gateway enforces them; this module only says what they are.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits applied to every request of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory one instance may grow to, in bytes (default 128 MiB).
    pub memory_bytes: u64,
    /// Wall-clock deadline for the whole request, body included, in ms (default 30 000).
    pub request_timeout_ms: u64,
    /// Guest CPU time per request, in ms (default 10 000). Measured in epoch
    /// ticks while wasm runs, so it is accurate to one tick.
    pub cpu_time_ms: u64,
    /// Largest request body accepted, in bytes (default 10 MiB). Larger gets 413.
    pub max_request_body_bytes: u64,
    /// Requests one tenant may have in flight at once (default 100). More get 503.
    pub max_concurrent_requests: u32,
    /// How many of the tenant's CPU-bound guests (those that ran through a
    /// whole epoch tick) may run at once; the rest wait their turn. Unset:
    /// half the gateway's edge threads, at least 1.
    pub cpu_parallelism: Option<u32>,
    /// Requests per second the tenant may make across all its apps, as a
    /// token bucket holding one second's worth. Unset: no limit. More get 429.
    pub requests_per_second: Option<u32>,
    /// The same, for each app of the tenant on its own.
    pub app_requests_per_second: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            request_timeout_ms: 30_000,
            cpu_time_ms: 10_000,
            max_request_body_bytes: 10 << 20,
            max_concurrent_requests: 100,
            cpu_parallelism: None,
            requests_per_second: None,
            app_requests_per_second: None,
        }
    }
}

impl Limits {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn cpu_time(&self) -> Duration {
        Duration::from_millis(self.cpu_time_ms)
    }
}
