//! The load balancer self-routes go through: round robin over the cluster's
//! public listeners (`--peer`, repeatable; a single node balances over its
//! own `--listen`), with a TCP health check every second (two failures in a
//! row mark a peer down) whose results show as `okra_peer_up{peer}`. Built on pingora-load-balancing; the health
//! check runs as a Pingora background service.

use crate::metrics::Metrics;
use async_trait::async_trait;
use pingora::lb::health_check::{HealthObserve, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::services::background::{GenBackgroundService, background_service};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often each peer is probed.
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The peers and the balancer that picks among the healthy ones.
pub(crate) struct Peers {
    balancer: Arc<LoadBalancer<RoundRobin>>,
}

impl Peers {
    /// A balancer over `addrs`, and the background service that health-checks
    /// them (add it to the Pingora server).
    pub(crate) fn new(
        addrs: &[SocketAddr],
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(Self, GenBackgroundService<LoadBalancer<RoundRobin>>)> {
        if addrs.is_empty() {
            anyhow::bail!("self-routes need at least one peer");
        }
        let mut balancer = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().copied())
            .map_err(|e| anyhow::anyhow!("peers {addrs:?}: {e}"))?;
        for addr in addrs {
            metrics
                .peer_up
                .with_label_values(&[&addr.to_string()])
                .set(1);
        }
        let mut check = TcpHealthCheck::new();
        // Two failures in a row mark a peer down, so the first check, which
        // can run before our own listener is bound, raises no false alarm.
        check.consecutive_failure = 2;
        check.health_changed_callback = Some(Box::new(PeerHealthGauge { metrics }));
        balancer.set_health_check(check);
        balancer.health_check_frequency = Some(HEALTH_CHECK_EVERY);
        balancer.parallel_health_check = true;
        let service = background_service("peer health checks", balancer);
        Ok((
            Peers {
                balancer: service.task(),
            },
            service,
        ))
    }

    /// The next healthy peer, round robin. When none passes its check any
    /// peer is tried rather than failing outright.
    pub(crate) fn pick(&self) -> Option<SocketAddr> {
        let backend = self
            .balancer
            .select(b"", 256)
            .or_else(|| self.balancer.select_with(b"", 256, |_, _| true))?;
        backend.addr.as_inet().copied()
    }
}

/// Mirrors health changes into `okra_peer_up`.
struct PeerHealthGauge {
    metrics: Arc<Metrics>,
}

#[async_trait]
impl HealthObserve for PeerHealthGauge {
    async fn observe(&self, target: &Backend, healthy: bool) {
        tracing::warn!(peer = %target.addr, healthy, "peer health changed");
        self.metrics
            .peer_up
            .with_label_values(&[&target.addr.to_string()])
            .set(i64::from(healthy));
    }
}
