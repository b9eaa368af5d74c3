//! The per-instance wasi:http hook and the send path every guest request
//! takes. `allowed_outbound_hosts` decides first, for every kind of request;
//! then the request goes one of three ways:
//!
//! - `<id>.spin.internal`: chained in-process to a component of the same app;
//! - relative, `self` or `self.alt`: a self-route through the peers' load
//!   balancer, re-entering public routing under the app's hostname;
//! - anything else: external, through the Okra policy chain, header
//!   injection and the tenant's pool.
//!
//! All three carry `x-request-id` (and `traceparent` with tracing on); the
//! first two count hops and stop at `max_hops` with `loop-detected`. Body
//! limits apply both ways while streaming; metrics, logs and (with `audit`)
//! an audit record follow every request.

use super::audit::{AuditRecord, redact_query};
use super::body::{BodyOutcome, CappedBody, report_outcome};
use super::pool::{SendFailure, Timeouts};
use super::shared::{Outbound, TenantPools};
use super::sockets::SocketGate;
use crate::context::inbound::{HOPS_HEADER, InboundContext};
use crate::metrics::ComponentLabels;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tenant_config::allowed_hosts::SERVICE_CHAINING_SUFFIX;
use tenant_config::policy::{PolicyChain, RequestFacts, Settings};
use tenant_config::{AllowedHosts, OutboundUrl};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Where `<id>.spin.internal` requests go: the caller's own app, which runs
/// component `id` in-process. Implemented above this layer (the app knows
/// its components), so outbound never depends on how guests are run.
#[async_trait::async_trait]
pub(crate) trait ChainTarget: Send + Sync {
    /// Runs component `id` of the app for `request`.
    async fn call(
        &self,
        id: &str,
        request: http::Request<WasiBody>,
        inbound: &InboundContext,
    ) -> Result<http::Response<WasiBody>, SendFailure>;
}

/// What one component may reach, under which policy, through which pool.
pub(crate) struct ComponentOutbound {
    pub(crate) labels: ComponentLabels,
    pub(crate) allowed: AllowedHosts,
    pub(crate) policy: PolicyChain,
    /// What the policy scopes settle (computed at load).
    pub(crate) settings: Settings,
    /// `settings.inject_headers`, checked and converted at load.
    pub(crate) inject_headers: Vec<(HeaderName, HeaderValue)>,
    /// The tenant's pools.
    pub(crate) pools: TenantPools,
    /// The components of this component's app, for chaining.
    pub(crate) app: Arc<dyn ChainTarget>,
    pub(crate) outbound: Arc<Outbound>,
}

impl ComponentOutbound {
    /// The rules for this component's raw socket connects.
    pub(crate) fn socket_gate(&self) -> SocketGate {
        SocketGate::new(self.allowed.clone(), self.outbound.blocked.clone())
    }
}

/// The headers a policy injects, as they will be sent: refused at load when
/// a name or a value (after its variables are filled in) is not valid HTTP,
/// instead of being dropped on every request.
pub(crate) fn inject_headers(
    settings: &Settings,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    settings
        .inject_headers
        .iter()
        .map(|(name, value)| {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("http.fetch.injectHeaders: {name:?} is not a header name"))?;
            let v = HeaderValue::from_str(value).map_err(|_| {
                format!(
                    "http.fetch.injectHeaders {name:?}: its value (with variables filled in) is not a valid header value"
                )
            })?;
            Ok((n, v))
        })
        .collect()
}

/// Where an allowed request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    External,
    /// A component of the same app, by id.
    Chained(String),
    /// The app itself, through the peers.
    SelfRoute,
}

impl Destination {
    /// The `kind` label of `okra_outbound_requests_total`.
    fn kind(&self) -> &'static str {
        match self {
            Destination::External => "external",
            Destination::Chained(_) => "chained",
            Destination::SelfRoute => "self",
        }
    }
}

/// The `WasiHttpHooks` of one instance.
pub(crate) struct OutboundHooks {
    pub(crate) component: Arc<ComponentOutbound>,
    /// The request this instance serves; set when it starts.
    pub(crate) inbound: Arc<InboundContext>,
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let component = self.component.clone();
        let inbound = self.inbound.clone();
        Box::new(async move {
            let (response, sent) = component.send(request, options, &inbound).await?;
            // A wasi:http 0.3 guest learns from this how its body went out.
            Ok((response, Box::new(sent) as IoFuture))
        })
    }
}

/// A refusal and the kind of request it stopped.
type Denied = Box<(Refusal, Destination)>;

/// The rule name of refusals by the allow-list.
const ALLOW_LIST: &str = "allowed_outbound_hosts";

/// A refusal before anything was sent: the failure and the rule that decided.
struct Refusal {
    failure: SendFailure,
    rule: String,
}

fn refuse(code: Error, reason: &'static str, rule: &str, detail: String) -> Refusal {
    Refusal {
        failure: SendFailure {
            code,
            reason,
            detail,
        },
        rule: rule.to_string(),
    }
}

impl ComponentOutbound {
    async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        inbound: &InboundContext,
    ) -> Result<(http::Response<WasiBody>, BodyOutcome), Error> {
        let started = Instant::now();
        let l = &self.labels;
        let mut audit = AuditRecord {
            request_id: inbound.request_id.clone(),
            tenant: l.tenant.clone(),
            app: l.app.clone(),
            component: l.component.clone(),
            kind: "external",
            method: request.method().to_string(),
            url: redact_query(&request.uri().to_string()),
            decision: "allow",
            rule: "policy".into(),
            status: None,
            bytes: 0,
            error: None,
            duration_ms: 0.0,
        };
        let (request, destination) = match self.authorise(request, inbound) {
            Ok(allowed) => allowed,
            Err(denied) => {
                let (refusal, destination) = *denied;
                audit.decision = "deny";
                audit.rule = refusal.rule;
                audit.error = Some(refusal.failure.reason);
                return Err(self.fail(refusal.failure, destination.kind(), started, audit));
            }
        };
        let kind = destination.kind();
        audit.kind = kind;
        audit.url = redact_query(&request.uri().to_string());
        let (parts, body) = request.into_parts();
        let (body, body_sent) = report_outcome(body);
        let request = http::Request::from_parts(parts, body.boxed_unsync());
        let timeouts = self.outbound.timeouts(options.as_ref(), &self.settings);
        let sent = match &destination {
            Destination::External => self.pools.external.send(request, timeouts).await,
            Destination::Chained(id) => self.app.call(id, request, inbound).await,
            Destination::SelfRoute => self.send_to_peer(request, inbound, timeouts).await,
        };
        match sent {
            Ok(response) => {
                self.count(kind, "ok", started);
                let limit = match destination {
                    Destination::External => self.settings.max_body_bytes,
                    _ => None,
                };
                if limit.is_none() && !self.settings.audit {
                    return Ok((response, body_sent));
                }
                audit.status = Some(response.status().as_u16());
                let audit_log = self.settings.audit.then(|| self.outbound.clone());
                let response = response.map(|body| {
                    CappedBody::new(body, limit, |l| Error::HttpResponseBodySize(Some(l)))
                        .on_drop(move |bytes| {
                            if let Some(outbound) = audit_log {
                                audit.bytes = bytes;
                                audit.duration_ms = started.elapsed().as_secs_f64() * 1e3;
                                outbound.audit.write(&audit);
                            }
                        })
                        .boxed_unsync()
                });
                Ok((response, body_sent))
            }
            Err(mut failure) => {
                // The transport failed because the body did (past
                // maxBodySizeKb): tell the guest that, not "protocol error".
                if let Some(Err(body_failure)) = futures::FutureExt::now_or_never(body_sent) {
                    failure.code = body_failure;
                    failure.reason = "body_size";
                }
                audit.error = Some(failure.reason);
                if matches!(failure.code, Error::DestinationIpProhibited) {
                    // The operator's block list decided, after DNS.
                    audit.decision = "deny";
                    audit.rule = "block_networks".into();
                }
                Err(self.fail(failure, kind, started, audit))
            }
        }
    }

    /// Sends a self-route to the next healthy peer, under the Host the app
    /// was reached by, one hop further.
    async fn send_to_peer(
        &self,
        mut request: http::Request<WasiBody>,
        inbound: &InboundContext,
        timeouts: Timeouts,
    ) -> Result<http::Response<WasiBody>, SendFailure> {
        let failure = |code, reason, detail: String| SendFailure {
            code,
            reason,
            detail,
        };
        let peer = self.outbound.peers.pick().ok_or_else(|| {
            failure(
                Error::ConnectionRefused,
                "no_peer",
                "every peer failed its health check".into(),
            )
        })?;
        let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("http://{peer}{path_and_query}");
        *request.uri_mut() = uri
            .parse()
            .map_err(|_| failure(Error::HttpRequestUriInvalid, "bad_uri", uri))?;
        let host = HeaderValue::from_str(&inbound.host).map_err(|_| {
            failure(
                Error::HttpRequestUriInvalid,
                "bad_uri",
                format!("the app's host {:?} is not a header value", inbound.host),
            )
        })?;
        let headers = request.headers_mut();
        headers.insert(http::header::HOST, host);
        headers.insert(
            HOPS_HEADER,
            HeaderValue::from(inbound.hops.saturating_add(1)),
        );
        self.pools.peers.send(request, timeouts).await
    }

    /// Runs every check; returns the request as it will be sent, and where.
    /// External requests get their URI normalised to the host the checks
    /// judged (so `0x7f.1` is dialled as the `127.0.0.1` it was judged as),
    /// the guest's `Host` dropped, policy and correlation headers added and
    /// the body capped. A refusal says which kind of request it stopped.
    fn authorise(
        &self,
        request: http::Request<WasiBody>,
        inbound: &InboundContext,
    ) -> Result<(http::Request<WasiBody>, Destination), Denied> {
        let uri = request.uri().clone();
        let host = uri.host().unwrap_or("");
        if host.is_empty()
            || host.eq_ignore_ascii_case("self")
            || host.eq_ignore_ascii_case("self.alt")
        {
            if !self.allowed.allows_relative() {
                return Err(self.not_allowed(&uri, "\"http://self\"", Destination::SelfRoute));
            }
            return self.internal(request, inbound, Destination::SelfRoute);
        }
        let external = |refusal| Box::new((refusal, Destination::External));
        let bad_uri =
            |detail: String| refuse(Error::HttpRequestUriInvalid, "bad_uri", "uri", detail);
        let url = OutboundUrl::parse(&uri.to_string(), "https")
            .map_err(|_| external(bad_uri(format!("{uri} is not a URL Okra can check"))))?;
        let host = url.host.to_string();
        let destination = match host.strip_suffix(SERVICE_CHAINING_SUFFIX) {
            Some(id) => Destination::Chained(id.to_string()),
            None => Destination::External,
        };
        if !self.allowed.allows(&url) {
            return Err(self.not_allowed(&url, &format!("\"{url}\""), destination));
        }
        if let Destination::Chained(id) = &destination {
            if id.is_empty() || id.contains('.') {
                // Spin splits at the first dot: `a.b.spin.internal` is no
                // component, and spin.internal names are never looked up in DNS.
                let detail = format!("{url}: `{id}` is not a component id");
                let refusal = refuse(
                    Error::DestinationNotFound,
                    "chain_target",
                    "service_chaining",
                    detail,
                );
                return Err(Box::new((refusal, destination)));
            }
            return self.internal(request, inbound, destination);
        }
        self.external(request, &uri, &url, inbound)
            .map(|r| (r, Destination::External))
            .map_err(external)
    }

    /// A refusal by the allow-list, saying which entry would allow `target`.
    fn not_allowed(
        &self,
        target: &dyn std::fmt::Display,
        entry: &str,
        destination: Destination,
    ) -> Denied {
        let detail = format!(
            "{target} is not allowed by allowed_outbound_hosts of component `{}`; add {entry} to allow it",
            self.labels.component
        );
        let refusal = refuse(
            Error::HttpRequestDenied,
            "allowed_outbound_hosts",
            ALLOW_LIST,
            detail,
        );
        Box::new((refusal, destination))
    }

    /// Readies an allowed chained or self-routed request: hop limit, then
    /// correlation headers. Okra's `http.fetch` policy governs requests
    /// that leave the app, so it does not apply here.
    fn internal(
        &self,
        mut request: http::Request<WasiBody>,
        inbound: &InboundContext,
        destination: Destination,
    ) -> Result<(http::Request<WasiBody>, Destination), Denied> {
        let max = self.outbound.max_hops();
        if inbound.hops >= max {
            let detail = format!(
                "{}: the request already took {} chained or self-route hops (max_hops = {max})",
                request.uri(),
                inbound.hops
            );
            let refusal = refuse(Error::LoopDetected, "loop_detected", "max_hops", detail);
            return Err(Box::new((refusal, destination)));
        }
        self.correlate(request.headers_mut(), inbound);
        Ok((request, destination))
    }

    /// Checks and readies an external request.
    fn external(
        &self,
        mut request: http::Request<WasiBody>,
        uri: &http::Uri,
        url: &OutboundUrl,
        inbound: &InboundContext,
    ) -> Result<http::Request<WasiBody>, Refusal> {
        let bad_uri =
            |detail: String| refuse(Error::HttpRequestUriInvalid, "bad_uri", "uri", detail);
        let host = url.host.to_string();
        let scheme = url.scheme.as_str();
        if scheme != "http" && scheme != "https" {
            return Err(bad_uri(format!("scheme {scheme:?} is not http or https")));
        }
        let port = url.port.unwrap_or(if scheme == "https" { 443 } else { 80 });
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let normalised = format!("{scheme}://{host}:{port}{path_and_query}");
        *request.uri_mut() = normalised
            .parse()
            .map_err(|_| bad_uri(format!("{normalised} is not a valid URI")))?;
        request.headers_mut().remove(http::header::HOST);

        if !self.policy.is_empty() {
            let headers: Vec<(String, String)> = request
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let facts = RequestFacts {
                method: request.method().as_str(),
                url: &normalised,
                scheme,
                host: &host,
                port,
                path: uri.path(),
                headers: &headers,
                claims: &inbound.claims,
                tenant: &self.labels.tenant,
                app: &self.labels.app,
                component: &self.labels.component,
            };
            if let Err(denial) = self.policy.check(url, &facts) {
                return Err(refuse(
                    Error::HttpRequestDenied,
                    "policy",
                    &format!("{}: {}", denial.scope, denial.rule),
                    format!("{}: {} ({})", denial.scope, denial.rule, denial.reason),
                ));
            }
        }

        let headers = request.headers_mut();
        for (name, value) in &self.inject_headers {
            headers.insert(name.clone(), value.clone());
        }
        self.correlate(headers, inbound);

        if let Some(limit) = self.settings.max_body_bytes {
            let declared = request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(refuse(
                    Error::HttpRequestBodySize(declared),
                    "body_size",
                    "http.fetch.maxBodySizeKb",
                    format!("request body of {declared:?} bytes exceeds {limit}"),
                ));
            }
            request = request.map(|body| {
                CappedBody::new(body, Some(limit), |l| Error::HttpRequestBodySize(Some(l)))
                    .boxed_unsync()
            });
        }
        Ok(request)
    }

    /// Adds `x-request-id` and, with tracing on, a child `traceparent`.
    fn correlate(&self, headers: &mut http::HeaderMap, inbound: &InboundContext) {
        if let Ok(id) = HeaderValue::from_str(&inbound.request_id) {
            headers.insert("x-request-id", id);
        }
        if self.settings.tracing
            && let Ok(tp) = HeaderValue::from_str(&inbound.trace.child_traceparent())
        {
            headers.insert("traceparent", tp);
        }
    }

    /// Counts, logs and (with `audit`) records a request that got no response.
    fn fail(
        &self,
        failure: SendFailure,
        kind: &'static str,
        started: Instant,
        mut audit: AuditRecord,
    ) -> Error {
        let outcome = if matches!(failure.code, Error::HttpRequestDenied) {
            "denied"
        } else {
            "error"
        };
        self.count(kind, outcome, started);
        audit.kind = kind;
        let l = &self.labels;
        self.outbound
            .metrics
            .outbound_failures_total
            .with_label_values(&[&l.tenant, failure.reason])
            .inc();
        tracing::warn!(
            tenant = %l.tenant,
            app = %l.app,
            component = %l.component,
            request_id = %audit.request_id,
            kind,
            reason = failure.reason,
            code = ?failure.code,
            "outbound request refused: {}",
            failure.detail
        );
        if self.settings.audit {
            audit.duration_ms = started.elapsed().as_secs_f64() * 1e3;
            self.outbound.audit.write(&audit);
        }
        failure.code
    }

    fn count(&self, kind: &str, outcome: &str, started: Instant) {
        let metrics = &self.outbound.metrics;
        let l = &self.labels;
        metrics
            .outbound_requests_total
            .with_label_values(&[&l.tenant, &l.app, kind, outcome])
            .inc();
        metrics
            .outbound_duration_seconds
            .with_label_values(&[&l.tenant, kind])
            .observe(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_headers_that_http_cannot_carry_are_refused_at_load() {
        let settings = |name: &str, value: &str| Settings {
            inject_headers: vec![(name.to_string(), value.to_string())],
            ..Settings::default()
        };
        let ok = inject_headers(&settings("x-team", "shop")).unwrap();
        assert_eq!(ok[0].0, "x-team");
        for (name, value, why) in [
            ("x-team", "a\r\nx-forged: 1", "not a valid header value"),
            ("x-team", "nul\0", "not a valid header value"),
            ("bad name", "v", "not a header name"),
        ] {
            let err = inject_headers(&settings(name, value)).unwrap_err();
            assert!(err.contains(why) && err.contains("injectHeaders"), "{err}");
        }
    }
}
