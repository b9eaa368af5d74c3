//! The request a guest sees, built the same way for a client's request at
//! the edge and for a chained request: an absolute URI, the sender's headers
//! minus hop-by-hop, `spin-*` and the gateway's hop count (and `Host` for
//! chained requests), then Spin's own headers for the route that matched.

use crate::context::inbound::HOPS_HEADER;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tenant_config::spin_headers::{InboundRequest, is_reserved_header, spin_headers};
use tenant_config::{RouteMatch, RoutePattern};
use wasmtime_wasi_http::WasiBody;

pub(crate) use tenant_config::spin_headers::HOP_BY_HOP;

/// What the request is and which route it matched.
pub(crate) struct GuestRequest<'a> {
    pub(crate) method: Method,
    /// Absolute URI.
    pub(crate) uri: &'a str,
    /// The sender's headers.
    pub(crate) headers: &'a HeaderMap,
    /// False to leave out the sender's `Host` (chaining).
    pub(crate) keep_host: bool,
    /// What Spin's headers describe.
    pub(crate) spin: InboundRequest<'a>,
    pub(crate) pattern: &'a RoutePattern,
    pub(crate) matched: &'a RouteMatch,
}

impl GuestRequest<'_> {
    /// The request with `body`; fails on a URI or header value http rejects.
    pub(crate) fn build(self, body: WasiBody) -> Result<http::Request<WasiBody>, String> {
        let uri = self.uri;
        let mut builder = http::Request::builder().method(self.method).uri(uri);
        let headers = builder
            .headers_mut()
            .ok_or_else(|| format!("invalid request target {uri:?}"))?;
        for (name, value) in self.headers {
            let n = name.as_str();
            let dropped = HOP_BY_HOP.contains(&n)
                || is_reserved_header(n)
                || n == HOPS_HEADER
                || (!self.keep_host && name == http::header::HOST);
            if !dropped {
                headers.append(name.clone(), value.clone());
            }
        }
        for (name, value) in spin_headers(&self.spin, self.pattern, self.matched) {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
            headers.append(name, value);
        }
        builder.body(body).map_err(|e| e.to_string())
    }
}
