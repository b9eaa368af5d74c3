//! Spin's `allowed_outbound_hosts`, exactly as Spin reads and applies it: the
//! grammar of one entry (`scheme://host[:port][/]`), the list a component ends
//! up with (templates filled in, `*.spin.internal` expanded, legacy
//! `allowed_http_hosts` converted), and whether a request URL is allowed.
//!
//! An empty list allows nothing.

use crate::template::{self, TemplateError};
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use url::Host;

/// The host suffix of Spin's in-process service chaining.
pub const SERVICE_CHAINING_SUFFIX: &str = ".spin.internal";

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// The scheme part, before `://`.
    pub scheme: SchemeRule,
    /// The host part: a name, address, network, wildcard or `self`.
    pub host: HostRule,
    /// The port part, or the scheme's well-known port when none is written.
    pub port: PortRule,
}

/// Which URL schemes an entry covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemeRule {
    /// `*`: every scheme.
    Any,
    /// One scheme, lowercased (`https`, `redis`, ...).
    Named(String),
}

/// Which hosts an entry covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// `*`: every domain and address.
    Any,
    /// `self` or `self.alt`: requests to the app itself.
    ToSelf,
    /// `*.example.com`: the suffix `.example.com`, at any depth, never `example.com` itself.
    Subdomain(String),
    /// One domain (lowercased, IDNA-normalised) or one address.
    Literal(Host<String>),
    /// A v4 or v6 network, host bits truncated.
    Network(IpNet),
}

/// Which ports an entry covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRule {
    /// `:*`: every port.
    Any,
    /// One port, as written or the scheme's well-known one.
    One(u16),
    /// End-exclusive, as Rust's `a..b`: `4444..5555` covers 4444 to 5554.
    Range(Range<u16>),
}

/// An entry that cannot be used, quoted exactly, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allowed_outbound_hosts entry {entry:?}: {reason}")]
pub struct AllowedHostError {
    /// The entry exactly as written, before any template in it is filled in.
    pub entry: String,
    /// What is wrong with it, and what would be accepted.
    pub reason: String,
}

/// The port a scheme gets when an entry or URL names none.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "postgres" => 5432,
        "mysql" => 3306,
        "redis" => 6379,
        "mqtt" => 1883,
        "http" => 80,
        "https" => 443,
        _ => return None,
    })
}

impl AllowedHost {
    /// Parses one entry (surrounding whitespace ignored).
    pub fn parse(entry: &str) -> Result<AllowedHost, AllowedHostError> {
        parse_entry(entry.trim()).map_err(|reason| AllowedHostError {
            entry: entry.to_string(),
            reason,
        })
    }

    /// Whether this entry allows `url`.
    pub fn allows(&self, url: &OutboundUrl) -> bool {
        let scheme_ok = match &self.scheme {
            SchemeRule::Any => true,
            SchemeRule::Named(s) => *s == url.scheme,
        };
        let port_ok = match (&self.port, url.port) {
            (PortRule::Any, _) => true,
            (PortRule::One(p), Some(port)) => *p == port,
            (PortRule::Range(r), Some(port)) => r.contains(&port),
            (_, None) => false,
        };
        scheme_ok && port_ok && self.host.allows(&url.host)
    }

    /// Whether this entry allows requests to the app itself (relative URLs).
    /// Ports are not considered, as in Spin.
    fn allows_relative(&self) -> bool {
        let scheme_ok = match &self.scheme {
            SchemeRule::Any => true,
            SchemeRule::Named(s) => s == "http" || s == "https",
        };
        scheme_ok && matches!(self.host, HostRule::Any | HostRule::ToSelf)
    }
}

impl HostRule {
    fn allows(&self, host: &Host<String>) -> bool {
        match (self, host) {
            (HostRule::Any, _) => true,
            (HostRule::ToSelf, _) => false,
            (HostRule::Subdomain(suffix), Host::Domain(d)) => d.ends_with(suffix.as_str()),
            (HostRule::Subdomain(_), _) => false,
            (HostRule::Literal(literal), host) => literal == host,
            (HostRule::Network(net), Host::Ipv4(ip)) => net.contains(&IpAddr::V4(*ip)),
            (HostRule::Network(net), Host::Ipv6(ip)) => net.contains(&IpAddr::V6(*ip)),
            (HostRule::Network(_), Host::Domain(_)) => false,
        }
    }
}

fn parse_entry(entry: &str) -> Result<AllowedHost, String> {
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err(if matches!(entry, "*" | ":" | "" | "?") {
            "there is no scheme; to allow every host use \"*://*:*\"".into()
        } else if entry == "insecure:allow-all" {
            "`insecure:allow-all` is not supported; use \"*://*:*\"".into()
        } else {
            "there is no scheme; write scheme://host[:port], e.g. \"https://example.com\"".into()
        });
    };
    let scheme = parse_scheme(scheme)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = split_host_port(rest)?;
    let host = parse_host(host)?;
    let port = match port {
        Some(p) => parse_port(p)?,
        None => match &scheme {
            SchemeRule::Named(s) => PortRule::One(well_known_port(s).ok_or_else(|| {
                format!("scheme `{s}` has no default port; add one, e.g. `:8080`, or `:*`")
            })?),
            SchemeRule::Any => {
                return Err("a `*` scheme needs a port, e.g. `:443`, or `:*`".into());
            }
        },
    };
    Ok(AllowedHost { scheme, host, port })
}

fn parse_scheme(scheme: &str) -> Result<SchemeRule, String> {
    if scheme == "*" {
        Ok(SchemeRule::Any)
    } else if scheme.starts_with('{') {
        Err("scheme lists are not supported; write one entry per scheme".into())
    } else if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(SchemeRule::Named(scheme.to_ascii_lowercase()))
    } else {
        Err(format!(
            "scheme `{scheme}` is not a word of letters (e.g. `https`) or `*`"
        ))
    }
}

/// Splits `host[:port]`, where host may be `[v6]`, or a network `addr/len`
/// (v6 networks unbracketed, so the port is found after the prefix length).
fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if rest.starts_with('[') {
        let end = rest
            .find(']')
            .ok_or("an IPv6 address opened with `[` is never closed")?;
        let (host, after) = rest.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!(
                    "unexpected {after:?} after {host}; only `:port` may follow, and paths are not allowed"
                )),
            },
        };
    }
    if let Some((address, after)) = rest.split_once('/') {
        let (len, port) = match after.split_once(':') {
            Some((len, port)) => (len, Some(port)),
            None => (after, None),
        };
        let is_network = address.parse::<IpAddr>().is_ok()
            && !len.is_empty()
            && len.bytes().all(|b| b.is_ascii_digit());
        if !is_network {
            return Err(
                "paths are not allowed; write scheme://host[:port] with at most a trailing `/`"
                    .into(),
            );
        }
        return Ok((&rest[..address.len() + 1 + len.len()], port));
    }
    Ok(match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    })
}

fn parse_host(host: &str) -> Result<HostRule, String> {
    match host {
        "" => return Err("the host is empty".into()),
        "*" => return Ok(HostRule::Any),
        "self" | "self.alt" => return Ok(HostRule::ToSelf),
        _ => {}
    }
    if host.starts_with('{') {
        return Err("host lists are not yet supported; write one entry per host".into());
    }
    if host.contains('/') {
        let net: IpNet = host
            .parse()
            .map_err(|_| format!("`{host}` is not a valid network (e.g. `10.0.0.0/8`)"))?;
        return Ok(HostRule::Network(net.trunc()));
    }
    if let Some(domain) = host.strip_prefix("*.") {
        return match Host::parse(domain) {
            Ok(Host::Domain(d)) if !d.is_empty() && !d.contains('*') => {
                Ok(HostRule::Subdomain(format!(".{d}")))
            }
            Ok(Host::Ipv4(_) | Host::Ipv6(_)) => {
                Err("a `*.` wildcard needs a domain, not an IP address".into())
            }
            _ => Err(format!("`{domain}` after `*.` is not a valid domain")),
        };
    }
    if host.contains('*') {
        return Err(
            "`*` may only be the whole host or a leading `*.` (e.g. `*.example.com`)".into(),
        );
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "`{host}` is not a valid host; IPv6 addresses go in brackets, e.g. `[::1]`"
        ));
    }
    match Host::parse(host) {
        Ok(Host::Domain(d)) if d.is_empty() => Err("the host is empty".into()),
        Ok(h) => Ok(HostRule::Literal(h)),
        Err(e) => Err(format!("`{host}` is not a valid host: {e}")),
    }
}

fn parse_port(port: &str) -> Result<PortRule, String> {
    let number = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("Invalid allowed host port {port:?}"))
    };
    if port == "*" {
        Ok(PortRule::Any)
    } else if port.starts_with('{') {
        Err("port lists are not supported; use a range `a..b` or one entry per port".into())
    } else if let Some((start, end)) = port.split_once("..") {
        Ok(PortRule::Range(number(start)?..number(end)?))
    } else {
        Ok(PortRule::One(number(port)?))
    }
}

/// The list one component is allowed to reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<AllowedHost>,
}

/// What expanding a component's entries needs to know about its app.
pub struct AppContext<'a> {
    /// Every component id in the app, for `*.spin.internal`.
    pub component_ids: &'a [String],
    /// Application variables' values.
    pub variable: &'a dyn Fn(&str) -> Option<String>,
}

impl AllowedHosts {
    /// Builds the list from a component's entries: templates filled in (an
    /// entry that comes out empty, `http://` or `https://` is dropped),
    /// `*.spin.internal` expanded to one entry per component.
    pub fn build(entries: &[String], app: &AppContext<'_>) -> Result<Self, AllowedHostError> {
        let mut out = Vec::new();
        for entry in entries {
            let text = if template::is_template(entry) {
                let filled = template::render(entry, app.variable).map_err(|e| {
                    AllowedHostError {
                        entry: entry.clone(),
                        reason: match e {
                            TemplateError::NoValue(name) => format!(
                                "variable `{name}` has no value (declare it under [variables] with a default, or set it)"
                            ),
                            TemplateError::Unclosed => e.to_string(),
                        },
                    }
                })?;
                if matches!(filled.trim(), "" | "http://" | "https://") {
                    continue;
                }
                filled
            } else {
                entry.clone()
            };
            let parsed = AllowedHost::parse(&text).map_err(|e| AllowedHostError {
                entry: entry.clone(),
                reason: e.reason,
            })?;
            if parsed.host == HostRule::Subdomain(SERVICE_CHAINING_SUFFIX.into()) {
                for id in app.component_ids {
                    out.push(AllowedHost {
                        host: HostRule::Literal(Host::Domain(format!(
                            "{id}{SERVICE_CHAINING_SUFFIX}"
                        ))),
                        ..parsed.clone()
                    });
                }
            } else {
                out.push(parsed);
            }
        }
        Ok(AllowedHosts { entries: out })
    }

    /// The parsed entries, in order, with `*.spin.internal` already expanded.
    pub fn entries(&self) -> &[AllowedHost] {
        &self.entries
    }

    /// Whether any entry allows `url`.
    pub fn allows(&self, url: &OutboundUrl) -> bool {
        self.entries.iter().any(|e| e.allows(url))
    }

    /// Whether requests to the app itself (relative URLs, `self.alt`) are allowed.
    pub fn allows_relative(&self) -> bool {
        self.entries.iter().any(AllowedHost::allows_relative)
    }
}

/// Converts Spin 1's `allowed_http_hosts` into `allowed_outbound_hosts` entries.
pub fn convert_legacy_http_hosts(hosts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for host in hosts {
        match host.trim() {
            "insecure:allow-all" => {
                out.extend(["http://*:*", "https://*:*", "http://self"].map(String::from))
            }
            "self" => out.push("http://self".into()),
            h => out.extend(with_web_schemes(h)),
        }
    }
    out
}

/// An entry as written, or both `http://` and `https://` entries when it
/// names no scheme (legacy `allowed_http_hosts`, policy `allowedSites`).
pub fn with_web_schemes(entry: &str) -> Vec<String> {
    if entry.contains("://") {
        vec![entry.to_string()]
    } else {
        vec![format!("http://{entry}"), format!("https://{entry}")]
    }
}

/// A request URL, reduced to what an entry is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundUrl {
    /// The URL's scheme, lowercase.
    pub scheme: String,
    /// The URL's host: a lowercased domain, or an IPv4 or IPv6 address.
    pub host: Host<String>,
    /// The URL's port, or its scheme's well-known port.
    pub port: Option<u16>,
}

impl OutboundUrl {
    /// A TCP socket address (wasi:sockets connect), as Spin checks one:
    /// under the scheme `tcp`, so `tcp://` and `*://` entries cover it and
    /// `redis://`, `http://` and the like do not; an IPv4-mapped IPv6
    /// address reads as its IPv4 address. No name is looked up, so a domain
    /// entry never covers an address.
    pub fn tcp_socket(addr: std::net::SocketAddr) -> Self {
        let host = match addr.ip().to_canonical() {
            IpAddr::V4(v4) => Host::Ipv4(v4),
            IpAddr::V6(v6) => Host::Ipv6(v6),
        };
        OutboundUrl {
            scheme: "tcp".into(),
            host,
            port: Some(addr.port()),
        }
    }

    /// Parses `url`; one without a scheme is read as `default_scheme://url`.
    /// Passwords holding `#`, `?` or `@` are accepted, as Spin accepts them.
    pub fn parse(url: &str, default_scheme: &str) -> Result<Self, String> {
        let attempt = |text: &str| -> Option<OutboundUrl> {
            let parsed = url::Url::parse(&escape_userinfo(text)).ok()?;
            let host = match parsed.host()?.to_owned() {
                // Non-special schemes keep hosts opaque: read them as a web URL would.
                Host::Domain(d) => match Host::parse(&d) {
                    Ok(h) => h,
                    Err(_) => Host::Domain(d.to_ascii_lowercase()),
                },
                h => h,
            };
            let scheme = parsed.scheme().to_string();
            let port = parsed.port().or_else(|| well_known_port(&scheme));
            Some(OutboundUrl { scheme, host, port })
        };
        attempt(url)
            .or_else(|| attempt(&format!("{default_scheme}://{url}")))
            .ok_or_else(|| format!("{url:?} is not a URL with a host"))
    }
}

/// Percent-encodes the characters of a URL's userinfo that would otherwise end
/// it early. The userinfo is what precedes the first `@`, if no `/` comes first.
fn escape_userinfo(url: &str) -> String {
    let (prefix, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let (userinfo, host_and_path) = rest.split_at(at);
    if userinfo.contains('/') {
        return url.to_string();
    }
    let mut escaped = String::with_capacity(url.len() + 8);
    escaped.push_str(prefix);
    for c in userinfo.chars() {
        match c {
            '#' => escaped.push_str("%23"),
            '?' => escaped.push_str("%3F"),
            '[' => escaped.push_str("%5B"),
            ']' => escaped.push_str("%5D"),
            c => escaped.push(c),
        }
    }
    escaped.push_str(host_and_path);
    escaped
}

impl fmt::Display for OutboundUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}://{}:{p}", self.scheme, self.host),
            None => write!(f, "{}://{}", self.scheme, self.host),
        }
    }
}

#[cfg(test)]
mod tests;
