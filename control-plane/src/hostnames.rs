//! Which hostnames an app answers on: the default `{app}.{tenant}.{base}` and
//! custom domains, normalised so that uniqueness is checked on what a client's
//! `Host` header will actually match.

/// An app's default hostname.
pub fn default_host(app: &str, tenant: &str, base_domain: &str) -> String {
    format!("{app}.{tenant}.{base_domain}")
}

/// Every hostname an app answers on: the default one, then its domains.
pub fn app_hosts(tenant: &str, app: &crate::model::AppRecord, base_domain: &str) -> Vec<String> {
    std::iter::once(default_host(&app.name, tenant, base_domain))
        .chain(app.domains.iter().cloned())
        .collect()
}

/// The form in which a `Host` is compared: no trailing dot, IDNA (UTS #46)
/// ASCII when it is a valid domain name, else lowercase. Operator hostnames
/// are reserved in this form, so no spelling of one is free for a tenant.
pub fn host_key(host: &str) -> String {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    idna::domain_to_ascii(trimmed).unwrap_or_else(|_| trimmed.to_ascii_lowercase())
}

/// Normalises a custom domain: IDNA (UTS #46) to ASCII, lowercase, no
/// trailing dot. Refuses ports, paths, wildcards, IP literals and anything
/// under `base_domain`, whose names belong to the default hostnames.
pub fn normalize_domain(domain: &str, base_domain: &str) -> Result<String, String> {
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    if trimmed.is_empty()
        || trimmed.chars().any(|c| {
            matches!(c, ':' | '/' | '*' | '@' | '[' | ']' | '?' | '#') || c.is_whitespace()
        })
    {
        return Err(format!(
            "domain {domain:?} is not a hostname: give a name like www.example.com, without scheme, port, path or wildcard"
        ));
    }
    let ascii = idna::domain_to_ascii(trimmed)
        .map_err(|_| format!("domain {domain:?} is not a valid internationalised domain name"))?;
    if ascii.parse::<std::net::Ipv4Addr>().is_ok() || !ascii.contains('.') {
        return Err(format!(
            "domain {domain:?} must be a fully qualified name with at least one dot, not an IP address"
        ));
    }
    if ascii
        .split('.')
        .any(|label| label.is_empty() || label.len() > 63)
        || ascii.len() > 253
    {
        return Err(format!("domain {domain:?} has an empty or over-long label"));
    }
    let base = base_domain.to_ascii_lowercase();
    if ascii == base || ascii.ends_with(&format!(".{base}")) {
        return Err(format!(
            "domain {domain:?} is under the base domain {base_domain:?}, whose names are the apps' default hostnames"
        ));
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_compare_after_idna_and_case_folding() {
        let n = |d| normalize_domain(d, "okra.test").unwrap();
        assert_eq!(n("WWW.Example.COM"), "www.example.com");
        assert_eq!(n("www.example.com."), "www.example.com");
        assert_eq!(n("Bücher.example"), "xn--bcher-kva.example");
        assert_eq!(n("xn--bcher-kva.example"), n("BÜCHER.example"));
    }

    #[test]
    fn domains_that_are_not_hostnames_are_refused() {
        for bad in [
            "",
            "example.com:8080",
            "http://example.com",
            "*.example.com",
            "localhost",
            "127.0.0.1",
            "[::1]",
            "a..b",
            "a b.com",
            "app.tenant.okra.test",
            "OKRA.test",
        ] {
            assert!(normalize_domain(bad, "okra.test").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_keys_fold_every_spelling_of_a_name() {
        for spelling in ["Bücher.Example", "xn--bcher-kva.example.", "BÜCHER.example"] {
            assert_eq!(host_key(spelling), "xn--bcher-kva.example", "{spelling}");
        }
        assert_eq!(host_key("API.Example.com."), "api.example.com");
        assert_eq!(host_key("*"), "*");
    }

    #[test]
    fn default_hosts_put_the_app_under_its_tenant() {
        assert_eq!(
            default_host("web", "acme", "localhost"),
            "web.acme.localhost"
        );
    }
}
