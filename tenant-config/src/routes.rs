//! Spin's HTTP route syntax and matching, reproduced exactly.
//!
//! Spin normalises a route by adding a leading `/` and stripping one trailing
//! `/`; a `/...` (or `/*`) suffix is a trailing wildcard and `:name` captures
//! one segment. Matching looks at the raw, percent-encoded, case-sensitive
//! path, ignores empty segments, and among the routes that match picks the
//! most specific one, comparing segment by segment: exact beats `:param`,
//! which beats the wildcard; a route that ends beats one that continues with
//! a wildcard. Identical routes: the last one declared wins.
//! (Spin's `crates/routes` on routefinder 0.5.4.)

use std::cmp::Ordering;

/// The prefix Spin reserves for its own endpoints; no app route is reachable under it.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// A route as written in `spin.toml`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePattern {
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Exact(String),
    Param(String),
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Exact(_) => 2,
            Segment::Param(_) => 1,
        }
    }
}

impl RoutePattern {
    /// Parses a route the way Spin does. Never fails: Spin accepts any string.
    pub fn parse(raw: &str) -> Self {
        let mut body = raw.trim();
        let mut wildcard = false;
        if body == "..." || body == "/..." || body == "*" || body == "/*" {
            body = "";
            wildcard = true;
        } else if let Some(prefix) = body
            .strip_suffix("/...")
            .or_else(|| body.strip_suffix("/*"))
        {
            body = prefix;
            wildcard = true;
        }
        let segments = body
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| match s.strip_prefix(':') {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Exact(s.to_string()),
            })
            .collect();
        RoutePattern {
            raw: raw.to_string(),
            segments,
            wildcard,
        }
    }

    /// The route exactly as the manifest wrote it (`spin-raw-component-route`).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The normalised route in Spin notation, e.g. `/foo/:id/...` (`spin-matched-route`).
    pub fn normalized(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Exact(s) => out.push_str(s),
                Segment::Param(p) => {
                    out.push(':');
                    out.push_str(p);
                }
            }
        }
        if self.wildcard {
            out.push_str("/...");
        } else if matches!(self.segments.last(), Some(Segment::Exact(s)) if s == "*" || s == "...")
        {
            // A last segment that is literally `*` or `...` (as in `*/`) is
            // not a wildcard; the slash keeps it from reading as one again.
            out.push('/');
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// The raw route minus a trailing `/...` (`spin-component-route`).
    pub fn component_route(&self) -> String {
        let raw = self.raw.as_str();
        raw.strip_suffix("/...")
            .or_else(|| raw.strip_suffix("..."))
            .unwrap_or(raw)
            .to_string()
    }

    /// True when the route lies under `/.well-known/spin/` and so can never be reached.
    pub fn is_reserved(&self) -> bool {
        matches!(self.segments.as_slice(),
            [Segment::Exact(a), Segment::Exact(b), _, ..] if a == ".well-known" && b == "spin")
            || (self.wildcard
                && matches!(self.segments.as_slice(),
                    [Segment::Exact(a), Segment::Exact(b)] if a == ".well-known" && b == "spin"))
    }

    /// Matches a request path; `None` when the route does not apply.
    pub fn matches(&self, path: &str) -> Option<RouteMatch> {
        let mut captures = Vec::new();
        let mut rest = path;
        for segment in &self.segments {
            let (piece, after) = next_segment(rest)?;
            match segment {
                Segment::Exact(s) if s == piece => {}
                Segment::Exact(_) => return None,
                Segment::Param(name) => captures.push((name.clone(), piece.to_string())),
            }
            rest = after;
        }
        if self.wildcard {
            return Some(RouteMatch {
                captures,
                path_info: rest.to_string(),
            });
        }
        if rest.split('/').all(str::is_empty) {
            Some(RouteMatch {
                captures,
                path_info: String::new(),
            })
        } else {
            None
        }
    }

    /// Spin's precedence: greater is more specific.
    fn specificity(&self, other: &Self) -> Ordering {
        for (a, b) in self.segments.iter().zip(&other.segments) {
            match a.rank().cmp(&b.rank()) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        // More segments is more specific; with equal segments, a route that
        // ends beats one that goes on with a wildcard.
        self.segments
            .len()
            .cmp(&other.segments.len())
            .then(other.wildcard.cmp(&self.wildcard))
    }
}

/// Splits off the next non-empty segment of `path`, returning it and the rest.
fn next_segment(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    let end = trimmed.find('/').unwrap_or(trimmed.len());
    Some((&trimmed[..end], &trimmed[end..]))
}

/// What a matched route captured from the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// `:name` captures in route order, raw (not percent-decoded).
    pub captures: Vec<(String, String)>,
    /// What the trailing wildcard matched (`spin-path-info`); empty for exact routes.
    pub path_info: String,
}

/// Routes of one app in precedence order, each with what it leads to.
#[derive(Clone, Debug)]
pub struct RouteTable<H> {
    entries: Vec<(RoutePattern, H)>,
}

impl<H> RouteTable<H> {
    /// Builds the table from routes in manifest order (later duplicates win).
    pub fn new(routes: impl IntoIterator<Item = (RoutePattern, H)>) -> Self {
        let mut entries: Vec<(RoutePattern, H)> = Vec::new();
        for (pattern, handler) in routes {
            if pattern.is_reserved() {
                continue;
            }
            entries.retain(|(p, _)| p.normalized() != pattern.normalized());
            entries.push((pattern, handler));
        }
        // Stable sort, most specific first.
        entries.sort_by(|(a, _), (b, _)| b.specificity(a));
        RouteTable { entries }
    }

    /// Finds the route for a request path (the URI path, without the query).
    pub fn route(&self, path: &str) -> Option<(&RoutePattern, &H, RouteMatch)> {
        if path.starts_with(WELL_KNOWN_PREFIX) {
            return None;
        }
        self.entries
            .iter()
            .find_map(|(p, h)| p.matches(path).map(|m| (p, h, m)))
    }

    /// The routes in precedence order.
    pub fn iter(&self) -> impl Iterator<Item = (&RoutePattern, &H)> {
        self.entries.iter().map(|(p, h)| (p, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[&'static str]) -> RouteTable<&'static str> {
        RouteTable::new(routes.iter().map(|r| (RoutePattern::parse(r), *r)))
    }

    fn winner(t: &RouteTable<&'static str>, path: &str) -> Option<&'static str> {
        t.route(path).map(|(_, h, _)| *h)
    }

    /// Spin's own example: an exact route matches only its own path (and a
    /// trailing slash), a wildcard everything under its prefix, and the
    /// catch-all the rest.
    #[test]
    fn a_literal_star_or_dots_segment_stays_literal_when_normalised() {
        for (route, normal) in [("*/", "/*/"), ("/a/.../", "/a/.../"), ("/a/*/b", "/a/*/b")] {
            let pattern = RoutePattern::parse(route);
            assert!(!pattern.wildcard, "{route}");
            assert_eq!(pattern.normalized(), normal, "{route}");
            assert_eq!(RoutePattern::parse(normal).normalized(), normal, "{route}");
        }
        assert!(RoutePattern::parse("/a/*").wildcard);
    }

    #[test]
    fn users_wildcard_admin_and_catch_all() {
        let t = table(&["/users/...", "/users/admin", "/..."]);
        for p in ["/users", "/users/", "/users/1", "/users/admin/x"] {
            assert_eq!(winner(&t, p), Some("/users/..."), "{p}");
        }
        for p in ["/users/admin", "/users/admin/"] {
            assert_eq!(winner(&t, p), Some("/users/admin"), "{p}");
        }
        for p in ["/", "/other", "/usersx"] {
            assert_eq!(winner(&t, p), Some("/..."), "{p}");
        }
    }

    #[test]
    fn param_exact_and_param_wildcard() {
        let t = table(&["/users/:id", "/users/admin", "/users/:id/..."]);
        let (_, h, m) = t.route("/users/42").unwrap();
        assert_eq!(
            (*h, m.captures),
            ("/users/:id", vec![("id".into(), "42".into())])
        );
        assert_eq!(winner(&t, "/users/42/"), Some("/users/:id"));
        assert_eq!(winner(&t, "/users/admin"), Some("/users/admin"));
        assert_eq!(winner(&t, "/users/42/x/y"), Some("/users/:id/..."));
        assert_eq!(winner(&t, "/users"), None);
    }

    #[test]
    fn exact_segment_beats_param_even_before_a_wildcard() {
        let t = table(&["/a/:x/c", "/a/b/..."]);
        assert_eq!(winner(&t, "/a/b/c"), Some("/a/b/..."));
        assert_eq!(winner(&t, "/a/z/c"), Some("/a/:x/c"));
        assert_eq!(winner(&t, "/a/b/d"), Some("/a/b/..."));
    }

    #[test]
    fn longer_wildcard_wins_where_it_matches() {
        let t = table(&["/a/...", "/a/b/c/..."]);
        assert_eq!(winner(&t, "/a/b/c/d"), Some("/a/b/c/..."));
        assert_eq!(winner(&t, "/a/b/c"), Some("/a/b/c/..."));
        assert_eq!(winner(&t, "/a/b/x"), Some("/a/..."));
        // Declaration order does not matter.
        let t = table(&["/a/b/c/...", "/a/..."]);
        assert_eq!(winner(&t, "/a/b/c/d"), Some("/a/b/c/..."));
    }

    #[test]
    fn param_captures_raw_segment() {
        let t = table(&["/files/:name"]);
        assert_eq!(t.route("/files/a.txt").unwrap().2.captures[0].1, "a.txt");
        assert_eq!(t.route("/files/a%20b").unwrap().2.captures[0].1, "a%20b");
        assert_eq!(winner(&t, "/files/"), None);
        assert_eq!(winner(&t, "/files/a/b"), None);
    }

    #[test]
    fn exact_route_ignores_empty_segments_but_is_case_and_encoding_sensitive() {
        let t = table(&["/foo", "/..."]);
        for p in ["/foo", "/foo/", "//foo", "/foo//"] {
            assert_eq!(winner(&t, p), Some("/foo"), "{p}");
        }
        for p in ["/FOO", "/foo%2F", "/foo.json"] {
            assert_eq!(winner(&t, p), Some("/..."), "{p}");
        }
    }

    #[test]
    fn root_route() {
        let t = table(&["/", "/..."]);
        assert_eq!(winner(&t, "/"), Some("/"));
        assert_eq!(winner(&t, "/x"), Some("/..."));
        let empty = table(&[""]);
        assert_eq!(winner(&empty, "/"), Some(""));
    }

    #[test]
    fn catch_all_matches_everything_spin_tests_list() {
        let t = table(&["/..."]);
        for p in ["/foo/bar", "/abc/", "/", "/this/should/be/captured"] {
            assert_eq!(winner(&t, p), Some("/..."), "{p}");
        }
    }

    #[test]
    fn exact_beats_wildcard_in_any_order() {
        let t = table(&["/foo", "/foo/..."]);
        assert_eq!(winner(&t, "/foo"), Some("/foo"));
        let t = table(&["/foo/...", "/foo"]);
        assert_eq!(winner(&t, "/foo"), Some("/foo"));
        assert_eq!(winner(&t, "/foo/x"), Some("/foo/..."));
    }

    #[test]
    fn duplicate_routes_last_one_wins() {
        let t = RouteTable::new([
            (RoutePattern::parse("/dup"), "first"),
            (RoutePattern::parse("/dup/"), "second"),
        ]);
        assert_eq!(winner(&t, "/dup"), Some("second"));
    }

    #[test]
    fn path_info_respects_trailing_slash() {
        let t = table(&["/test/..."]);
        let info = |p| t.route(p).unwrap().2.path_info;
        assert_eq!(info("/test"), "");
        assert_eq!(info("/test/"), "/");
        assert_eq!(info("/test/hello"), "/hello");
        assert_eq!(info("/test/hello/"), "/hello/");
        let exact = table(&["/exact"]);
        assert_eq!(exact.route("/exact").unwrap().2.path_info, "");
    }

    #[test]
    fn well_known_spin_is_reserved() {
        let t = table(&["/.well-known/spin/...", "/.well-known/spin/fie", "/..."]);
        assert_eq!(winner(&t, "/.well-known/spin/fie"), None);
        assert_eq!(winner(&t, "/.well-known/spin/info"), None);
        assert!(RoutePattern::parse("/.well-known/spin/...").is_reserved());
        assert!(RoutePattern::parse("/.well-known/spin/fie").is_reserved());
        for not_reserved in [
            "/.well-known/spindle/...",
            "/.well-known/spi/...",
            "/.well-known/spin",
        ] {
            assert!(
                !RoutePattern::parse(not_reserved).is_reserved(),
                "{not_reserved}"
            );
        }
        assert_eq!(winner(&t, "/.well-known/spin"), Some("/..."));
    }

    #[test]
    fn header_forms_of_a_route() {
        let r = RoutePattern::parse("/foo/:userid/...");
        assert_eq!(r.normalized(), "/foo/:userid/...");
        assert_eq!(r.raw(), "/foo/:userid/...");
        assert_eq!(r.component_route(), "/foo/:userid");
        let r = RoutePattern::parse("foo/");
        assert_eq!(r.normalized(), "/foo");
        let r = RoutePattern::parse("/...");
        assert_eq!(r.component_route(), "");
        assert_eq!(r.normalized(), "/...");
        let m = r.matches("/foo/bar").unwrap();
        assert_eq!(m.path_info, "/foo/bar");
    }
}
