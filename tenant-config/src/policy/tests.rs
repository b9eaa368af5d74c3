//! The seed's examples verbatim, scope combination, and bad input.

use super::*;
use serde_json::json;

fn parse(text: &str, level: ScopeLevel) -> Result<Policy, PolicyError> {
    Policy::parse(text, Path::new("okra.json"), level, "app shop")
}

fn url(u: &str) -> OutboundUrl {
    OutboundUrl::parse(u, "https").unwrap()
}

struct Req {
    method: &'static str,
    url: &'static str,
    headers: Vec<(String, String)>,
    claims: serde_json::Value,
}

impl Req {
    fn get(url: &'static str) -> Req {
        Req {
            method: "GET",
            url,
            headers: vec![],
            claims: json!({}),
        }
    }

    fn check(&self, chain: &PolicyChain) -> Result<(), Denial> {
        let u = url(self.url);
        let host = u.host.to_string();
        let facts = RequestFacts {
            method: self.method,
            url: self.url,
            scheme: &u.scheme,
            host: &host,
            port: u.port.unwrap_or(0),
            path: "/",
            headers: &self.headers,
            claims: &self.claims,
            tenant: "acme",
            app: "shop",
            component: "api",
        };
        chain.check(&u, &facts)
    }
}

/// The six examples of the seed, pasted into one okra.json.
const SEED: &str = r#"{
  "policy.http.fetch.allowedSites": ["https://api.example.com", "*.trusted.net"],
  "policy.http.fetch.allowMethods": ["GET", "HEAD"],
  "policy.http.fetch.condition": "request.method in ['GET', 'POST'] && request.url.startsWith('https://api.') && request.auth.claims.role == 'internal'",
  "policy.http.fetch.maxTimeoutMs": 5000,
  "policy.http.fetch.requiredHeaders": ["x-service-id"],
  "policy.http.fetch.audit": true
}"#;

#[test]
fn the_seed_examples_load_and_behave_as_described() {
    let policy = parse(SEED, ScopeLevel::App).unwrap();
    let chain = PolicyChain::new(vec![policy.scope.clone()]);
    let internal = |mut r: Req| {
        r.headers.push(("x-service-id".into(), "checkout".into()));
        r.claims = json!({"role": "internal"});
        r
    };
    assert_eq!(
        internal(Req::get("https://api.example.com/v1")).check(&chain),
        Ok(())
    );
    // Not an allowed site.
    let denial = internal(Req::get("https://api.other.com/"))
        .check(&chain)
        .unwrap_err();
    assert_eq!(denial.rule, "policy.http.fetch.allowedSites");
    assert_eq!(denial.scope, "app shop");
    // *.trusted.net is allowed as a site, but the condition wants https://api.
    let denial = internal(Req::get("https://a.trusted.net/"))
        .check(&chain)
        .unwrap_err();
    assert_eq!(denial.rule, "policy.http.fetch.condition");
    // Read-only methods.
    let mut post = internal(Req::get("https://api.example.com/"));
    post.method = "POST";
    assert_eq!(
        post.check(&chain).unwrap_err().rule,
        "policy.http.fetch.allowMethods"
    );
    // The required header.
    let mut bare = Req::get("https://api.example.com/");
    bare.claims = json!({"role": "internal"});
    assert_eq!(
        bare.check(&chain).unwrap_err().rule,
        "policy.http.fetch.requiredHeaders"
    );
    // Claims: wrong role, and no token at all (empty claims) both deny.
    let mut outsider = internal(Req::get("https://api.example.com/"));
    outsider.claims = json!({"role": "external"});
    assert_eq!(
        outsider.check(&chain).unwrap_err().rule,
        "policy.http.fetch.condition"
    );
    outsider.claims = json!({});
    let denial = outsider.check(&chain).unwrap_err();
    assert_eq!(denial.rule, "policy.http.fetch.condition");
    assert!(denial.reason.contains("failed"), "{denial:?}");

    let settings = chain.settings(&|_| None).unwrap();
    assert_eq!(settings.max_timeout_ms, Some(5000));
    assert!(settings.audit);
}

#[test]
fn scopes_all_must_pass_and_combine_as_documented() {
    let global = Policy::parse(
        r#"{"policy.http.fetch.allowMethods": ["GET", "POST"],
            "http.fetch": {"timeoutMsDefault": 9000, "maxBodySizeKb": 64,
                           "injectHeaders": {"x-env": "prod", "x-team": "platform"}}}"#,
        Path::new("global.json"),
        ScopeLevel::Operator,
        "operator",
    )
    .unwrap();
    let app = parse(
        r#"{"http.fetch": {"timeoutMsDefault": 2000, "enableTracing": true,
                           "injectHeaders": {"x-team": "shop", "authorization": "Bearer {{ token }}"}},
            "services": {"api": {"policy.http.fetch.allowMethods": ["GET"],
                                 "http.fetch": {"maxBodySizeKb": 128, "enableTracing": false,
                                                "injectHeaders": {"x-team": "api"}}}}}"#,
        ScopeLevel::App,
    )
    .unwrap();
    let chain = PolicyChain::new(vec![
        global.scope.clone(),
        app.scope.clone(),
        app.services["api"].clone(),
    ]);
    let mut post = Req::get("https://x.example/");
    post.method = "POST";
    let denial = post.check(&chain).unwrap_err();
    assert_eq!(
        (denial.scope.as_str(), denial.rule),
        ("component api", "policy.http.fetch.allowMethods")
    );
    assert_eq!(Req::get("https://x.example/").check(&chain), Ok(()));

    let token = |name: &str| (name == "token").then(|| "s3cret".to_string());
    let settings = chain.settings(&token).unwrap();
    assert_eq!(
        settings.inject_headers,
        vec![
            ("authorization".to_string(), "Bearer s3cret".to_string()),
            ("x-env".to_string(), "prod".to_string()),
            ("x-team".to_string(), "api".to_string()),
        ]
    );
    assert_eq!(settings.timeout_ms_default, Some(2000));
    assert_eq!(settings.max_body_bytes, Some(64 * 1024));
    assert!(
        !settings.tracing,
        "the narrowest scope that sets enableTracing wins"
    );
    assert!(!settings.audit);
    let e = chain.settings(&|_| None).unwrap_err();
    assert!(e.contains("token"), "{e}");
}

#[test]
fn the_condition_sees_everything_it_is_documented_to() {
    let policy = parse(
        r#"{"policy.http.fetch.condition": "request.scheme == 'https' && request.host == 'api.example.com' && request.port == 443 && request.path == '/' && request.headers['x-id'] == '7' && tenant == 'acme' && app == 'shop' && component == 'api' && request.auth.claims.sub == 'u1'"}"#,
        ScopeLevel::App,
    )
    .unwrap();
    let chain = PolicyChain::new(vec![policy.scope]);
    let mut req = Req::get("https://api.example.com/");
    req.headers.push(("x-id".into(), "7".into()));
    req.claims = json!({"sub": "u1"});
    assert_eq!(req.check(&chain), Ok(()));
    req.claims = json!({"sub": "u2"});
    assert!(req.check(&chain).is_err());
}

#[test]
fn bad_policies_are_named_with_their_position() {
    let cases = [
        (r#"{"policy.http.fetch.allowedSite": []}"#, "allowedSite"),
        (
            r#"{"policy.http.fetch.condition": "request.method ==" }"#,
            "policy.http.fetch.condition",
        ),
        (
            r#"{"policy.http.fetch.condition": "request.method == 'GET' &&& true" }"#,
            "line 1, column",
        ),
        (
            r#"{"policy.http.fetch.allowedSites": ["https://a.com/path"]}"#,
            "\"https://a.com/path\"",
        ),
        (
            r#"{"policy.http.fetch.allowMethods": ["GE T"]}"#,
            "\"GE T\"",
        ),
        (
            r#"{"policy.http.fetch.requiredHeaders": ["host"]}"#,
            "transport",
        ),
        (r#"{"policy.http.fetch.maxTimeoutMs": 0}"#, "at least 1"),
        (
            r#"{"http.fetch": {"injectHeaders": {"x": "a\nb"}}}"#,
            "line break",
        ),
        (r#"{"http.fetch": {"timeoutMs": 1}}"#, "timeoutMs"),
        (
            r#"{"services": {"api": {"services": {"x": {}}}}}"#,
            "services.api.",
        ),
        (r#"{"auth": {"hs256Secrets": ["x"]}}"#, "tenant"),
        ("{\n  \"policy.http.fetch.audit\": \"yes\"\n}", "line 2"),
    ];
    for (text, expected) in cases {
        let e = parse(text, ScopeLevel::App).unwrap_err().to_string();
        assert!(e.starts_with("okra.json: "), "{e}");
        assert!(e.contains(expected), "{text}: {e}");
    }
    let e = Policy::parse(
        r#"{"services": {}}"#,
        Path::new("t.json"),
        ScopeLevel::Tenant,
        "tenant t",
    );
    assert!(e.is_ok(), "an empty services map is harmless");
    let e = Policy::parse(
        r#"{"services": {"a": {}}}"#,
        Path::new("t.json"),
        ScopeLevel::Tenant,
        "tenant t",
    )
    .unwrap_err();
    assert!(e.to_string().contains("services"), "{e}");
}

#[test]
fn the_committed_schema_is_current() {
    let committed = include_str!("../../../schemas/okra-policy.schema.json");
    assert!(
        committed == json_schema(),
        "schemas/okra-policy.schema.json is stale; regenerate it with `cargo run -p tenant-config --example policy-schema > schemas/okra-policy.schema.json`"
    );
}

#[test]
fn only_a_json_object_is_a_policy() {
    for text in [
        r#"["policy.http.fetch.allowMethods"]"#,
        "[]",
        "null",
        "\"text\"",
        "42",
    ] {
        let e =
            Policy::parse(text, Path::new("p.json"), ScopeLevel::Tenant, "tenant t").unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{text}: {e}");
    }
    assert!(Policy::parse(" {}", Path::new("p.json"), ScopeLevel::Tenant, "tenant t").is_ok());
}
