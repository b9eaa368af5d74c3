//! Bearer tokens: generation, the hashes the store keeps instead of tokens,
//! constant-time checks of a presented token against a stored hash, and who
//! a request's token lets act on a tenant.

use crate::error::ApiError;
use crate::model::TenantRecord;
use crate::store::Store;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

/// A new random token: a readable prefix plus 256 bits from the OS.
pub fn generate_token(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{prefix}_{}", hex::encode(bytes)))
}

/// What the store keeps: the token's SHA-256, hex. Tokens carry 256 bits of
/// entropy, so a fast hash is enough (no password stretching needed).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` hashes to `stored`, compared in constant time.
pub fn token_matches(token: &str, stored: &str) -> bool {
    let presented = hash_token(token);
    presented.as_bytes().ct_eq(stored.as_bytes()).into()
}

/// The admin token's hash: `OKRA_ADMIN_TOKEN` when given, else the token in
/// `file`, generated there (mode 0600) on first start.
pub fn admin_token_hash(given: Option<&str>, file: &Path) -> std::io::Result<String> {
    if let Some(token) = given.filter(|t| !t.trim().is_empty()) {
        return Ok(hash_token(token.trim()));
    }
    match std::fs::read_to_string(file) {
        Ok(token) if !token.trim().is_empty() => return Ok(hash_token(token.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = generate_token("oka").map_err(std::io::Error::other)?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(file)?, format!("{token}\n").as_bytes())?;
    tracing::warn!(file = %file.display(), "generated the admin token; it is in this file");
    Ok(hash_token(&token))
}

/// The bearer token a request carries, or why it carries none.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    const HOW: &str = "send `Authorization: Bearer <token>` (the okra CLI: --token or OKRA_TOKEN)";
    let Some(header) = headers.get(http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(format!("no token: {HOW}")));
    };
    header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(format!(
                "the Authorization header holds no bearer token: {HOW}"
            ))
        })
}

/// Checks that the caller is the admin or `tenant` with its own token, and
/// returns the tenant's record (one read serves both). A token of another
/// tenant, or for a tenant that does not exist, is refused the same way, so
/// tokens reveal nothing about other tenants; only the admin learns that a
/// tenant does not exist.
pub(crate) async fn tenant_access(
    store: &dyn Store,
    admin_token_hash: &str,
    headers: &HeaderMap,
    tenant: &str,
) -> Result<TenantRecord, ApiError> {
    let token = bearer(headers)?;
    let admin = token_matches(token, admin_token_hash);
    match store.tenant(tenant).await? {
        Some(record) if admin || token_matches(token, &record.token_hash) => Ok(record),
        None if admin => Err(ApiError::not_found(format!("no tenant {tenant:?}"))),
        _ => Err(ApiError::forbidden(format!(
            "this token may not act on tenant {tenant:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_match_only_their_hash() {
        let a = generate_token("okt").unwrap();
        let b = generate_token("okt").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("okt_") && a.len() == 4 + 64);
        let stored = hash_token(&a);
        assert!(token_matches(&a, &stored));
        assert!(!token_matches(&b, &stored));
        assert!(!token_matches("", &stored));
        assert!(!token_matches(&a, ""));
    }

    #[test]
    fn the_admin_token_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data/admin-token");
        let first = admin_token_hash(None, &file).unwrap();
        assert_eq!(admin_token_hash(None, &file).unwrap(), first);
        let token = std::fs::read_to_string(&file).unwrap();
        assert!(token_matches(token.trim(), &first));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            admin_token_hash(Some("given"), &file).unwrap(),
            hash_token("given")
        );
    }
}
