//! Spin's own rules for `allowed_outbound_hosts` (schemes, hosts, ports, wildcards,
//! CIDR, variables and `self`), plus cases Spin's own suite does not have.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn parse(entry: &str) -> AllowedHost {
    AllowedHost::parse(entry).unwrap_or_else(|e| panic!("{entry}: {e}"))
}

fn domain(d: &str) -> HostRule {
    HostRule::Literal(Host::Domain(d.into()))
}

fn named(s: &str) -> SchemeRule {
    SchemeRule::Named(s.into())
}

fn net(n: &str) -> HostRule {
    HostRule::Network(n.parse().unwrap())
}

fn v6(a: &str) -> HostRule {
    HostRule::Literal(Host::Ipv6(a.parse::<Ipv6Addr>().unwrap()))
}

#[track_caller]
fn accepts(entry: &str, scheme: SchemeRule, host: HostRule, port: PortRule) {
    assert_eq!(parse(entry), AllowedHost { scheme, host, port }, "{entry}");
}

#[test]
fn table_a_accepted_entries() {
    use PortRule::{Any, One, Range};
    let fermyon = || domain("spin.fermyon.dev");
    accepts("http://spin.fermyon.dev", named("http"), fermyon(), One(80));
    accepts(
        "http://spin.fermyon.dev/",
        named("http"),
        fermyon(),
        One(80),
    );
    accepts(
        "https://spin.fermyon.dev",
        named("https"),
        fermyon(),
        One(443),
    );
    accepts(
        "http://spin.fermyon.dev:4444",
        named("http"),
        fermyon(),
        One(4444),
    );
    accepts(
        "http://spin.fermyon.dev:4444/",
        named("http"),
        fermyon(),
        One(4444),
    );
    accepts(
        "https://spin.fermyon.dev:5555",
        named("https"),
        fermyon(),
        One(5555),
    );
    accepts(
        "http://spin.fermyon.dev:4444..5555",
        named("http"),
        fermyon(),
        Range(4444..5555),
    );
    accepts(
        "*://spin.fermyon.dev:7777",
        SchemeRule::Any,
        fermyon(),
        One(7777),
    );
    accepts("http://self", named("http"), HostRule::ToSelf, One(80));
    accepts(
        "http://localhost",
        named("http"),
        domain("localhost"),
        One(80),
    );
    accepts(
        "http://localhost:3001",
        named("http"),
        domain("localhost"),
        One(3001),
    );
    accepts(
        "http://*.example.com",
        named("http"),
        HostRule::Subdomain(".example.com".into()),
        One(80),
    );
    let ip = || HostRule::Literal(Host::Ipv4(Ipv4Addr::new(192, 168, 1, 1)));
    accepts("http://192.168.1.1", named("http"), ip(), One(80));
    accepts("http://192.168.1.1:3002", named("http"), ip(), One(3002));
    accepts("http://[::1]:8001", named("http"), v6("::1"), One(8001));
    accepts("http://[::1]", named("http"), v6("::1"), One(80));
    accepts("https://[::1]", named("https"), v6("::1"), One(443));
    accepts(
        "http://[2001:db8::1]",
        named("http"),
        v6("2001:db8::1"),
        One(80),
    );
    accepts(
        "http://[2001:db8::1]:443",
        named("http"),
        v6("2001:db8::1"),
        One(443),
    );
    accepts("http://[::1]:*", named("http"), v6("::1"), Any);
    accepts(
        "http://[::1]:8000..9000",
        named("http"),
        v6("::1"),
        Range(8000..9000),
    );
    accepts("*://[::1]:80", SchemeRule::Any, v6("::1"), One(80));
    accepts("http://[::1]:8080/", named("http"), v6("::1"), One(8080));
    accepts(
        "*://127.0.0.0/24:80",
        SchemeRule::Any,
        net("127.0.0.0/24"),
        One(80),
    );
    accepts("*://ff00::/8:80", SchemeRule::Any, net("ff00::/8"), One(80));
    accepts("http://ff00::/8", named("http"), net("ff00::/8"), One(80));
    accepts(
        "https://2001:db8::/32",
        named("https"),
        net("2001:db8::/32"),
        One(443),
    );
    accepts("http://::1/128", named("http"), net("::1/128"), One(80));
    accepts(
        "http://10.0.0.0/8",
        named("http"),
        net("10.0.0.0/8"),
        One(80),
    );
    accepts(
        "http://2001:db8::/32:443",
        named("http"),
        net("2001:db8::/32"),
        One(443),
    );
    accepts("*://*:*", SchemeRule::Any, HostRule::Any, Any);
    parse("http://x.y");
    parse("*://my.db:*");
    // Host bits are truncated, as ip_network's from_str_truncate does.
    accepts(
        "http://127.0.0.1/24",
        named("http"),
        net("127.0.0.0/24"),
        One(80),
    );
}

#[test]
fn table_b_rejected_entries() {
    let rejected = [
        "spin.fermyon.dev",
        "spin.fermyon.dev:80",
        "localhost",
        "localhost:3001",
        "example.com",
        "*://127.0.0.0/24",
        "http://spin.fermyon.dev/a",
        "http://spin.fermyon.dev:6666/a/b",
        "http://*.fermyon.dev/a",
        "insecure:allow-all",
        "zootle! wurdl!",
        "}{ !!**",
        "http://example.com:notaport",
        "http://example.com:8080..70000",
        "http://self:notaport",
        "http://self.alt:notaport",
        "http://*:notaport",
        "http://127.0.0.1:notaport",
        "http://[::1]:notaport",
        "http://*.example.com:notaport",
        "http://*.example.com:8080..",
        "http://*.example.com:8O8O",
        "http://example.com:8080/p",
        "http://*.example.com:8080/p",
        "http://*.example.com/p",
        "http://127.0.0.0/24/p",
        "http://[::1junk",
        "http://*.",
        "http://*.:8080",
        "example.com:8080",
        "http://example%.com",
        "http://example%2.com",
        "http://example%GG.com",
        "http://exa[mple.com",
        "http://exa\\mple.com",
        "http://example.com:80:90",
        "http://[vG.example]",
        "http://[::1]/foo",
        "http://ff00::/8/extra",
        "http://[::1",
        "http://[::1]junk",
        "http://[::1]::80",
        "http://[v1.]",
        "[::1]",
        "[::1]:8080",
        "http://example.com//",
        "http://*.example.com//",
        "http://self//",
        "http://[::1]//",
        "http://*.127.0.0.1",
        "http://*.192.168.001.001",
        "http://*.[::1]",
        "http://*.[2001:db8::1]",
        // Beyond Spin's suite: lists, bad schemes, empty hosts.
        "{http,https}://example.com",
        "http://{a,b}.com",
        "http://example.com:{80,81}",
        "ht-tp://example.com",
        "://example.com",
        "http://",
        "http://:80",
        "http://a*.example.com",
    ];
    for entry in rejected {
        let e = AllowedHost::parse(entry).expect_err(entry);
        assert_eq!(e.entry, entry);
        assert!(e.to_string().contains(&format!("{entry:?}")), "{e}");
    }
    for entry in [
        "http://example.com:99999",
        "http://[::1]:99999",
        "http://ff00::/8:99999",
        "http://*.example.com:99999",
    ] {
        assert_eq!(
            AllowedHost::parse(entry).unwrap_err().reason,
            r#"Invalid allowed host port "99999""#,
            "{entry}"
        );
    }
    // The list form Spin rejects: one entry is enough to fail the list.
    let ids: Vec<String> = vec![];
    let app = AppContext {
        component_ids: &ids,
        variable: &|_| None,
    };
    let list = [
        "spin.fermyon.dev".to_string(),
        "insecure:allow-all".to_string(),
    ];
    assert!(AllowedHosts::build(&list, &app).is_err());
    let e = AllowedHost::parse("*").unwrap_err();
    assert!(e.reason.contains("*://*:*"), "{e}");
    let e = AllowedHost::parse("insecure:allow-all").unwrap_err();
    assert!(e.reason.contains("*://*:*"), "{e}");
}

fn hosts(entries: &[&str]) -> AllowedHosts {
    let ids: Vec<String> = vec![];
    let app = AppContext {
        component_ids: &ids,
        variable: &|_| None,
    };
    let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
    AllowedHosts::build(&entries, &app).unwrap()
}

#[track_caller]
fn check(list: &AllowedHosts, url: &str, default_scheme: &str, allowed: bool) {
    let parsed = OutboundUrl::parse(url, default_scheme).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(list.allows(&parsed), allowed, "{url} ({parsed})");
}

#[test]
fn table_c_allow_and_deny() {
    let list = hosts(&["*://spin.fermyon.dev:443", "http://example.com:8383"]);
    check(&list, "http://example.com:8383/foo/bar", "https", true);
    check(&list, "https://spin.fermyon.dev", "https", true);
    check(&list, "https://spin.fermyon.dev/", "https", true);
    check(&list, "http://example.com/", "https", false);
    check(&list, "http://google.com/", "https", false);
    check(&list, "spin.fermyon.dev:443", "https", true);
    check(&list, "example.com:8383", "http", true);

    let list = hosts(&["https://my.api.com/"]);
    check(&list, "https://my.api.com", "https", true);
    check(&list, "https://my.api.com/", "https", true);

    let list = hosts(&["http://*.example.com", "http://*.example2.com:8383"]);
    check(&list, "http://a.example.com/foo/bar", "https", true);
    check(&list, "http://a.b.example.com/foo/bar", "https", true);
    check(&list, "http://a.b.example2.com:8383/foo/bar", "https", true);
    check(&list, "http://a.b.example2.com/foo/bar", "https", false);
    check(&list, "http://example.com/foo/bar", "https", false);
    check(&list, "http://example.com:8383/foo/bar", "https", false);
    check(&list, "http://myexample.com/foo/bar", "https", false);

    let list = hosts(&["mysql://xyz.com"]);
    check(&list, "mysql://user:pass#word@xyz.com", "mysql", true);
    check(&list, "mysql://user%3Apass%23word@xyz.com", "mysql", true);
    check(&list, "user%3Apass%23word@xyz.com", "mysql", true);

    let list = hosts(&["*://127.0.0.1/24:63551"]);
    check(&list, "tcp://127.0.0.1:63551", "tcp", true);

    let list = hosts(&["http://[::1]"]);
    check(&list, "http://[::1]", "https", true);
    check(&list, "http://[::1]/some/path", "https", true);
    check(&list, "http://[::1]:80", "https", true);
    check(&list, "http://[::2]", "https", false);
    check(&list, "http://[::1]:81", "https", false);

    let list = hosts(&["http://2001:db8::/32"]);
    check(&list, "http://[2001:db8::1]", "https", true);
    check(&list, "http://[2001:db8:abcd::1]/x", "https", true);
    check(&list, "http://[2001:db9::1]", "https", false);

    let list = hosts(&["http://*.Example.COM"]);
    check(&list, "http://foo.example.com", "https", true);
    check(&list, "http://a.b.example.com/x", "https", true);
    check(&list, "http://example.com", "https", false);
}

#[test]
fn beyond_table_c() {
    // An empty list allows nothing at all.
    let none = hosts(&[]);
    check(&none, "https://example.com", "https", false);
    assert!(!none.allows_relative());
    // End-exclusive ranges.
    let list = hosts(&["http://example.com:4444..5555"]);
    check(&list, "http://example.com:4444", "https", true);
    check(&list, "http://example.com:5554", "https", true);
    check(&list, "http://example.com:5555", "https", false);
    // The scheme must match; `*` matches any.
    let list = hosts(&["https://example.com"]);
    check(&list, "http://example.com:443", "https", false);
    let list = hosts(&["*://example.com:*"]);
    check(&list, "ftp://example.com:21", "https", true);
    // Every spelling of an IPv4 literal is one address to a CIDR entry.
    let list = hosts(&["http://127.0.0.0/8"]);
    for url in [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://127.0.0.1./",
    ] {
        check(&list, url, "https", true);
    }
    // A CIDR entry never matches a domain: nothing is resolved at check time.
    check(&list, "http://localhost/", "https", false);
    // `*` matches domains and addresses alike.
    let list = hosts(&["https://*"]);
    check(&list, "https://[100::1]:443", "https", true);
    check(&list, "https://example.com", "https", true);
    // Relative requests: scheme http, https or *, host * or self; ports ignored.
    assert!(hosts(&["http://self"]).allows_relative());
    assert!(hosts(&["https://self.alt:8080"]).allows_relative());
    assert!(hosts(&["https://*"]).allows_relative());
    assert!(hosts(&["*://*:*"]).allows_relative());
    assert!(!hosts(&["https://example.com"]).allows_relative());
    assert!(!hosts(&["redis://*"]).allows_relative());
    // A `self` entry does not allow a host literally named `self`.
    check(&hosts(&["http://self"]), "http://self/", "https", false);
}

#[test]
fn table_d_url_host_extraction() {
    for url in [
        "https://example.com/file@0.1.0.json",
        "https://user:password@example.com/file@0.1.0.json",
        "https://user:pass#word@example.com/file@0.1.0.json",
        "https://user:password@example.com",
    ] {
        let parsed = OutboundUrl::parse(url, "https").unwrap();
        assert_eq!(
            parsed.host,
            Host::Domain("example.com".to_string()),
            "{url}"
        );
        assert_eq!(parsed.port, Some(443), "{url}");
    }
    assert!(OutboundUrl::parse("", "https").is_err());
}

#[test]
fn table_e_expansion_and_templates() {
    let ids: Vec<String> = ["first", "second", "third"].map(String::from).to_vec();
    let app = AppContext {
        component_ids: &ids,
        variable: &|_| None,
    };
    let built = AllowedHosts::build(&["http://*.spin.internal".to_string()], &app).unwrap();
    let hosts: Vec<&HostRule> = built.entries().iter().map(|e| &e.host).collect();
    assert_eq!(
        hosts,
        [
            &domain("first.spin.internal"),
            &domain("second.spin.internal"),
            &domain("third.spin.internal")
        ]
    );

    let entries = [
        "pg://localhost:5656",
        "http://*.spin.internal",
        "https://spinframework.dev",
    ]
    .map(String::from);
    let built = AllowedHosts::build(&entries, &app).unwrap();
    let rendered: Vec<String> = built
        .entries()
        .iter()
        .map(|e| format!("{:?}", e.host))
        .collect();
    assert_eq!(rendered.len(), 5);
    assert!(rendered[0].contains("localhost"));
    assert!(rendered[1].contains("first.spin.internal"));
    assert!(rendered[3].contains("third.spin.internal"));
    assert!(rendered[4].contains("spinframework.dev"));
    // Scheme and port carry over: http does not allow https.
    let to_first = |url: &str| built.allows(&OutboundUrl::parse(url, "https").unwrap());
    assert!(to_first("http://first.spin.internal/x"));
    assert!(!to_first("https://first.spin.internal/x"));

    // Entries that resolve to empty, `http://` or `https://` are dropped.
    let vars = |name: &str| match name {
        "one" | "two" => Some(String::new()),
        "dbhost" => Some("example.com".to_string()),
        "dbport" => Some("1234".to_string()),
        "bad" => Some("zoinks, Scooby!".to_string()),
        _ => None,
    };
    let app = AppContext {
        component_ids: &ids,
        variable: &vars,
    };
    let entries = ["https://{{ one }}", "{{ two }}", "https://three"].map(String::from);
    let built = AllowedHosts::build(&entries, &app).unwrap();
    assert_eq!(built.entries().len(), 1);
    assert_eq!(built.entries()[0].host, domain("three"));

    let entries = ["http://{{ dbhost }}", "http://{{ dbhost }}:{{ dbport }}"].map(String::from);
    let built = AllowedHosts::build(&entries, &app).unwrap();
    assert!(built.allows(&OutboundUrl::parse("http://example.com:1234", "https").unwrap()));

    let e = AllowedHosts::build(&["http://{{ bad }}".to_string()], &app).unwrap_err();
    assert_eq!(e.entry, "http://{{ bad }}");
    let e = AllowedHosts::build(&["http://{{ unknown }}".to_string()], &app).unwrap_err();
    assert!(e.reason.contains("`unknown`"), "{e}");
}

#[test]
fn legacy_allowed_http_hosts() {
    let converted = convert_legacy_http_hosts(
        &[
            "self",
            "example.com:8080",
            "insecure:allow-all",
            "https://a.b",
        ]
        .map(String::from),
    );
    assert_eq!(
        converted,
        [
            "http://self",
            "http://example.com:8080",
            "https://example.com:8080",
            "http://*:*",
            "https://*:*",
            "http://self",
            "https://a.b",
        ]
    );
    for entry in &converted {
        AllowedHost::parse(entry).unwrap();
    }
}
