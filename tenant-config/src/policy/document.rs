//! The `okra.json` document as written: the seed's flat
//! `policy.http.fetch.*` keys, the `"http.fetch"` configuration object,
//! per-component `"services"` and (tenant scope only) the `"auth"` keys that
//! verify inbound JWTs. Its JSON Schema is generated from these types.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One scope's policy, as written in `okra.json` (app scope), in a service
/// entry (component scope), or in the operator's global or tenant file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Editor hint; ignored.
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    /// Sites requests may go to: `https://api.example.com`, `*.trusted.net`
    /// (no scheme: http and https), or any `allowed_outbound_hosts` form.
    #[serde(rename = "policy.http.fetch.allowedSites", default)]
    pub allowed_sites: Option<Vec<String>>,
    /// HTTP methods requests may use, e.g. `["GET", "HEAD"]`.
    #[serde(rename = "policy.http.fetch.allowMethods", default)]
    pub allow_methods: Option<Vec<String>>,
    /// A CEL expression that must be true; sees `request.{method,url,scheme,
    /// host,port,path,headers}`, `request.auth.claims`, `tenant`, `app`, `component`.
    #[serde(rename = "policy.http.fetch.condition", default)]
    pub condition: Option<String>,
    /// The longest timeout a request may ask for, in ms.
    #[serde(rename = "policy.http.fetch.maxTimeoutMs", default)]
    pub max_timeout_ms: Option<u64>,
    /// Headers every request must carry.
    #[serde(rename = "policy.http.fetch.requiredHeaders", default)]
    pub required_headers: Option<Vec<String>>,
    /// Write one structured audit record per outbound request.
    #[serde(rename = "policy.http.fetch.audit", default)]
    pub audit: Option<bool>,
    /// Host API configuration.
    #[serde(rename = "http.fetch", default)]
    pub http_fetch: Option<FetchConfig>,
    /// Per-component overrides, by component id (app scope only).
    #[serde(default)]
    pub services: BTreeMap<String, PolicyDocument>,
    /// Keys that verify inbound `Authorization: Bearer` JWTs (tenant scope only).
    #[serde(default)]
    pub auth: Option<AuthKeys>,
}

/// The `"http.fetch"` configuration object.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FetchConfig {
    /// As `policy.http.fetch.allowedSites`.
    #[serde(default)]
    pub allowed_sites: Option<Vec<String>>,
    /// Headers added to every request; values may use `{{ variable }}` templates.
    #[serde(default)]
    pub inject_headers: BTreeMap<String, String>,
    /// Timeout for requests that set none, in ms.
    #[serde(default)]
    pub timeout_ms_default: Option<u64>,
    /// Largest request or response body, in KiB.
    #[serde(default)]
    pub max_body_size_kb: Option<u64>,
    /// Add a W3C `traceparent` to every request.
    #[serde(default)]
    pub enable_tracing: Option<bool>,
}

/// Keys a tenant trusts for inbound JWTs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthKeys {
    /// Shared secrets for HS256 tokens.
    #[serde(default)]
    pub hs256_secrets: Vec<String>,
    /// Public keys for RS256 and ES256 tokens, as a JWK set (`{"keys": [...]}`).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Required `iss`, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    #[serde(default)]
    pub audience: Option<String>,
}

/// The policy document's JSON Schema, pretty-printed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(PolicyDocument);
    serde_json::to_string_pretty(&schema).expect("a schema serialises") + "\n"
}
