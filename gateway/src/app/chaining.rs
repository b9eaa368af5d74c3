//! Local service chaining: a request to `http(s)://<id>.spin.internal/...`
//! runs component `<id>` of the caller's own app in-process, as Spin does:
//! no socket, private routes included, bodies
//! streamed both ways. The callee sees the caller's headers (minus `Host`,
//! hop-by-hop and `spin-*`) plus Spin's headers for a synthetic `/...`
//! match from client `0.0.0.0:0`.
//!
//! Each app has one [`AppComponents`], so a component can only ever name
//! components of its own app. Chained calls take a slot of the tenant's
//! concurrency limit like any request (held by the callee's instance), and carry the hop count in the
//! request's context, never in a header a guest could set.

use crate::context::inbound::InboundContext;
use crate::guest::admission::TenantAdmission;
use crate::guest::component::ComponentRunner;
use crate::guest::lifecycle::RequestLink;
use crate::guest::request::GuestRequest;
use crate::outbound::{CappedBody, ChainTarget, SendFailure};
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use tenant_config::RoutePattern;
use tenant_config::spin_headers::InboundRequest;
use wasmtime_wasi_http::{Error, WasiBody};

/// The components of one app that chaining may reach: every component some
/// `[[trigger.http]]` names, public or private. Filled once the app's
/// components are compiled; weak, because the components point back here.
pub(crate) struct AppComponents {
    components: OnceLock<BTreeMap<String, Weak<ComponentRunner>>>,
    /// The tenant's instance count, shared with the edge.
    admission: Arc<TenantAdmission>,
}

impl AppComponents {
    pub(crate) fn new(admission: Arc<TenantAdmission>) -> Arc<Self> {
        Arc::new(AppComponents {
            components: OnceLock::new(),
            admission,
        })
    }

    /// Sets the components once; later calls are ignored.
    pub(crate) fn fill(&self, components: &BTreeMap<String, Arc<ComponentRunner>>) {
        let weak = components
            .iter()
            .map(|(id, runner)| (id.clone(), Arc::downgrade(runner)))
            .collect();
        let _ = self.components.set(weak);
    }
}

#[async_trait::async_trait]
impl ChainTarget for AppComponents {
    /// Runs component `id` for `request`.
    async fn call(
        &self,
        id: &str,
        request: http::Request<WasiBody>,
        inbound: &InboundContext,
    ) -> Result<http::Response<WasiBody>, SendFailure> {
        let Some(runner) = self
            .components
            .get()
            .and_then(|c| c.get(id))
            .and_then(Weak::upgrade)
        else {
            return Err(SendFailure {
                code: Error::DestinationNotFound,
                reason: "chain_target",
                detail: format!("the app has no component `{id}` that a route serves"),
            });
        };
        let Some(slot) = self.admission.try_acquire() else {
            return Err(SendFailure {
                code: Error::ConnectionLimitReached,
                reason: "concurrency",
                detail: format!("chaining to `{id}`: the tenant has too many requests in flight"),
            });
        };
        let request = callee_request(id, request).map_err(|detail| SendFailure {
            code: Error::HttpRequestUriInvalid,
            reason: "bad_uri",
            detail,
        })?;
        let (link, sent) = RequestLink::new();
        let response = runner
            .handle(link, Arc::new(inbound.next_hop()), slot, request)
            .await
            .map_err(|e| SendFailure {
                code: Error::InternalError(Some(format!("component `{id}` failed"))),
                reason: "chain_failed",
                detail: format!("component `{id}`: {e:?}"),
            })?;
        // The callee's instance (which holds the concurrency slot) lives
        // until its response body is consumed or dropped.
        Ok(response.map(|body| {
            CappedBody::new(body, None, |l| Error::HttpResponseBodySize(Some(l)))
                .on_drop(move |_| drop(sent))
                .boxed_unsync()
        }))
    }
}

/// The request the callee sees.
fn callee_request(
    id: &str,
    request: http::Request<WasiBody>,
) -> Result<http::Request<WasiBody>, String> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let pattern = RoutePattern::parse("/...");
    let path = parts.uri.path();
    let matched = pattern
        .matches(path)
        .ok_or_else(|| format!("path {path:?} does not match /..."))?;
    GuestRequest {
        method: parts.method.clone(),
        uri: &format!("http://{id}.spin.internal{path_and_query}"),
        headers: &parts.headers,
        keep_host: false,
        spin: InboundRequest {
            scheme: "http",
            host: "localhost",
            path_and_query,
            client_addr: "0.0.0.0:0",
        },
        pattern: &pattern,
        matched: &matched,
    }
    .build(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callee_sees_spins_chaining_headers_and_not_the_callers_host() {
        let request = http::Request::builder()
            .method("POST")
            .uri("http://book-api.spin.internal/api/books?day=mon")
            .header("host", "book-api.spin.internal")
            .header("x-custom", "kept")
            .header("spin-client-addr", "6.6.6.6:1")
            .body(
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        let seen = callee_request("book-api", request).unwrap();
        let h = seen.headers();
        let get = |n: &str| {
            h.get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(seen.method(), "POST");
        assert_eq!(
            seen.uri(),
            "http://book-api.spin.internal/api/books?day=mon"
        );
        assert!(get("host").is_empty());
        assert_eq!(get("x-custom"), ["kept"]);
        assert_eq!(get("spin-client-addr"), ["0.0.0.0:0"]);
        assert_eq!(get("spin-path-info"), ["/api/books"]);
        assert_eq!(get("spin-matched-route"), ["/..."]);
        assert_eq!(get("spin-raw-component-route"), ["/..."]);
        assert_eq!(get("spin-component-route"), [""]);
        assert_eq!(get("spin-base-path"), ["/"]);
        assert_eq!(get("spin-full-url"), ["http://localhost/api/books?day=mon"]);
    }
}
