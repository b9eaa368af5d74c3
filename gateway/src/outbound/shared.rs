//! The outbound state every app shares: the operator's rules (policies,
//! blocked networks, pinned names, extra CAs), the audit log, the self-route
//! peers, and one pool per tenant, made on first use.

use super::audit::AuditLog;
use super::block_networks::BlockedNetworks;
use super::config::OutboundConfig;
use super::connector::{ConnectionMetrics, TenantConnector};
use super::peers::Peers;
use super::pool::{TenantPool, Timeouts};
use super::resolver::Resolver;
use crate::context::inbound::JwtVerifier;
use crate::metrics::Metrics;
use anyhow::Context as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenant_config::policy::{Policy, Scope, ScopeLevel, Settings};
use tokio::sync::Semaphore;

/// Everything outbound, shared by every app: the operator's rules and one
/// pool per tenant, made on first use.
pub(crate) struct Outbound {
    pub(super) config: OutboundConfig,
    resolver: Arc<Resolver>,
    pub(super) blocked: Arc<BlockedNetworks>,
    tls: tokio_rustls::TlsConnector,
    /// Shared with the send path in `hooks`, which counts and audits.
    pub(super) metrics: Arc<Metrics>,
    pools: Mutex<HashMap<String, TenantPools>>,
    global_policy: Option<Policy>,
    tenant_policies: HashMap<String, Policy>,
    verifiers: HashMap<String, Arc<JwtVerifier>>,
    pub(super) audit: AuditLog,
    pub(super) peers: Peers,
}

impl Outbound {
    pub(crate) fn new(
        config: OutboundConfig,
        metrics: Arc<Metrics>,
        peers: Peers,
    ) -> anyhow::Result<Self> {
        if config.max_connections_per_tenant == 0 {
            anyhow::bail!("outbound.max_connections_per_tenant must be at least 1");
        }
        let global_policy = match &config.global_policy {
            Some(path) => Some(Policy::load(path, ScopeLevel::Operator, "operator")?),
            None => None,
        };
        let mut tenant_policies = HashMap::new();
        let mut verifiers = HashMap::new();
        for (tenant, path) in &config.tenant_policies {
            let policy = Policy::load(path, ScopeLevel::Tenant, &format!("tenant {tenant}"))?;
            if let Some(auth) = &policy.auth {
                let verifier = JwtVerifier::new(auth)
                    .with_context(|| format!("tenant policy {}", path.display()))?;
                verifiers.insert(tenant.clone(), Arc::new(verifier));
            }
            tenant_policies.insert(tenant.clone(), policy);
        }
        Ok(Outbound {
            global_policy,
            tenant_policies,
            verifiers,
            audit: AuditLog::open(
                config.audit_log.as_deref(),
                metrics.audit_dropped_total.clone(),
            )?,
            resolver: Arc::new(Resolver::new(&config.resolve)?),
            blocked: Arc::new(BlockedNetworks::parse(&config.block_networks)?),
            tls: tls_connector(config.extra_ca_file.as_deref())?,
            metrics,
            pools: Mutex::default(),
            peers,
            config,
        })
    }

    /// The operator and tenant scopes every request of `tenant` passes.
    pub(crate) fn tenant_scopes(&self, tenant: &str) -> Vec<Arc<Scope>> {
        self.global_policy
            .iter()
            .chain(self.tenant_policies.get(tenant))
            .map(|p| p.scope.clone())
            .collect()
    }

    /// The tenant's inbound JWT verifier, if it configured keys.
    pub(crate) fn verifier(&self, tenant: &str) -> Option<Arc<JwtVerifier>> {
        self.verifiers.get(tenant).cloned()
    }

    /// The timeouts for a request: the guest's where given, else the policy's
    /// `timeoutMsDefault`, else the operator's defaults; never more than the
    /// policy's `maxTimeoutMs` or the operator's `max_timeout_ms`.
    pub(crate) fn timeouts(
        &self,
        asked: Option<&wasmtime_wasi_http::RequestOptions>,
        policy: &Settings,
    ) -> Timeouts {
        let cap_ms = policy
            .max_timeout_ms
            .map_or(self.config.max_timeout_ms, |m| {
                m.min(self.config.max_timeout_ms)
            });
        let cap = Duration::from_millis(cap_ms);
        let pick = |asked: Option<Duration>, operator_ms: u64| {
            let default_ms = policy.timeout_ms_default.unwrap_or(operator_ms);
            asked.unwrap_or(Duration::from_millis(default_ms)).min(cap)
        };
        Timeouts {
            connect: pick(
                asked.and_then(|o| o.connect_timeout),
                self.config.connect_timeout_ms,
            ),
            first_byte: pick(
                asked.and_then(|o| o.first_byte_timeout),
                self.config.first_byte_timeout_ms,
            ),
            between_bytes: pick(
                asked.and_then(|o| o.between_bytes_timeout),
                self.config.between_bytes_timeout_ms,
            ),
        }
    }

    /// Drops a gone tenant's pools (and their idle connections).
    pub(crate) fn forget_tenant(&self, tenant: &str) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.remove(tenant);
    }

    /// The tenant's pools, made on first use. Components take theirs when
    /// they load, so the request path never looks them up.
    pub(crate) fn pools(&self, tenant: &str) -> TenantPools {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(tenant.to_string())
            .or_insert_with(|| {
                let max = self.config.max_connections_per_tenant as usize;
                let external = TenantConnector {
                    resolver: self.resolver.clone(),
                    blocked: self.blocked.clone(),
                    tls: self.tls.clone(),
                    permits: Arc::new(Semaphore::new(max)),
                    max_connections: max,
                    default_connect_timeout: Duration::from_millis(self.config.connect_timeout_ms),
                    metrics: ConnectionMetrics {
                        open: self
                            .metrics
                            .outbound_pool_connections
                            .with_label_values(&[tenant]),
                        opened: self
                            .metrics
                            .outbound_pool_connects_total
                            .with_label_values(&[tenant]),
                    },
                };
                // Peers are the operator's own listeners: exempt from
                // block_networks, but sharing the tenant's connection cap.
                let peers = TenantConnector {
                    blocked: Arc::new(BlockedNetworks::default()),
                    ..external.clone()
                };
                let idle = Duration::from_millis(self.config.idle_timeout_ms);
                TenantPools {
                    services: external.clone(),
                    external: Arc::new(TenantPool::new(external, idle)),
                    peers: Arc::new(TenantPool::new(peers, idle)),
                }
            })
            .clone()
    }

    /// Hops a request may take through chaining and self-routes.
    pub(crate) fn max_hops(&self) -> u32 {
        self.config.max_hops
    }
}

/// One tenant's clients: to the outside world, and to the gateway's peers
/// for self-routes.
#[derive(Clone)]
pub(crate) struct TenantPools {
    pub(crate) external: Arc<TenantPool>,
    /// The external pool's connector, for guests' non-HTTP clients: the
    /// same resolver, block list and connection permits.
    pub(crate) services: TenantConnector,
    pub(crate) peers: Arc<TenantPool>,
}

/// rustls with the webpki roots (plus the operator's extra CAs), ALPN h2 and http/1.1.
fn tls_connector(
    extra_ca_file: Option<&std::path::Path>,
) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    if let Some(path) = extra_ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("outbound.extra_ca_file: cannot read {}", path.display()))?;
        let mut added = 0;
        for cert in rustls_pemfile_certs(&pem, path)? {
            roots.add(cert).with_context(|| {
                format!(
                    "outbound.extra_ca_file {}: a certificate is not a valid CA",
                    path.display()
                )
            })?;
            added += 1;
        }
        if added == 0 {
            anyhow::bail!(
                "outbound.extra_ca_file {}: no certificates found",
                path.display()
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls has no usable protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Every certificate in a PEM file.
fn rustls_pemfile_certs(
    pem: &[u8],
    path: &std::path::Path,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "outbound.extra_ca_file {}: not PEM certificates",
                path.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that answers every request with a head and 3 of 10 body
    /// bytes, then holds the connection open.
    async fn stalling_upstream() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
                    let _ = stream.write_all(head).await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                });
            }
        });
        addr
    }

    fn outbound_with(config: OutboundConfig) -> Outbound {
        let metrics = Arc::new(Metrics::new().unwrap());
        let (peers, _) = Peers::new(&["127.0.0.1:1".parse().unwrap()], metrics.clone()).unwrap();
        Outbound::new(config, metrics, peers).unwrap()
    }

    #[tokio::test]
    async fn one_tenant_cannot_use_up_anothers_connections() {
        let addr = stalling_upstream().await;
        let config = OutboundConfig {
            block_networks: vec!["none".into()],
            max_connections_per_tenant: 1,
            ..OutboundConfig::default()
        };
        let outbound = outbound_with(config);
        let request = || {
            let body = http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync();
            http::Request::get(format!("http://{addr}/"))
                .body(body)
                .unwrap()
        };
        let timeouts = Timeouts {
            connect: Duration::from_millis(300),
            first_byte: Duration::from_secs(5),
            between_bytes: Duration::from_secs(30),
        };
        // Tenant a's only connection is busy with an unfinished body...
        let a = outbound.pools("a");
        let held = a.external.send(request(), timeouts).await.unwrap();
        let refused = a.external.send(request(), timeouts).await.unwrap_err();
        assert_eq!(refused.reason, "connection_limit", "{}", refused.detail);
        // ...and self-routes to peers count against the same cap...
        let refused = a.peers.send(request(), timeouts).await.unwrap_err();
        assert_eq!(refused.reason, "connection_limit", "{}", refused.detail);
        // ...which leaves tenant b's allowance untouched.
        let other = outbound
            .pools("b")
            .external
            .send(request(), timeouts)
            .await
            .unwrap();
        assert_eq!(other.status(), 200);
        drop(held);
    }

    /// A listener whose accept queue is full and never drained: the kernel
    /// drops further SYNs, so a connect can only time out.
    async fn unanswered_listener() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(stream)) => fillers.push(stream),
                _ => break,
            }
        }
        (listener, fillers)
    }

    #[tokio::test]
    async fn a_connect_that_hangs_times_out_with_its_own_reason() {
        let (listener, _fillers) = unanswered_listener().await;
        let addr = listener.local_addr().unwrap();
        let config = OutboundConfig {
            block_networks: vec!["none".into()],
            ..OutboundConfig::default()
        };
        let outbound = outbound_with(config);
        let body = http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = http::Request::get(format!("http://{addr}/"))
            .body(body)
            .unwrap();
        let timeouts = Timeouts {
            connect: Duration::from_millis(300),
            first_byte: Duration::from_secs(5),
            between_bytes: Duration::from_secs(5),
        };
        let failure = outbound
            .pools("a")
            .external
            .send(request, timeouts)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, "connect_timeout", "{}", failure.detail);
        assert!(matches!(
            failure.code,
            wasmtime_wasi_http::Error::ConnectionTimeout
        ));
    }

    #[test]
    fn guest_timeouts_are_capped_and_defaulted() {
        let outbound = outbound_with(OutboundConfig::default());
        let asked = wasmtime_wasi_http::RequestOptions {
            connect_timeout: Some(Duration::from_secs(3600)),
            first_byte_timeout: Some(Duration::from_millis(250)),
            between_bytes_timeout: None,
        };
        let policy = Settings {
            max_timeout_ms: Some(5_000),
            timeout_ms_default: Some(2_000),
            ..Settings::default()
        };
        let t = outbound.timeouts(Some(&asked), &policy);
        assert_eq!(t.connect, Duration::from_secs(5));
        assert_eq!(t.first_byte, Duration::from_millis(250));
        assert_eq!(t.between_bytes, Duration::from_secs(2));
        let t = outbound.timeouts(None, &Settings::default());
        assert_eq!(t.connect, Duration::from_secs(10));
        assert_eq!(t.first_byte, Duration::from_secs(30));
    }
}
