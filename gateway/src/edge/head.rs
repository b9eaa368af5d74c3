//! What the edge reads off a request's head: the Host it is for, whether its
//! body length is unambiguous, and the request a guest sees, built from it.

use crate::guest::request::GuestRequest;
use http::HeaderValue;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use pingora::protocols::http::ServerSession;
use tenant_config::spin_headers::InboundRequest;
use tenant_config::{RouteMatch, RoutePattern};
use wasmtime_wasi_http::WasiBody;

/// The Host the request is for: the `Host` header, else the URI's
/// authority (HTTP/2), else empty.
pub(crate) fn host_of(session: &ServerSession) -> String {
    let header = session.req_header();
    header
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| header.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_string()
}

/// True when an HTTP/1 request carried both Content-Length and
/// Transfer-Encoding. Pingora drops Content-Length in that case (RFC 9112),
/// so the raw header bytes are checked.
pub(crate) fn has_both_length_headers(session: &ServerSession) -> bool {
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
pub(crate) fn declared_length(session: &ServerSession) -> Result<Option<u64>, &'static str> {
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
pub(crate) fn guest_request(
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
