//! Prometheus metrics, the labels components are counted by, and the
//! `--metrics-listen` endpoint serving `/metrics`, `/healthz` and `/readyz`.

use crate::readiness::Readiness;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::core::{Collector as _, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::Arc;

/// Every metric the gateway exports, in its own registry.
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    pub(crate) http_requests_total: IntCounterVec,
    pub(crate) http_request_duration_seconds: HistogramVec,
    pub(crate) wasm_instantiate_seconds: Histogram,
    pub(crate) wasm_traps_total: IntCounterVec,
    pub(crate) tenant_inflight_requests: IntGaugeVec,
    pub(crate) tenant_cpu_waiting: IntGaugeVec,
    pub(crate) outbound_requests_total: IntCounterVec,
    pub(crate) outbound_duration_seconds: HistogramVec,
    pub(crate) outbound_failures_total: IntCounterVec,
    pub(crate) outbound_pool_connections: IntGaugeVec,
    pub(crate) outbound_pool_connects_total: IntCounterVec,
    pub(crate) peer_up: IntGaugeVec,
    pub(crate) config_version: IntGauge,
    pub(crate) config_reloads_total: IntCounterVec,
    /// 1 while the store answers, else 0.
    pub(crate) store_up: IntGauge,
    /// Times the store was found at an older version than the one served.
    pub(crate) store_version_regressions_total: IntCounter,
    pub(crate) audit_dropped_total: IntCounter,
    pub(crate) rate_limited_total: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let r = &registry;
        // Request durations: 50 µs to about 26 s. Instantiation: 1 µs to about
        // 0.9 s in steps of 25 %, fine enough to tell 16 µs from 20 µs.
        let request_buckets = prometheus::exponential_buckets(0.000_05, 2.0, 20)?;
        let instantiate_buckets = prometheus::exponential_buckets(0.000_001, 1.25, 62)?;
        Ok(Metrics {
            http_requests_total: counters(
                r,
                "okra_http_requests_total",
                "HTTP requests answered, by outcome",
                &["tenant", "app", "component", "status"],
            )?,
            http_request_duration_seconds: histograms(
                r,
                "okra_http_request_duration_seconds",
                "Time to serve a request, from its headers to the end of the response body",
                &["tenant", "app"],
                request_buckets.clone(),
            )?,
            wasm_instantiate_seconds: registered(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "okra_wasm_instantiate_seconds",
                        "Time to instantiate a component for one request",
                    )
                    .buckets(instantiate_buckets),
                )?,
            )?,
            wasm_traps_total: counters(
                r,
                "okra_wasm_traps_total",
                "Guest instances stopped by a trap or a limit (reason: trap|memory|cpu|timeout)",
                &["tenant", "app", "component", "reason"],
            )?,
            tenant_inflight_requests: gauges(
                r,
                "okra_tenant_inflight_requests",
                "Requests in flight per tenant",
                &["tenant"],
            )?,
            tenant_cpu_waiting: gauges(
                r,
                "okra_tenant_cpu_waiting",
                "CPU-bound guests per tenant waiting for one of the tenant's CPU turns",
                &["tenant"],
            )?,
            outbound_requests_total: counters(
                r,
                "okra_outbound_requests_total",
                "Guest outbound HTTP requests (kind: external|chained|self; outcome: ok|denied|error)",
                &["tenant", "app", "kind", "outcome"],
            )?,
            outbound_duration_seconds: histograms(
                r,
                "okra_outbound_duration_seconds",
                "Time from a guest's outbound send to the response head (or the failure)",
                &["tenant", "kind"],
                request_buckets,
            )?,
            outbound_failures_total: counters(
                r,
                "okra_outbound_failures_total",
                "Outbound requests refused or failed, by reason (allowed_outbound_hosts, blocked_address, dns, connect_timeout, ...)",
                &["tenant", "reason"],
            )?,
            outbound_pool_connections: gauges(
                r,
                "okra_outbound_pool_connections",
                "Open outbound connections per tenant, in use or idle in the pool",
                &["tenant"],
            )?,
            outbound_pool_connects_total: counters(
                r,
                "okra_outbound_pool_connects_total",
                "Outbound connections opened per tenant; requests minus this were served by reused connections",
                &["tenant"],
            )?,
            peer_up: gauges(
                r,
                "okra_peer_up",
                "1 while a self-route peer passes its TCP health check, else 0",
                &["peer"],
            )?,
            config_version: registered(
                r,
                IntGauge::new(
                    "okra_config_version",
                    "The store version of the configuration being served",
                )?,
            )?,
            config_reloads_total: counters(
                r,
                "okra_config_reloads_total",
                "Snapshots built from the store; error when an app failed to build and kept its previous version",
                &["result"],
            )?,
            store_up: registered(
                r,
                IntGauge::new(
                    "okra_store_up",
                    "1 while the store answers this gateway, else 0",
                )?,
            )?,
            store_version_regressions_total: registered(
                r,
                IntCounter::new(
                    "okra_store_version_regressions_total",
                    "Times the store was found at an older version than the one served; the served configuration is kept",
                )?,
            )?,
            audit_dropped_total: registered(
                r,
                IntCounter::new(
                    "okra_audit_dropped_total",
                    "Outbound audit records dropped because the audit file writer fell behind",
                )?,
            )?,
            rate_limited_total: counters(
                r,
                "okra_rate_limited_total",
                "Requests refused with 429 because the tenant or the app was over its requests per second",
                &["tenant"],
            )?,

            registry,
        })
    }

    /// Drops every series labelled with app `app` of tenant `tenant`, once
    /// the app is no longer served (deleted, renamed or its tenant gone).
    pub(crate) fn forget_app(&self, tenant: &str, app: &str) {
        let labels = [("tenant", tenant), ("app", app)];
        remove_matching(&self.http_requests_total, &labels);
        remove_matching(&self.http_request_duration_seconds, &labels);
        remove_matching(&self.wasm_traps_total, &labels);
        remove_matching(&self.outbound_requests_total, &labels);
    }

    /// Drops every per-tenant series of `tenant` but the two its admission
    /// state owns (`okra_tenant_inflight_requests` and
    /// `okra_tenant_cpu_waiting`; see [`Metrics::forget_tenant_admission`]).
    pub(crate) fn forget_tenant(&self, tenant: &str) {
        let labels = [("tenant", tenant)];
        remove_matching(&self.outbound_duration_seconds, &labels);
        remove_matching(&self.outbound_failures_total, &labels);
        remove_matching(&self.outbound_pool_connections, &labels);
        remove_matching(&self.outbound_pool_connects_total, &labels);
        remove_matching(&self.rate_limited_total, &labels);
    }

    /// Drops the gauges of a tenant's admission state, once nothing holds it.
    pub(crate) fn forget_tenant_admission(&self, tenant: &str) {
        let labels = [("tenant", tenant)];
        remove_matching(&self.tenant_inflight_requests, &labels);
        remove_matching(&self.tenant_cpu_waiting, &labels);
    }

    /// The registry in Prometheus text format.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("encoding metrics: {e}");
        }
        out
    }
}

/// Removes every series of `vec` whose labels include all of `matching`.
fn remove_matching<T: MetricVecBuilder>(vec: &MetricVec<T>, matching: &[(&str, &str)]) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if matching
                .iter()
                .all(|(name, value)| labels.get(name) == Some(value))
            {
                // It was just listed, so it exists and the labels fit.
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// Registers `metric` and hands it back.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> prometheus::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counters(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn gauges(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

fn histograms(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> prometheus::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    registered(registry, HistogramVec::new(opts, labels)?)
}

/// The metrics listener's HTTP app.
pub(crate) struct MetricsApp {
    pub(crate) metrics: Arc<Metrics>,
    /// What `/readyz` answers from.
    pub(crate) readiness: Arc<Readiness>,
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let (status, content_type, body) = match path.as_str() {
            "/metrics" => (200, "text/plain; version=0.0.4", self.metrics.render()),
            "/healthz" => (200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => match self.readiness.not_ready() {
                None => match self.readiness.warning() {
                    None => (200, "text/plain", b"ready\n".to_vec()),
                    Some(warning) => (
                        200,
                        "text/plain",
                        format!("ready, but: {warning}\n").into_bytes(),
                    ),
                },
                Some(why) => (
                    503,
                    "text/plain",
                    format!("not ready: {why}\n").into_bytes(),
                ),
            },
            _ => (
                404,
                "text/plain",
                b"not found; try /metrics, /healthz or /readyz\n".to_vec(),
            ),
        };
        http::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_app_or_tenant_takes_its_series_with_it() {
        let m = Metrics::new().unwrap();
        for (tenant, app) in [("acme", "web"), ("acme", "api"), ("beta", "web")] {
            m.http_requests_total
                .with_label_values(&[tenant, app, "c", "200"])
                .inc();
            m.http_request_duration_seconds
                .with_label_values(&[tenant, app])
                .observe(0.1);
        }
        m.outbound_pool_connections
            .with_label_values(&["acme"])
            .set(2);
        m.outbound_pool_connections
            .with_label_values(&["beta"])
            .set(1);
        m.forget_app("acme", "web");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            !text.contains(r#"app="web",component="c",status="200",tenant="acme""#),
            "{text}"
        );
        assert!(text.contains(r#"app="api",component="c",status="200",tenant="acme""#));
        assert!(text.contains(r#"app="web",component="c",status="200",tenant="beta""#));
        m.forget_tenant("acme");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            !text.contains(r#"okra_outbound_pool_connections{tenant="acme"}"#),
            "{text}"
        );
        assert!(text.contains(r#"okra_outbound_pool_connections{tenant="beta"} 1"#));
    }
}

/// Who a component belongs to, for metrics and logs.
#[derive(Clone, Debug)]
pub(crate) struct ComponentLabels {
    pub(crate) tenant: String,
    pub(crate) app: String,
    pub(crate) component: String,
}
