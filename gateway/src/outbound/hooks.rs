//! The per-instance wasi:http hook and the send path every guest request
//! takes: `allowed_outbound_hosts`, then the Okra policy chain, then header
//! injection (policy headers, `x-request-id`, `traceparent`), then the
//! tenant's pool. Body limits apply both ways while streaming; metrics,
//! logs and (with `audit`) an audit record follow every request.

use super::Outbound;
use super::audit::{AuditRecord, redact_query};
use super::body::CappedBody;
use super::pool::{SendFailure, TenantPool};
use crate::component::ComponentLabels;
use crate::inbound::InboundContext;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tenant_config::policy::{PolicyChain, RequestFacts, Settings};
use tenant_config::{AllowedHosts, OutboundUrl};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// What one component may reach, under which policy, through which pool.
pub struct ComponentOutbound {
    pub labels: ComponentLabels,
    pub allowed: AllowedHosts,
    pub policy: PolicyChain,
    /// What the policy scopes settle (computed at load).
    pub settings: Settings,
    /// The tenant's pool.
    pub pool: Arc<TenantPool>,
    pub outbound: Arc<Outbound>,
}

/// The `WasiHttpHooks` of one instance.
pub struct OutboundHooks {
    pub component: Arc<ComponentOutbound>,
    /// The request this instance serves; set when it starts.
    pub inbound: Arc<InboundContext>,
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
            let response = component.send(request, options, &inbound).await?;
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

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
    ) -> Result<http::Response<WasiBody>, Error> {
        let started = Instant::now();
        let l = &self.labels;
        let mut audit = AuditRecord {
            request_id: inbound.request_id.clone(),
            tenant: l.tenant.clone(),
            app: l.app.clone(),
            component: l.component.clone(),
            method: request.method().to_string(),
            url: redact_query(&request.uri().to_string()),
            decision: "allow",
            rule: "policy".into(),
            status: None,
            bytes: 0,
            error: None,
            duration_ms: 0.0,
        };
        let request = match self.authorise(request, inbound) {
            Ok(request) => request,
            Err(refusal) => {
                audit.decision = "deny";
                audit.rule = refusal.rule;
                audit.error = Some(refusal.failure.reason);
                return Err(self.fail(refusal.failure, started, audit));
            }
        };
        audit.url = redact_query(&request.uri().to_string());
        let timeouts = self.outbound.timeouts(options.as_ref(), &self.settings);
        match self.pool.send(request, timeouts).await {
            Ok(response) => {
                self.count("ok", started);
                let limit = self.settings.max_body_bytes;
                if limit.is_none() && !self.settings.audit {
                    return Ok(response);
                }
                audit.status = Some(response.status().as_u16());
                let audit_log = self.settings.audit.then(|| self.outbound.clone());
                Ok(response.map(|body| {
                    CappedBody::new(body, limit, |l| Error::HttpResponseBodySize(Some(l)))
                        .on_drop(move |bytes| {
                            if let Some(outbound) = audit_log {
                                audit.bytes = bytes;
                                audit.duration_ms = started.elapsed().as_secs_f64() * 1e3;
                                outbound.audit.write(&audit);
                            }
                        })
                        .boxed_unsync()
                }))
            }
            Err(failure) => {
                audit.error = Some(failure.reason);
                if matches!(failure.code, Error::DestinationIpProhibited) {
                    // The operator's block list decided, after DNS.
                    audit.decision = "deny";
                    audit.rule = "block_networks".into();
                }
                Err(self.fail(failure, started, audit))
            }
        }
    }

    /// Runs every check; returns the request as it will be sent: URI
    /// normalised to the host the checks judged (so `0x7f.1` is dialled as
    /// the `127.0.0.1` it was judged as), guest `Host` dropped, policy and
    /// correlation headers added, body capped.
    fn authorise(
        &self,
        mut request: http::Request<WasiBody>,
        inbound: &InboundContext,
    ) -> Result<http::Request<WasiBody>, Refusal> {
        const ALLOW_LIST: &str = "allowed_outbound_hosts";
        let uri = request.uri().clone();
        let host = uri.host().unwrap_or("");
        if host.is_empty() || host.eq_ignore_ascii_case("self.alt") {
            let code = if self.allowed.allows_relative() {
                Error::HttpRequestUriInvalid
            } else {
                Error::HttpRequestDenied
            };
            return Err(refuse(
                code,
                "self_request",
                ALLOW_LIST,
                format!("{uri}: requests to the app itself are not supported yet"),
            ));
        }
        let bad_uri =
            |detail: String| refuse(Error::HttpRequestUriInvalid, "bad_uri", "uri", detail);
        let url = OutboundUrl::parse(&uri.to_string(), "https")
            .map_err(|_| bad_uri(format!("{uri} is not a URL Okra can check")))?;
        if !self.allowed.allows(&url) {
            return Err(refuse(
                Error::HttpRequestDenied,
                "allowed_outbound_hosts",
                ALLOW_LIST,
                format!(
                    "{url} is not in allowed_outbound_hosts of component `{}`; add \"{url}\" to allow it",
                    self.labels.component
                ),
            ));
        }
        let host = url.host.to_string();
        if host.ends_with(tenant_config::allowed_hosts::SERVICE_CHAINING_SUFFIX) {
            return Err(refuse(
                Error::HttpRequestDenied,
                "service_chaining",
                ALLOW_LIST,
                format!("{url}: service chaining is not supported yet"),
            ));
        }
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
            if let Err(denial) = self.policy.check(&url, &facts) {
                return Err(refuse(
                    Error::HttpRequestDenied,
                    "policy",
                    &format!("{}: {}", denial.scope, denial.rule),
                    format!("{}: {} ({})", denial.scope, denial.rule, denial.reason),
                ));
            }
        }

        let headers = request.headers_mut();
        for (name, value) in &self.settings.inject_headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        if let Ok(id) = HeaderValue::from_str(&inbound.request_id) {
            headers.insert("x-request-id", id);
        }
        if self.settings.tracing
            && let Ok(tp) = HeaderValue::from_str(&inbound.trace.child_traceparent())
        {
            headers.insert("traceparent", tp);
        }

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

    /// Counts, logs and (with `audit`) records a request that got no response.
    fn fail(&self, failure: SendFailure, started: Instant, mut audit: AuditRecord) -> Error {
        let outcome = if matches!(failure.code, Error::HttpRequestDenied) {
            "denied"
        } else {
            "error"
        };
        self.count(outcome, started);
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

    fn count(&self, outcome: &str, started: Instant) {
        let metrics = &self.outbound.metrics;
        let l = &self.labels;
        metrics
            .outbound_requests_total
            .with_label_values(&[&l.tenant, &l.app, "external", outcome])
            .inc();
        metrics
            .outbound_duration_seconds
            .with_label_values(&[&l.tenant, "external"])
            .observe(started.elapsed().as_secs_f64());
    }
}
