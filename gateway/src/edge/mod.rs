//! The public edge: a Pingora `HttpServerApp` (HTTP/1.1 keep-alive and h2c)
//! that maps Host to an app, routes by Spin's rules and streams the request
//! into a fresh guest instance and its response back out.
//!
//! A request goes through named steps: its head is checked ([`head`]), its
//! app and route are found, then the edge answers itself ([`refusal`]), a
//! static route answers, or a component does ([`component_run`]: admit,
//! await the head, stream the body). Whatever the way, it ends in one
//! [`Outcome`], and [`Edge::finish`] counts every request exactly once,
//! health checks and unknown hosts included.
//!
//! The top layer of the data plane: `edge` uses `app`, `guest` and
//! `context`; nothing below imports it.

pub(crate) mod component_run;
pub(crate) mod head;
pub(crate) mod outcome;
pub(crate) mod ready_body;
pub(crate) mod refusal;
pub(crate) mod request_body;

use crate::app::{App, RouteTarget, Snapshot};
use crate::in_flight::InFlight;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use component_run::{Keep, Stop, Target};
use head::{declared_length, has_both_length_headers, host_of};
use outcome::Outcome;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use refusal::Refusal;
use std::sync::Arc;
use std::time::Instant;

/// The edge application shared by every connection.
pub(crate) struct Edge {
    /// Swapped whole by the store watcher; a request keeps the snapshot it
    /// looked its app up in.
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    /// Counts the requests being served, for the drain at shutdown.
    in_flight: Arc<InFlight>,
    options: HttpServerOptions,
    /// Whether apps' responses carry `x-request-id` (`--response-request-id`).
    response_request_id: bool,
}

impl Edge {
    pub(crate) fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<Metrics>,
        in_flight: Arc<InFlight>,
        response_request_id: bool,
    ) -> Self {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        Edge {
            snapshot,
            metrics,
            in_flight,
            options,
            response_request_id,
        }
    }
}

#[async_trait]
impl HttpServerApp for Edge {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!("reading a request: {e}");
                return None;
            }
        }
        // Counted from its head to its last byte handed to the connection,
        // so a shutdown waits for it.
        let _counted = self.in_flight.enter();
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        if !self.serve(&mut session).await {
            return None;
        }
        if *shutdown.borrow() {
            // Shutting down began while it ran: no next request on this
            // connection, which the drain would not be waiting for.
            session.set_keepalive(None);
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(stream) => stream.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(e) => {
                tracing::debug!("finishing a request: {e}");
                None
            }
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

/// What answered a request, for its metric labels: nothing when no app was
/// found (health checks, unknown hosts, bad heads), else the app, and the
/// component when one ran.
#[derive(Default)]
struct AnsweredBy {
    app: Option<Arc<App>>,
    component: Option<String>,
}

impl Edge {
    /// Serves one request; returns whether the connection may be reused.
    async fn serve(&self, session: &mut ServerSession) -> bool {
        let started = Instant::now();
        let mut by = AnsweredBy::default();
        let outcome = self.answer(session, &mut by).await;
        self.finish(&by, &outcome, started);
        outcome.reusable
    }

    /// Finds who answers the request and has them answer it.
    async fn answer(&self, session: &mut ServerSession, by: &mut AnsweredBy) -> Outcome {
        if has_both_length_headers(session) {
            return refuse(session, Refusal::AmbiguousBodyLength)
                .await
                .closing();
        }
        if let Err(why) = declared_length(session) {
            return refuse(session, Refusal::InvalidContentLength(why))
                .await
                .closing();
        }
        let path = session.req_header().uri.path().to_string();
        if path == "/.well-known/spin/health" {
            return Outcome {
                status: 200,
                reusable: refusal::write_text(session, b"OK").await,
            };
        }
        if path.starts_with(tenant_config::routes::WELL_KNOWN_PREFIX) {
            return refuse(session, Refusal::UnknownSpinEndpoint).await;
        }
        let host = host_of(session);
        let Some(app) = self.snapshot.load().lookup(&host).cloned() else {
            return refuse(session, Refusal::UnknownHost(host)).await;
        };
        by.app = Some(app.clone());
        if let Err(wait) = app.admission.check_rate(&app.name) {
            self.metrics
                .rate_limited_total
                .with_label_values(&[&app.tenant])
                .inc();
            return refuse(session, Refusal::RateLimited(wait)).await;
        }
        match app.routes.route(&path) {
            None => refuse(session, Refusal::NoRoute).await,
            Some((_, RouteTarget::Static(response), _)) => Outcome {
                status: response.status,
                reusable: refusal::write_static(session, response).await,
            },
            Some((pattern, RouteTarget::Component(runner), matched)) => {
                by.component = Some(runner.labels.component.clone());
                let target = Target {
                    app: &app,
                    host: &host,
                    pattern,
                    matched: &matched,
                    runner,
                };
                component_run::run(session, &target, self.response_request_id).await
            }
        }
    }

    /// Counts a request, however it ended: its status, and how long it took.
    /// A request no app answered is counted with empty `tenant` and `app`.
    fn finish(&self, by: &AnsweredBy, outcome: &Outcome, started: Instant) {
        let (tenant, app) = by
            .app
            .as_deref()
            .map_or(("", ""), |app| (app.tenant.as_str(), app.name.as_str()));
        let component = by.component.as_deref().unwrap_or("");
        self.metrics
            .http_requests_total
            .with_label_values(&[tenant, app, component, &outcome.status.to_string()])
            .inc();
        self.metrics
            .http_request_duration_seconds
            .with_label_values(&[tenant, app])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Answers with `refusal`; the connection may carry another request if it
/// was written whole.
async fn refuse(session: &mut ServerSession, refusal: Refusal) -> Outcome {
    Stop::Refuse(refusal, Keep::Yes).finish(session).await
}
