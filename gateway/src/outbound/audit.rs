//! The audit trail that `policy.http.fetch.audit` turns on: one JSON record
//! per outbound request (tenant, app, component, kind, method, URL with query
//! values redacted, decision and the rule that decided, status, response
//! bytes, duration), appended to the operator's audit file or, with none
//! configured, logged under the `okra::audit` target.

use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// One outbound request, as audited.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub request_id: String,
    pub tenant: String,
    pub app: String,
    pub component: String,
    /// `external`, `chained` or `self`.
    pub kind: &'static str,
    pub method: String,
    pub url: String,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// What decided: `allowed_outbound_hosts`, `<scope>: <policy key>`, or `policy` when all passed.
    pub rule: String,
    /// The upstream's status, when one answered.
    pub status: Option<u16>,
    /// Response body bytes the guest received.
    pub bytes: u64,
    /// Failure reason when the request failed after being allowed.
    pub error: Option<&'static str>,
    pub duration_ms: f64,
}

/// Where audit records go.
pub struct AuditLog {
    file: Option<Mutex<std::fs::File>>,
}

impl AuditLog {
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| anyhow::anyhow!("outbound.audit_log {}: {e}", p.display()))?,
            )),
            None => None,
        };
        Ok(AuditLog { file })
    }

    pub fn write(&self, record: &AuditRecord) {
        let Ok(mut line) = serde_json::to_string(record) else {
            return;
        };
        match &self.file {
            Some(file) => {
                line.push('\n');
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = file.write_all(line.as_bytes()) {
                    tracing::error!("writing the audit log: {e}");
                }
            }
            None => tracing::info!(target: "okra::audit", "{line}"),
        }
    }
}

/// `url` with every query value replaced by `redacted` (names kept).
pub fn redact_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}=redacted"),
            None => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", redacted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_redacted() {
        assert_eq!(
            redact_query("https://a.example/p?token=s3cret&q=1&flag"),
            "https://a.example/p?token=redacted&q=redacted&flag"
        );
        assert_eq!(redact_query("https://a.example/p"), "https://a.example/p");
    }
}
