//! The `control-plane` binary's operator endpoints, like a gateway's:
//! `/healthz` (the process answers), `/readyz` (its store answers, so the
//! API can serve) and `/metrics` (the API's requests by route and status,
//! and whether the store answered).

use crate::store::Store;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use prometheus::{Encoder as _, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `/readyz` waits for the store's answer.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The control plane's metrics.
pub struct ApiMetrics {
    registry: Registry,
    /// `okra_api_requests_total{route, method, status}`.
    requests: IntCounterVec,
    /// `okra_store_up`: 1 when the store answered the last check.
    store_up: IntGauge,
    /// `okra_config_version`: the store's version when it last answered.
    store_version: IntGauge,
}

impl ApiMetrics {
    /// Registers every series in a registry of its own.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "okra_api_requests_total",
                "REST API requests, by route template, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let store_up = IntGauge::new(
            "okra_store_up",
            "1 when the store answered the last readiness check, else 0",
        )?;
        let store_version = IntGauge::new(
            "okra_config_version",
            "The store's version when it last answered",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(store_up.clone()))?;
        registry.register(Box::new(store_version.clone()))?;
        Ok(ApiMetrics {
            registry,
            requests,
            store_up,
            store_version,
        })
    }

    fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec only fails for malformed metric families,
        // which registration already refused.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Counts every request of `router` in `metrics`, by its route template
/// (`/v1/tenants/{tenant}`), so tenants' names never become labels.
pub fn counted(router: Router, metrics: Arc<ApiMetrics>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(metrics, count))
}

async fn count(State(metrics): State<Arc<ApiMetrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    // Any token is a method to hyper: only the ones the API knows are
    // labels, so made-up methods cannot grow the series.
    let method = match *request.method() {
        http::Method::GET => "GET",
        http::Method::PUT => "PUT",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        _ => "other",
    };
    let response = next.run(request).await;
    metrics
        .requests
        .with_label_values(&[&route, method, response.status().as_str()])
        .inc();
    response
}

/// How long one answer of the store serves `/readyz` and `/metrics`.
const STORE_CHECK_REUSE: Duration = Duration::from_secs(1);

/// What the health endpoints answer from.
struct Health {
    store: Arc<dyn Store>,
    metrics: Arc<ApiMetrics>,
    /// The last check and when it was made. Held across the check, so
    /// probes arriving together share one store call, and a flood of them
    /// costs the store one call a second.
    last_check: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

/// The router for `/healthz`, `/readyz` and `/metrics`.
pub fn router(store: Arc<dyn Store>, metrics: Arc<ApiMetrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /healthz or /readyz\n",
            )
        })
        .with_state(Arc::new(Health {
            store,
            metrics,
            last_check: tokio::sync::Mutex::new(None),
        }))
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    match check_store(&health).await {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// Whether the store answers: its answer of the last second, or a new one.
async fn check_store(health: &Health) -> Result<(), String> {
    let mut last = health.last_check.lock().await;
    if let Some((at, result)) = last.as_ref()
        && at.elapsed() < STORE_CHECK_REUSE
    {
        return result.clone();
    }
    let result = ask_store(health).await;
    *last = Some((Instant::now(), result.clone()));
    result
}

/// Asks the store for its version, and records the answer in the metrics.
async fn ask_store(health: &Health) -> Result<(), String> {
    let answer = tokio::time::timeout(STORE_CHECK_TIMEOUT, health.store.version()).await;
    let result = match answer {
        Ok(Ok(version)) => {
            health
                .metrics
                .store_version
                .set(i64::try_from(version).unwrap_or(i64::MAX));
            Ok(())
        }
        Ok(Err(e)) => Err(format!(
            "the store {} does not answer: {e}",
            health.store.describe()
        )),
        Err(_) => Err(format!(
            "the store {} does not answer within {} s",
            health.store.describe(),
            STORE_CHECK_TIMEOUT.as_secs()
        )),
    };
    health.metrics.store_up.set(i64::from(result.is_ok()));
    result
}

/// The metrics, with the store asked first so `okra_store_up` is current.
async fn render_metrics(State(health): State<Arc<Health>>) -> Response {
    let _ = check_store(&health).await;
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        health.metrics.render(),
    )
        .into_response()
}
