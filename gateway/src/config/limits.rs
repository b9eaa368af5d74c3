//! The flags of `[limits]`: the defaults every tenant's guests run under
//! unless the tenant's record sets its own. The section itself is
//! `tenant_config::Limits`, shared with the API.

use super::layers::Section;
use serde::Serialize;

/// The flags of `[limits]`, named after its keys.
#[derive(Clone, Debug, Default, clap::Args, Serialize)]
pub struct LimitsArgs {
    /// Per-instance memory limit in bytes.
    #[arg(long, env = "OKRA_MEMORY_BYTES")]
    pub memory_bytes: Option<u64>,
    /// Wall-clock limit per request in ms.
    #[arg(long, env = "OKRA_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Guest CPU time per request in ms.
    #[arg(long, env = "OKRA_CPU_TIME_MS")]
    pub cpu_time_ms: Option<u64>,
    /// Largest request body in bytes.
    #[arg(long, env = "OKRA_MAX_REQUEST_BODY_BYTES")]
    pub max_request_body_bytes: Option<u64>,
    /// Requests in flight per tenant.
    #[arg(long, env = "OKRA_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<u32>,
    /// A tenant's CPU-bound guests that may run at once [default: half the edge threads, at least 1].
    #[arg(long, env = "OKRA_CPU_PARALLELISM")]
    pub cpu_parallelism: Option<u32>,
    /// Requests per second per tenant, all apps together (429 beyond) [default: unlimited].
    #[arg(long, env = "OKRA_REQUESTS_PER_SECOND")]
    pub requests_per_second: Option<u32>,
    /// Requests per second per app (429 beyond) [default: unlimited].
    #[arg(long, env = "OKRA_APP_REQUESTS_PER_SECOND")]
    pub app_requests_per_second: Option<u32>,
}

impl Section for LimitsArgs {
    const KEY: Option<&'static str> = Some("limits");
}
