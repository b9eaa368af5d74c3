//! Guest failures as the operator's log shows them: one line each at
//! `warn`, tagged with tenant, app, component and reason, at most
//! [`MAX_LINE_CHARS`] long, and at most [`BURST`] at once and
//! [`PER_SECOND`] a second per tenant, however many apps and components it
//! has, so a tenant whose guests fail on every request cannot flood the
//! log. What is held back is counted and the count given on the next line.
//! The whole error, wasm backtrace and all, is logged at `debug`.

use crate::guest::rate_limit::RateLimiter;
use crate::metrics::ComponentLabels;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The longest failure line logged at `warn`, in characters.
const MAX_LINE_CHARS: usize = 2048;

/// Every tenant's failure log, by tenant name.
#[derive(Default)]
pub(crate) struct FailureLogs {
    tenants: Mutex<HashMap<String, Weak<FailureLog>>>,
}

impl FailureLogs {
    /// `tenant`'s log: the same one for as long as any of its components
    /// holds it, so a rebuild does not start a fresh burst.
    pub(crate) fn tenant(&self, tenant: &str) -> Arc<FailureLog> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = tenants.get(tenant).and_then(Weak::upgrade) {
            return log;
        }
        // Tenants nobody holds any more go with this one.
        tenants.retain(|_, log| log.strong_count() > 0);
        let log = Arc::new(FailureLog::default());
        tenants.insert(tenant.to_string(), Arc::downgrade(&log));
        log
    }
}

/// Failure lines a tenant may log in one burst.
const BURST: u32 = 5;
/// Failure lines a tenant may log per second after the burst.
const PER_SECOND: u32 = 1;

/// One tenant's failure log.
pub(crate) struct FailureLog {
    budget: RateLimiter,
    /// Failures not logged since the last line.
    held_back: AtomicU64,
}

impl Default for FailureLog {
    fn default() -> Self {
        FailureLog {
            budget: RateLimiter::new(PER_SECOND, BURST),
            held_back: AtomicU64::new(0),
        }
    }
}

impl FailureLog {
    /// Logs that a guest of `labels` (one of this log's tenant's) failed
    /// with `error`, stopped for `reason`.
    pub(crate) fn log(&self, labels: &ComponentLabels, reason: &str, error: &wasmtime::Error) {
        tracing::debug!(
            tenant = %labels.tenant,
            app = %labels.app,
            component = %labels.component,
            reason,
            "guest failed: {error:?}"
        );
        let Some(held_back) = self.admit(self.budget.check().is_ok()) else {
            return;
        };
        tracing::warn!(
            tenant = %labels.tenant,
            app = %labels.app,
            component = %labels.component,
            reason,
            held_back,
            "guest failed: {}",
            one_line(&format!("{error:#}"))
        );
    }

    /// Whether a failure is logged (`allowed` by the budget): then how many
    /// were held back before it, else `None` and it is counted.
    fn admit(&self, allowed: bool) -> Option<u64> {
        if allowed {
            Some(self.held_back.swap(0, Ordering::Relaxed))
        } else {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// `text` on one line: each line trimmed, empty ones dropped, the rest
/// joined with " | " (a wasm backtrace is one frame per line), cut to
/// [`MAX_LINE_CHARS`] (frame names come from the guest).
fn one_line(text: &str) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    match joined.char_indices().nth(MAX_LINE_CHARS) {
        Some((cut, _)) => format!("{}… (cut; OKRA_LOG=debug has it whole)", &joined[..cut]),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backtrace_becomes_one_line() {
        let error = "error while executing at wasm backtrace:\n    0:  0x1f2 - kitchen!panic\n    1:  0x3a4 - kitchen!handle\n\nCaused by:\n    wasm trap: unreachable";
        assert_eq!(
            one_line(error),
            "error while executing at wasm backtrace: | 0:  0x1f2 - kitchen!panic | 1:  0x3a4 - kitchen!handle | Caused by: | wasm trap: unreachable"
        );
    }

    #[test]
    fn a_long_line_is_cut() {
        let line = one_line(&"é".repeat(MAX_LINE_CHARS + 10));
        assert!(line.starts_with(&"é".repeat(MAX_LINE_CHARS)), "{line}");
        assert!(
            line.ends_with("(cut; OKRA_LOG=debug has it whole)"),
            "{line}"
        );
    }

    #[test]
    fn a_tenant_has_one_log_while_it_is_held() {
        let logs = FailureLogs::default();
        let acme = logs.tenant("acme");
        assert!(Arc::ptr_eq(&acme, &logs.tenant("acme")));
        assert!(!Arc::ptr_eq(&acme, &logs.tenant("beta")));
        drop(acme);
        let _gamma = logs.tenant("gamma");
        let held = logs.tenants.lock().unwrap().len();
        assert_eq!(held, 1, "acme and beta are gone once nobody holds them");
    }

    #[test]
    fn held_back_failures_are_counted_on_the_next_line() {
        let log = FailureLog::default();
        assert_eq!(log.admit(true), Some(0));
        for _ in 0..7 {
            assert_eq!(log.admit(false), None);
        }
        assert_eq!(log.admit(true), Some(7));
        assert_eq!(log.admit(true), Some(0));
    }
}
