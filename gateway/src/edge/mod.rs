//! The public edge: a Pingora `HttpServerApp` (HTTP/1.1 keep-alive and h2c)
//! that maps Host to an app, routes by Spin's rules and streams the request
//! into a fresh guest instance and its response back out.
//!
//! The top layer of the data plane: `edge` uses `app`, `guest` and
//! `context`; nothing below imports it.

pub mod ready_body;
pub mod request_body;

use crate::app::{App, RouteTarget, Snapshot};
use crate::context::inbound::InboundContext;
use crate::edge::ready_body::{READY_BODY_LIMIT, ReadyBody};
use crate::edge::request_body::{BodyError, ChannelBody};
use crate::guest::component::ComponentRunner;
use crate::guest::lifecycle::{GuestFailure, RequestLink};
use crate::guest::request::{GuestRequest, HOP_BY_HOP};
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Instant;
use tenant_config::spin_headers::InboundRequest;
use tenant_config::{RouteMatch, RoutePattern, StaticResponse};
use wasmtime_wasi_http::WasiBody;

/// The edge application shared by every connection.
pub struct Edge {
    /// Swapped whole by the store watcher; a request keeps the snapshot it
    /// looked its app up in.
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    options: HttpServerOptions,
}

impl Edge {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> Self {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        Edge {
            snapshot,
            metrics,
            options,
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
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        if !self.serve(&mut session).await {
            return None;
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

/// Correlates a request across the edge, the guest and its outbound calls.
const X_REQUEST_ID: &str = "x-request-id";

/// How one request ended, for metrics.
struct Outcome {
    status: u16,
    component: String,
    /// False when the connection must not be reused.
    reusable: bool,
}

impl Edge {
    /// Serves one request; returns whether the connection may be reused.
    async fn serve(&self, session: &mut ServerSession) -> bool {
        let started = Instant::now();
        if has_both_length_headers(session) {
            respond_error(
                session,
                400,
                "ambiguous_body_length",
                "a request may not carry both Content-Length and Transfer-Encoding",
            )
            .await;
            return false;
        }
        if let Err(why) = declared_length(session) {
            respond_error(session, 400, "invalid_content_length", why).await;
            return false;
        }
        let header = session.req_header();
        let path = header.uri.path().to_string();
        if path == "/.well-known/spin/health" {
            return respond(session, 200, "text/plain", Bytes::from_static(b"OK")).await;
        }
        if path.starts_with(tenant_config::routes::WELL_KNOWN_PREFIX) {
            return respond_error(session, 404, "not_found", "no such Spin endpoint").await;
        }
        let host = header
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| header.uri.authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_string();
        let Some(app) = self.snapshot.load().lookup(&host).cloned() else {
            let message = format!("no app is served at host {host:?}");
            return respond_error(session, 404, "unknown_host", &message).await;
        };
        if let Err(wait) = app.admission.check_rate(&app.name) {
            self.metrics
                .rate_limited_total
                .with_label_values(&[&app.tenant])
                .inc();
            let reusable = respond_rate_limited(session, wait).await;
            self.record(&app, String::new(), 429, started);
            return reusable;
        }
        let outcome = match app.routes.route(&path) {
            None => Outcome {
                status: 404,
                component: String::new(),
                reusable: respond_error(session, 404, "no_route", "no route matches this path")
                    .await,
            },
            Some((_, RouteTarget::Static(response), _)) => Outcome {
                status: response.status,
                component: String::new(),
                reusable: respond_static(session, response).await,
            },
            Some((pattern, RouteTarget::Component(runner), matched)) => {
                run_component(session, &app, &host, pattern, &matched, runner).await
            }
        };
        self.record(&app, outcome.component, outcome.status, started);
        outcome.reusable
    }

    /// Counts a request of `app` that ended with `status`.
    fn record(&self, app: &App, component: String, status: u16, started: Instant) {
        self.metrics
            .http_requests_total
            .with_label_values(&[&app.tenant, &app.name, &component, &status.to_string()])
            .inc();
        self.metrics
            .http_request_duration_seconds
            .with_label_values(&[&app.tenant, &app.name])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Runs a request through a component, streaming both bodies.
async fn run_component(
    session: &mut ServerSession,
    app: &App,
    host: &str,
    pattern: &RoutePattern,
    matched: &RouteMatch,
    runner: &ComponentRunner,
) -> Outcome {
    let component = runner.labels.component.clone();
    let fail = |status: u16, reusable: bool| Outcome {
        status,
        component: component.clone(),
        reusable,
    };
    let max_body = app.limits.max_request_body_bytes;
    // Checked by `serve` before any request gets here.
    let declared = declared_length(session).ok().flatten();
    if declared.is_some_and(|n| n > max_body) {
        respond_body_too_large(session, max_body).await;
        return fail(413, false);
    }
    // The instance holds the slot until it is gone, however the client fares.
    let Some(slot) = app.admission.try_acquire() else {
        let reusable = respond_error(
            session,
            503,
            "too_many_requests",
            "this tenant has too many requests in flight; retry shortly",
        )
        .await;
        return fail(503, reusable);
    };

    let has_body = declared.is_some_and(|n| n > 0)
        || session.req_header().headers.contains_key(TRANSFER_ENCODING)
        || session.is_http2();
    let (body, mut pump) = if has_body {
        let (body, pump) = ChannelBody::new(max_body);
        (body.boxed_unsync(), Some(pump))
    } else {
        (empty_body(), None)
    };
    if pump.is_some()
        && session
            .req_header()
            .headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        && session.write_continue_response().await.is_err()
    {
        return fail(400, false);
    }
    let inbound = Arc::new(InboundContext::from_headers(
        &session.req_header().headers,
        host,
        app.verifier.as_deref(),
    ));
    let request = match guest_request(session, host, pattern, matched, body) {
        Ok(mut r) => {
            if let Ok(id) = HeaderValue::from_str(&inbound.request_id) {
                r.headers_mut().insert(X_REQUEST_ID, id);
            }
            r
        }
        Err(e) => {
            let reusable = respond_error(session, 400, "bad_request", &e).await;
            return fail(400, reusable);
        }
    };
    let is_head = request.method() == Method::HEAD;

    let (link, _response_sent) = RequestLink::new();
    let response = runner.handle(link.clone(), inbound.clone(), slot, request);
    tokio::pin!(response);
    // Phase 1: feed the request body until the guest answers.
    let response = loop {
        match pump.as_mut() {
            Some(p) if !p.is_done() => {
                tokio::select! {
                    response = &mut response => break response,
                    progress = p.step(session) => if let Err(error) = progress {
                        if error == BodyError::TooLarge {
                            respond_body_too_large(session, max_body).await;
                        }
                        return fail(error.status(), false);
                    }
                }
            }
            _ => break response.await,
        }
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            let failure = GuestFailure::classify(link.cause(), &e);
            let (status, code, message) = (failure.status(), failure.code(), failure.message());
            tracing::debug!("request failed: {e:?}");
            let reusable = respond_error(session, status, code, message).await;
            return fail(
                status,
                reusable && pump.as_ref().is_none_or(|p| p.read_to_end()),
            );
        }
    };

    // Phase 2: send the response head, then its body, still feeding the request body.
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    if status.is_informational() {
        // An interim head as the final answer would leave the client waiting
        // for another response on a connection that has moved on.
        tracing::debug!(%status, "the guest answered with an interim status");
        let reusable = respond_error(
            session,
            502,
            "bad_guest_response",
            "the app answered with an interim (1xx) status as its final response",
        )
        .await;
        return fail(502, reusable && pump.is_none_or(|p| p.read_to_end()));
    }
    let mut head = ResponseHeader::from(parts);
    for name in HOP_BY_HOP {
        head.remove_header(*name);
    }
    let _ = head.insert_header(X_REQUEST_ID, inbound.request_id.as_str());
    let bodiless =
        is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let outcome = |reusable| Outcome {
        status: status.as_u16(),
        component: component.clone(),
        reusable,
    };
    let unsized_body = !bodiless && !head.headers.contains_key(CONTENT_LENGTH);
    let ready = if unsized_body {
        match ReadyBody::take(&mut body, READY_BODY_LIMIT) {
            Ok(ready) => ready,
            Err(e) => {
                tracing::debug!("response body failed before its head was sent: {e}");
                let failure = GuestFailure::Trap;
                let reusable = respond_error(session, 500, failure.code(), failure.message()).await;
                return fail(500, reusable && pump.is_none_or(|p| p.read_to_end()));
            }
        }
    } else {
        ReadyBody {
            data: Bytes::new(),
            complete: false,
        }
    };
    if ready.complete {
        let _ = head.insert_header(CONTENT_LENGTH, ready.data.len().to_string());
    } else if unsized_body && !session.is_http2() {
        let _ = head.insert_header(TRANSFER_ENCODING, "chunked");
    }
    if session.write_response_header(Box::new(head)).await.is_err() {
        return outcome(false);
    }
    if ready.complete || !ready.data.is_empty() {
        // A whole body goes out with its head in one write.
        if session
            .write_response_body(ready.data, ready.complete)
            .await
            .is_err()
        {
            return outcome(false);
        }
        if ready.complete {
            return outcome(pump.is_none_or(|p| p.read_to_end()));
        }
    }
    loop {
        let frame = if let Some(p) = pump.as_mut().filter(|p| !p.is_done()) {
            tokio::select! {
                biased;
                frame = body.frame() => frame,
                progress = p.step(session) => {
                    if progress.is_err() { return outcome(false); }
                    continue;
                }
            }
        } else {
            body.frame().await
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                    && session.write_response_body(data, false).await.is_err()
                {
                    return outcome(false);
                }
            }
            Some(Err(e)) => {
                // Too late for a status code: cut the connection so the client sees it.
                tracing::debug!("response body failed mid-stream: {e}");
                return outcome(false);
            }
        }
    }
    let finished = session
        .write_response_body(Bytes::new(), true)
        .await
        .is_ok();
    outcome(finished && pump.is_none_or(|p| p.read_to_end()))
}

/// True when an HTTP/1 request carried both Content-Length and
/// Transfer-Encoding. Pingora drops Content-Length in that case (RFC 9112),
/// so the raw header bytes are checked.
fn has_both_length_headers(session: &ServerSession) -> bool {
    let header = session.req_header();
    if !header.headers.contains_key(TRANSFER_ENCODING) {
        return false;
    }
    if header.headers.contains_key(CONTENT_LENGTH) {
        return true;
    }
    let Some(h1) = session.as_http1() else {
        return false;
    };
    h1.get_headers_raw_bytes()
        .split(|&b| b == b'\n')
        .any(|line| {
            line.split(|&b| b == b':')
                .next()
                .is_some_and(|name| name.trim_ascii().eq_ignore_ascii_case(b"content-length"))
        })
}

/// The request's `Content-Length`, if it has one. Anything but a single
/// plain decimal number is refused (`5, 5`, two headers, `+5`), so the body
/// the edge frames and the length it checks can never disagree.
fn declared_length(session: &ServerSession) -> Result<Option<u64>, &'static str> {
    let mut values = session.req_header().headers.get_all(CONTENT_LENGTH).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("a request may carry only one Content-Length");
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err("Content-Length must be a single decimal number");
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or("Content-Length must be a single decimal number")
}

/// Builds the request the guest sees from the client's (see `crate::guest::request`).
fn guest_request(
    session: &ServerSession,
    host: &str,
    pattern: &RoutePattern,
    matched: &RouteMatch,
    body: WasiBody,
) -> Result<http::Request<WasiBody>, String> {
    let header = session.req_header();
    let path_and_query = header.uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = if host.is_empty() { "localhost" } else { host };
    let client_addr = session
        .client_addr()
        .map_or_else(|| "0.0.0.0:0".to_string(), |a| a.to_string());
    let mut request = GuestRequest {
        method: header.method.clone(),
        uri: &format!("http://{authority}{path_and_query}"),
        headers: &header.headers,
        keep_host: true,
        spin: InboundRequest {
            scheme: "http",
            host: authority,
            path_and_query,
            client_addr: &client_addr,
        },
        pattern,
        matched,
    }
    .build(body)?;
    if !request.headers().contains_key(HOST) {
        let value = HeaderValue::from_str(authority).map_err(|e| e.to_string())?;
        request.headers_mut().insert(HOST, value);
    }
    Ok(request)
}

fn empty_body() -> WasiBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

async fn respond_static(session: &mut ServerSession, response: &StaticResponse) -> bool {
    let Ok(mut head) = ResponseHeader::build(response.status, Some(response.headers.len() + 1))
    else {
        return respond_error(
            session,
            500,
            "bad_static_response",
            "the app's static response has an invalid status",
        )
        .await;
    };
    for (name, value) in &response.headers {
        if head.insert_header(name.clone(), value.as_str()).is_err() {
            return respond_error(
                session,
                500,
                "bad_static_response",
                "the app's static response has an invalid header",
            )
            .await;
        }
    }
    write_whole(session, head, Bytes::from(response.body.clone())).await
}

/// 429 with `Retry-After` in whole seconds, rounded up.
async fn respond_rate_limited(session: &mut ServerSession, wait: std::time::Duration) -> bool {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let body = serde_json::json!({ "error": {
        "code": "rate_limited",
        "message": "this app or its tenant is over its requests per second; retry later",
    }})
    .to_string();
    let Ok(mut head) = ResponseHeader::build(429, Some(3)) else {
        return false;
    };
    if head
        .insert_header("content-type", "application/json")
        .is_err()
        || head
            .insert_header("retry-after", seconds.max(1).to_string())
            .is_err()
    {
        return false;
    }
    write_whole(session, head, Bytes::from(body)).await
}

async fn respond_body_too_large(session: &mut ServerSession, max_body: u64) -> bool {
    let message = format!("the request body is larger than this app's limit of {max_body} bytes");
    respond_error(session, 413, "body_too_large", &message).await
}

/// Answers with a JSON error body `{"error":{"code","message"}}`.
pub async fn respond_error(
    session: &mut ServerSession,
    status: u16,
    code: &str,
    message: &str,
) -> bool {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    respond(session, status, "application/json", Bytes::from(body)).await
}

async fn respond(
    session: &mut ServerSession,
    status: u16,
    content_type: &str,
    body: Bytes,
) -> bool {
    let Ok(mut head) = ResponseHeader::build(status, Some(2)) else {
        return false;
    };
    if head.insert_header("content-type", content_type).is_err() {
        return false;
    }
    write_whole(session, head, body).await
}

async fn write_whole(session: &mut ServerSession, mut head: ResponseHeader, body: Bytes) -> bool {
    if head
        .insert_header(CONTENT_LENGTH, body.len().to_string())
        .is_err()
    {
        return false;
    }
    session.write_response_header(Box::new(head)).await.is_ok()
        && session.write_response_body(body, true).await.is_ok()
}
