//! The headers Spin adds to every inbound request, computed exactly as Spin
//! computes them (Spin's `spin-*` request headers). Unlike Spin, client-sent
//! `spin-*` headers are removed first, so a client cannot forge them.

use crate::routes::{RouteMatch, RoutePattern};

/// Hop-by-hop headers: they belong to one connection, so they are never
/// forwarded between a sender and a guest, nor set by an app.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// True for headers only the gateway may set (`spin-*`, any case).
pub fn is_reserved_header(name: &str) -> bool {
    name.len() >= 5 && name[..5].eq_ignore_ascii_case("spin-")
}

/// What the gateway knows about an inbound request, for Spin's headers.
pub struct InboundRequest<'a> {
    /// `http`, or `https` when the gateway terminated TLS.
    pub scheme: &'a str,
    /// The `Host` header as sent, or `localhost` if there was none.
    pub host: &'a str,
    /// Path and query as sent.
    pub path_and_query: &'a str,
    /// Client `ip:port`, `0.0.0.0:0` when unknown or chained.
    pub client_addr: &'a str,
}

/// Spin's headers for a request that matched `route` with `matched`.
pub fn spin_headers(
    request: &InboundRequest<'_>,
    route: &RoutePattern,
    matched: &RouteMatch,
) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            "spin-full-url".to_string(),
            format!(
                "{}://{}{}",
                request.scheme, request.host, request.path_and_query
            ),
        ),
        ("spin-path-info".into(), matched.path_info.clone()),
        ("spin-matched-route".into(), route.normalized()),
        ("spin-raw-component-route".into(), route.raw().to_string()),
        ("spin-component-route".into(), route.component_route()),
        ("spin-base-path".into(), "/".into()),
        ("spin-client-addr".into(), request.client_addr.to_string()),
    ];
    for (name, value) in &matched.captures {
        headers.push((
            // As Spin names them: `:path_segment` is `spin-path-match-path-segment`.
            format!(
                "spin-path-match-{}",
                name.to_ascii_lowercase().replace('_', "-")
            ),
            value.clone(),
        ));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_for(route: &str, path_and_query: &str) -> Vec<(String, String)> {
        let pattern = RoutePattern::parse(route);
        let path = path_and_query.split('?').next().unwrap_or("");
        let matched = pattern.matches(path).expect("route matches");
        let request = InboundRequest {
            scheme: "https",
            host: "fermyon.dev",
            path_and_query,
            client_addr: "127.0.0.1:8777",
        };
        spin_headers(&request, &pattern, &matched)
    }

    fn get<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Spin's `test_default_headers`.
    #[test]
    fn default_headers() {
        let h = headers_for("/foo/...", "/foo/bar?key1=value1&key2=value2");
        assert_eq!(
            get(&h, "spin-full-url"),
            Some("https://fermyon.dev/foo/bar?key1=value1&key2=value2")
        );
        assert_eq!(get(&h, "spin-path-info"), Some("/bar"));
        assert_eq!(get(&h, "spin-matched-route"), Some("/foo/..."));
        assert_eq!(get(&h, "spin-base-path"), Some("/"));
        assert_eq!(get(&h, "spin-raw-component-route"), Some("/foo/..."));
        assert_eq!(get(&h, "spin-component-route"), Some("/foo"));
        assert_eq!(get(&h, "spin-client-addr"), Some("127.0.0.1:8777"));
    }

    /// Spin's `test_default_headers_with_named_wildcards`.
    #[test]
    fn named_wildcards() {
        let h = headers_for("/foo/:userid/...", "/foo/42/bar");
        assert_eq!(get(&h, "spin-path-match-userid"), Some("42"));
        assert_eq!(get(&h, "spin-matched-route"), Some("/foo/:userid/..."));
        assert_eq!(get(&h, "spin-component-route"), Some("/foo/:userid"));
        assert_eq!(get(&h, "spin-path-info"), Some("/bar"));
        // Spin writes a parameter's `_` as `-` in the header name.
        let h = headers_for("/:path_segment", "/seg");
        assert_eq!(get(&h, "spin-path-match-path-segment"), Some("seg"));
    }

    #[test]
    fn exact_route_has_empty_path_info() {
        let h = headers_for("/exact", "/exact");
        assert_eq!(get(&h, "spin-path-info"), Some(""));
        assert_eq!(get(&h, "spin-component-route"), Some("/exact"));
    }

    #[test]
    fn reserved_header_names() {
        assert!(is_reserved_header("spin-client-addr"));
        assert!(is_reserved_header("SPIN-Path-Info"));
        assert!(!is_reserved_header("spinach"));
        assert!(!is_reserved_header("x-spin-a"));
    }
}
