//! The audit trail that `policy.http.fetch.audit` turns on: one JSON record
//! per outbound request (tenant, app, component, kind, method, URL with query
//! values redacted, decision and the rule that decided, status, response
//! bytes, duration), appended to the operator's audit file or, with none
//! configured, logged under the `okra::audit` target. The file is written
//! off the request path by one thread.

use prometheus::IntCounter;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

/// One outbound request, as audited.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AuditRecord {
    pub(crate) request_id: String,
    pub(crate) tenant: String,
    pub(crate) app: String,
    pub(crate) component: String,
    /// `external`, `chained` or `self`.
    pub(crate) kind: &'static str,
    pub(crate) method: String,
    pub(crate) url: String,
    /// `allow` or `deny`.
    pub(crate) decision: &'static str,
    /// What decided: `allowed_outbound_hosts`, `<scope>: <policy key>`, or `policy` when all passed.
    pub(crate) rule: String,
    /// The upstream's status, when one answered.
    pub(crate) status: Option<u16>,
    /// Response body bytes the guest received.
    pub(crate) bytes: u64,
    /// Failure reason when the request failed after being allowed.
    pub(crate) error: Option<&'static str>,
    pub(crate) duration_ms: f64,
}

/// Records waiting for the writer thread; past this, new ones are dropped
/// (and counted) rather than slowing requests down.
pub(crate) const AUDIT_QUEUE: usize = 65_536;

/// Where audit records go: a file written by a thread of its own, so no
/// request ever waits on disk I/O or on a lock held across it.
pub(crate) struct AuditLog {
    file: Option<SyncSender<String>>,
    dropped: IntCounter,
}

impl AuditLog {
    /// `dropped` counts records lost because the writer fell behind.
    pub(crate) fn open(path: Option<&Path>, dropped: IntCounter) -> anyhow::Result<Self> {
        let file = match path {
            Some(p) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| anyhow::anyhow!("outbound.audit_log {}: {e}", p.display()))?;
                let (tx, rx) = std::sync::mpsc::sync_channel(AUDIT_QUEUE);
                std::thread::Builder::new()
                    .name("okra audit".into())
                    .spawn(move || write_records(file, &rx))
                    .map_err(|e| anyhow::anyhow!("starting the audit writer: {e}"))?;
                Some(tx)
            }
            None => None,
        };
        Ok(AuditLog { file, dropped })
    }

    pub(crate) fn write(&self, record: &AuditRecord) {
        let Ok(line) = serde_json::to_string(record) else {
            return;
        };
        match &self.file {
            Some(queue) => {
                if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                    queue.try_send(line)
                {
                    if self.dropped.get() == 0 {
                        tracing::error!(
                            "the audit log writer is behind; records are being dropped (okra_audit_dropped_total)"
                        );
                    }
                    self.dropped.inc();
                }
            }
            None => tracing::info!(target: "okra::audit", "{line}"),
        }
    }
}

/// The writer thread: appends each record as a line, flushing whenever the
/// queue runs dry, until every sender is gone.
fn write_records(file: std::fs::File, queue: &Receiver<String>) {
    let mut out = std::io::BufWriter::new(file);
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(line) = next {
            if let Err(e) = writeln!(out, "{line}") {
                tracing::error!("writing the audit log: {e}");
            }
            next = queue.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::error!("writing the audit log: {e}");
        }
    }
}

/// `url` with every query value replaced by `redacted` (names kept).
pub(crate) fn redact_query(url: &str) -> String {
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
