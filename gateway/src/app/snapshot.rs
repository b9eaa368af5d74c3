//! The `Snapshot`: every app the gateway serves, by hostname, swapped whole
//! when the configuration changes.

use super::host_table::HostTable;
use super::loader::App;
use std::collections::HashMap;
use std::sync::Arc;

/// The host that matches any `Host` no other app claims.
pub(crate) const ANY_HOST: &str = "*";

/// Every app the gateway serves, by hostname (lowercase, no port): the
/// operator's own (`--app`), which win, then the stored ones.
#[derive(Default)]
pub(crate) struct Snapshot {
    operator: Arc<HashMap<String, Arc<App>>>,
    stored: HostTable<Arc<App>>,
}

impl Snapshot {
    /// The operator's apps by host (lowercase names).
    pub(crate) fn operator(apps: &[(String, Arc<App>)]) -> Arc<HashMap<String, Arc<App>>> {
        Arc::new(
            apps.iter()
                .map(|(host, app)| (host.to_ascii_lowercase(), app.clone()))
                .collect(),
        )
    }

    /// A snapshot serving the operator's apps and the stored ones.
    pub(crate) fn new(
        operator: Arc<HashMap<String, Arc<App>>>,
        stored: HostTable<Arc<App>>,
    ) -> Self {
        Snapshot { operator, stored }
    }

    /// The app for a `Host` header value: port stripped, case-insensitive,
    /// the operator's first; else the app given for host `*`, if any (`okra up`).
    pub(crate) fn lookup(&self, host: &str) -> Option<&Arc<App>> {
        let name = host_without_port(host);
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        self.operator
            .get(name)
            .or_else(|| self.stored.get(name))
            .or_else(|| self.operator.get(ANY_HOST))
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`; trailing dot dropped.
pub(crate) fn host_without_port(host: &str) -> &str {
    let host = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("hello.localhost:8080"), "hello.localhost");
        assert_eq!(host_without_port("hello.localhost"), "hello.localhost");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("example.com."), "example.com");
    }
}
