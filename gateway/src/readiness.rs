//! Whether this gateway serves its configuration, as `/readyz` reports it:
//! not before the first snapshot of a reachable store is built (its
//! listeners are bound before anything starts), and not once it has begun
//! to shut down. A leaf: the watcher, the drain and the metrics listener
//! share it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What `/readyz` answers from.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    /// False until the store's first snapshot is served (true at once with
    /// no store).
    loaded: AtomicBool,
    /// True from the first shutdown signal on.
    stopping: AtomicBool,
    /// What an operator should know while the gateway stays ready, such as
    /// a store behind the configuration served.
    warning: Mutex<Option<String>>,
}

impl Readiness {
    /// Readiness for a gateway whose configuration is `loaded` already
    /// (no store), or not yet.
    pub(crate) fn new(loaded: bool) -> Self {
        Readiness {
            loaded: AtomicBool::new(loaded),
            stopping: AtomicBool::new(false),
            warning: Mutex::new(None),
        }
    }

    /// The store's configuration is served.
    pub(crate) fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// The gateway is shutting down: load balancers should stop sending.
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Sets (or, with `None`, clears) the warning `/readyz` shows.
    pub(crate) fn set_warning(&self, warning: Option<String>) {
        *self.warning.lock().unwrap_or_else(|e| e.into_inner()) = warning;
    }

    /// The warning `/readyz` shows while ready, if any.
    pub(crate) fn warning(&self) -> Option<String> {
        self.warning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the gateway is not ready, or `None` when it is.
    pub(crate) fn not_ready(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.loaded.load(Ordering::Acquire) {
            Some("the store's configuration is not loaded yet (is the store reachable?)")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_loaded_and_never_again_once_stopping() {
        let r = Readiness::new(false);
        assert!(r.not_ready().unwrap().contains("not loaded"));
        r.set_loaded();
        assert_eq!(r.not_ready(), None);
        r.set_stopping();
        assert_eq!(r.not_ready(), Some("shutting down"));
        assert_eq!(Readiness::new(true).not_ready(), None);
    }
}
