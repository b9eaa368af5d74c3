//! What outbound calls carry from the inbound request that caused them: its
//! `x-request-id` (a valid one from the client is kept), its W3C trace
//! context (continued from the client's `traceparent` or newly started), and
//! the claims of its `Authorization: Bearer` JWT, verified against the
//! tenant's keys. A missing or unverifiable token means empty claims. Also
//! the Host the app was reached by (self-routes reuse it) and the hop count
//! of chained and self-routed requests.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tenant_config::policy::AuthKeys;

/// The inbound side of one request, shared with its guest's outbound calls.
#[derive(Debug, Clone)]
pub(crate) struct InboundContext {
    pub(crate) request_id: String,
    pub(crate) trace: TraceContext,
    /// Verified claims, or `{}`.
    pub(crate) claims: Value,
    /// The `Host` the client reached the app by.
    pub(crate) host: String,
    /// Chained or self-routed hops that led to this request; 0 from a client.
    pub(crate) hops: u32,
}

/// Carries the hop count of a self-routed request back into the edge. A
/// guest cannot set it (the gateway overwrites it); a client that sends it
/// only shortens its own hop budget.
pub(crate) const HOPS_HEADER: &str = "okra-hops";

impl Default for InboundContext {
    fn default() -> Self {
        InboundContext {
            request_id: new_request_id(),
            trace: TraceContext::continue_or_start(None),
            claims: Value::Object(Default::default()),
            host: String::new(),
            hops: 0,
        }
    }
}

impl InboundContext {
    /// Reads the client's `x-request-id`, `traceparent`, `Authorization`
    /// and hop count.
    pub(crate) fn from_headers(
        headers: &http::HeaderMap,
        host: &str,
        verifier: Option<&JwtVerifier>,
    ) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        InboundContext {
            host: host.to_string(),
            hops: text(HOPS_HEADER).and_then(|h| h.parse().ok()).unwrap_or(0),
            request_id: request_id(text("x-request-id")),
            trace: TraceContext::continue_or_start(text("traceparent")),
            claims: verifier.map_or_else(
                || Value::Object(Default::default()),
                |v| v.claims(text("authorization")),
            ),
        }
    }

    /// The context of a request this one makes to its own app.
    pub(crate) fn next_hop(&self) -> Self {
        InboundContext {
            hops: self.hops.saturating_add(1),
            ..self.clone()
        }
    }
}

/// Keeps the client's id when it is 1 to 128 visible characters of
/// `[A-Za-z0-9._:-]`; otherwise makes a new one.
pub(crate) fn request_id(client: Option<&str>) -> String {
    match client {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) =>
        {
            id.to_string()
        }
        _ => new_request_id(),
    }
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A W3C trace context: the trace this request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceContext {
    /// 32 lowercase hex digits, never all zero.
    pub(crate) trace_id: String,
    /// 2 hex digits.
    pub(crate) flags: String,
}

impl TraceContext {
    /// Continues the client's `traceparent` when it is valid (version 00),
    /// else starts a new sampled trace.
    pub(crate) fn continue_or_start(traceparent: Option<&str>) -> Self {
        let parsed = traceparent.and_then(|tp| {
            let parts: Vec<&str> = tp.trim().split('-').collect();
            let hex = |s: &str, n: usize| {
                s.len() == n
                    && s.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            };
            let valid = parts.len() == 4
                && parts[0] == "00"
                && hex(parts[1], 32)
                && hex(parts[2], 16)
                && hex(parts[3], 2)
                && parts[1].bytes().any(|b| b != b'0')
                && parts[2].bytes().any(|b| b != b'0');
            valid.then(|| TraceContext {
                trace_id: parts[1].to_string(),
                flags: parts[3].to_string(),
            })
        });
        parsed.unwrap_or_else(|| TraceContext {
            trace_id: uuid::Uuid::new_v4().simple().to_string(),
            flags: "01".into(),
        })
    }

    /// A `traceparent` for one outbound call: this trace, a new span id.
    pub(crate) fn child_traceparent(&self) -> String {
        let span = uuid::Uuid::new_v4().simple().to_string();
        format!("00-{}-{}-{}", self.trace_id, &span[..16], self.flags)
    }
}

/// Verifies inbound bearer tokens against a tenant's keys.
pub(crate) struct JwtVerifier {
    keys: Vec<(DecodingKey, Algorithm)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtVerifier {
    /// HS256 secrets and RS256/ES256 public keys from a JWK set.
    pub(crate) fn new(auth: &AuthKeys) -> anyhow::Result<Self> {
        let mut keys: Vec<(DecodingKey, Algorithm)> = auth
            .hs256_secrets
            .iter()
            .map(|s| (DecodingKey::from_secret(s.as_bytes()), Algorithm::HS256))
            .collect();
        if let Some(jwks) = &auth.jwks {
            let set: JwkSet = serde_json::from_value(jwks.clone())
                .map_err(|e| anyhow::anyhow!("auth.jwks is not a JWK set: {e}"))?;
            for jwk in &set.keys {
                let algorithm = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    other => anyhow::bail!(
                        "auth.jwks: only RSA (RS256) and EC P-256 (ES256) keys are supported, not {other:?}"
                    ),
                };
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| anyhow::anyhow!("auth.jwks: a key cannot be used: {e}"))?;
                keys.push((key, algorithm));
            }
        }
        if keys.is_empty() {
            anyhow::bail!("auth: give at least one of hs256Secrets or jwks");
        }
        Ok(JwtVerifier {
            keys,
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
        })
    }

    /// The claims of a verified `Bearer` token, or `{}` for anything else.
    pub(crate) fn claims(&self, authorization: Option<&str>) -> Value {
        let empty = Value::Object(Default::default());
        let Some(token) = authorization.and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        }) else {
            return empty;
        };
        for (key, algorithm) in &self.keys {
            let mut validation = Validation::new(*algorithm);
            match &self.audience {
                Some(aud) => validation.set_audience(&[aud]),
                None => validation.validate_aud = false,
            }
            if let Some(iss) = &self.issuer {
                validation.set_issuer(&[iss]);
            }
            if let Ok(data) = jsonwebtoken::decode::<Value>(token.trim(), key, &validation) {
                return data.claims;
            }
        }
        empty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn token(secret: &str, alg: Algorithm, claims: Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn only_verified_tokens_yield_claims() {
        let verifier = JwtVerifier::new(&AuthKeys {
            hs256_secrets: vec!["k1".into()],
            issuer: Some("okra-test".into()),
            ..AuthKeys::default()
        })
        .unwrap();
        let exp = jsonwebtoken::get_current_timestamp() + 600;
        let good = json!({"role": "internal", "iss": "okra-test", "exp": exp});
        let bearer = |t: String| format!("Bearer {t}");
        assert_eq!(
            verifier.claims(Some(&bearer(token("k1", Algorithm::HS256, good.clone()))))["role"],
            "internal"
        );
        let empty = json!({});
        // Wrong secret, wrong issuer, expired, no exp, alg none, garbage, no header.
        for t in [
            token("k2", Algorithm::HS256, good.clone()),
            token(
                "k1",
                Algorithm::HS256,
                json!({"role": "internal", "iss": "other", "exp": exp}),
            ),
            token(
                "k1",
                Algorithm::HS256,
                json!({"role": "internal", "iss": "okra-test", "exp": 1000}),
            ),
            token(
                "k1",
                Algorithm::HS256,
                json!({"role": "internal", "iss": "okra-test"}),
            ),
            token("k1", Algorithm::HS384, good.clone()),
            "eyJhbGciOiJub25lIn0.eyJyb2xlIjoiaW50ZXJuYWwifQ.".into(),
            "not a token".into(),
        ] {
            assert_eq!(verifier.claims(Some(&bearer(t))), empty);
        }
        assert_eq!(verifier.claims(None), empty);
        assert!(JwtVerifier::new(&AuthKeys::default()).is_err());
    }

    #[test]
    fn es256_tokens_verify_against_a_jwk() {
        use base64::Engine as _;
        let key = rcgen::KeyPair::generate().unwrap();
        let point = key.public_key_raw();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }]});
        let verifier = JwtVerifier::new(&AuthKeys {
            jwks: Some(jwks),
            ..AuthKeys::default()
        })
        .unwrap();
        let claims =
            json!({"role": "internal", "exp": jsonwebtoken::get_current_timestamp() + 600});
        let signing = EncodingKey::from_ec_der(&key.serialize_der());
        let token = encode(&Header::new(Algorithm::ES256), &claims, &signing).unwrap();
        assert_eq!(
            verifier.claims(Some(&format!("Bearer {token}")))["role"],
            "internal"
        );
        // Signed by another key: not verified.
        let other = rcgen::KeyPair::generate().unwrap();
        let forged = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_der(&other.serialize_der()),
        )
        .unwrap();
        assert_eq!(
            verifier.claims(Some(&format!("Bearer {forged}"))),
            json!({})
        );
    }

    #[test]
    fn request_ids_and_trace_context() {
        assert_eq!(request_id(Some("abc-123")), "abc-123");
        assert_ne!(request_id(Some("bad id\r\n")), "bad id\r\n");
        assert_eq!(request_id(None).len(), 36);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceContext::continue_or_start(Some(tp));
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = trace.child_traceparent();
        assert!(
            child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && child.ends_with("-01")
        );
        assert_ne!(child, tp);
        let fresh = TraceContext::continue_or_start(Some(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ));
        assert_ne!(fresh.trace_id, "00000000000000000000000000000000");
        assert_eq!(fresh.trace_id.len(), 32);
    }
}
