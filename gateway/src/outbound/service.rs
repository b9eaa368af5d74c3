//! The gate a guest's non-HTTP clients pass (Redis, MQTT, and the database
//! clients): the component's `allowed_outbound_hosts` decides on the
//! address as written, then the tenant's connector resolves its host, drops
//! every address the operator blocks and hands out one of the tenant's
//! connection permits, the same ones its HTTP connections use. The client
//! dials only the vetted addresses and holds the permit for as long as its
//! connection is open.

use super::connector::ConnectError;
use super::hooks::ComponentOutbound;
use std::net::SocketAddr;
use std::time::Duration;
use tenant_config::OutboundUrl;
use tokio::sync::OwnedSemaphorePermit;

/// Leave to connect to one service, with the addresses it may be dialled at.
#[derive(Debug)]
pub(crate) struct ServiceGrant {
    /// Resolved and not blocked, in the resolver's order.
    pub(crate) addresses: Vec<SocketAddr>,
    /// How long the client may take to connect.
    pub(crate) connect_timeout: Duration,
    /// One of the tenant's connections; dropped with the connection.
    pub(crate) permit: OwnedSemaphorePermit,
}

/// Why a service address was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceRefusal {
    /// No `allowed_outbound_hosts` entry covers it.
    #[error("{0} is not allowed by the component's allowed_outbound_hosts")]
    NotAllowed(String),
    /// It cannot be used as written.
    #[error("{0}")]
    BadAddress(String),
    /// Resolving, the block list or the tenant's connection cap said no.
    #[error("{0}")]
    Unreachable(#[from] ConnectError),
}

impl ServiceRefusal {
    /// What the guest is told: never the addresses a name resolved to (a
    /// tenant must not map the operator's network through refusals); the
    /// gateway logs the whole refusal.
    pub(crate) fn for_guest(&self) -> String {
        match self {
            ServiceRefusal::Unreachable(ConnectError::Blocked { host, .. }) => {
                format!("every address of {host} is in a blocked network")
            }
            other => other.to_string(),
        }
    }
}

impl ComponentOutbound {
    /// Whether the operator lets guests open PostgreSQL sessions.
    pub(crate) fn postgres_enabled(&self) -> bool {
        self.outbound.config.postgres
    }

    /// Whether `allowed_outbound_hosts` covers `address` (a URL, or
    /// `host:port` read with `default_scheme`), as Spin checks it.
    pub(crate) fn allows_service(&self, address: &str, default_scheme: &str) -> bool {
        OutboundUrl::parse(address, default_scheme).is_ok_and(|url| self.allowed.allows(&url))
    }

    /// Vets `address` for a client speaking `default_scheme`: allowed,
    /// resolved, not blocked, and within the tenant's connection cap.
    pub(crate) async fn open_service(
        &self,
        address: &str,
        default_scheme: &str,
    ) -> Result<ServiceGrant, ServiceRefusal> {
        let url =
            OutboundUrl::parse(address, default_scheme).map_err(ServiceRefusal::BadAddress)?;
        if !self.allowed.allows(&url) {
            return Err(ServiceRefusal::NotAllowed(url.to_string()));
        }
        let port = url
            .port
            .ok_or_else(|| ServiceRefusal::BadAddress(format!("{address:?} names no port")))?;
        let connector = &self.pools.services;
        let connect_timeout = connector.default_connect_timeout;
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let (addresses, permit) = connector
            .vet(&url.host.to_string(), port, deadline)
            .await
            .inspect_err(|e| {
                tracing::info!(
                    tenant = %self.labels.tenant,
                    app = %self.labels.app,
                    component = %self.labels.component,
                    "a guest's {default_scheme} connection was refused: {e}"
                );
            })?;
        Ok(ServiceGrant {
            addresses,
            connect_timeout,
            permit,
        })
    }
}
