//! The store watcher: follows a store's change feed (and polls its version,
//! in case a message was missed), builds a snapshot of what changed and swaps
//! it in, retrying builds that failed.

use super::builder::SnapshotBuilder;
use super::snapshot::Snapshot;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use arc_swap::ArcSwap;
use control_plane::model::State;
use control_plane::store::Store;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How often the watcher compares versions even without a notification.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait between attempts to build apps that failed.
const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// How often a gateway looks for bundle directories nothing uses any more.
const BUNDLE_GC_INTERVAL: Duration = Duration::from_secs(60);

/// Follows the store and swaps snapshots in.
pub(crate) struct Watcher {
    store: Arc<dyn Store>,
    builder: SnapshotBuilder,
    swap: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    /// Told once the store's first snapshot is served, and while the store
    /// is behind it.
    readiness: Arc<Readiness>,
    /// Whether a store older than the served configuration is applied
    /// (`--accept-store-regression`) rather than refused.
    accept_regression: bool,
    /// The older store version last refused, so it is reported once.
    refused_version: Option<u64>,
    /// The store version the current snapshot was built from.
    served: Option<u64>,
    /// The state that snapshot was built from, brought up to date by the
    /// tenants that changed since (a full load only when the log does not
    /// reach back far enough).
    state: Option<State>,
    /// When the last build left apps unbuilt: when to try them again, and
    /// how long to wait after that (doubling up to [`MAX_RETRY_INTERVAL`]).
    retry: Option<(tokio::time::Instant, Duration)>,
    /// When unused bundle directories were last looked for.
    last_collected: tokio::time::Instant,
    /// Since when the store has not answered, while it does not.
    lost_since: Option<tokio::time::Instant>,
}

impl Watcher {
    /// A watcher that serves `builder`'s snapshots of `store` through `swap`.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        builder: SnapshotBuilder,
        swap: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        accept_regression: bool,
    ) -> Self {
        Watcher {
            store,
            builder,
            swap,
            metrics,
            readiness,
            accept_regression,
            refused_version: None,
            served: None,
            state: None,
            retry: None,
            last_collected: tokio::time::Instant::now(),
            lost_since: None,
        }
    }

    /// Records whether the store answered (`Ok`) or not: `okra_store_up`,
    /// and one log line when it is lost and one when it is back, however
    /// long it stays away.
    fn store_answered<E: std::fmt::Display>(&mut self, answer: Result<(), E>) {
        match answer {
            Ok(()) => {
                self.metrics.store_up.set(1);
                if let Some(since) = self.lost_since.take() {
                    tracing::warn!(
                        store = %self.store.describe(),
                        after_seconds = since.elapsed().as_secs(),
                        "the store is back; following its changes again"
                    );
                }
            }
            Err(e) => {
                self.metrics.store_up.set(0);
                if self.lost_since.is_none() {
                    self.lost_since = Some(tokio::time::Instant::now());
                    let served = self
                        .served
                        .map_or("nothing yet".to_string(), |v| format!("version {v}"));
                    tracing::error!(
                        store = %self.store.describe(),
                        "lost the store and its change feed ({e}); still serving {served} until it is back"
                    );
                }
            }
        }
    }

    /// Builds a snapshot of the store's current state and swaps it in;
    /// `everything` looks at every app again (to retry failed builds).
    pub(crate) async fn reload(&mut self, everything: bool) -> anyhow::Result<()> {
        let (state, changed) = match self.current_state().await {
            Ok(current) => current,
            Err(e) => {
                self.store_answered(Err(format!("{e:#}")));
                return Err(e);
            }
        };
        self.store_answered(Ok::<(), String>(()));
        if self.refuses(state.version) {
            // What was taken to build on is behind what is served: start
            // over from a full load once the store has caught up.
            self.state = None;
            return Ok(());
        }
        let changed = changed.filter(|_| !everything);
        let report = self.builder.build(&state, changed.as_ref()).await;
        self.swap.store(Arc::new(report.snapshot));
        self.builder.publish(report.statuses);
        self.readiness.set_loaded();
        self.served = Some(state.version);
        self.retry = if report.failures == 0 {
            None
        } else {
            // A failure may pass (a blob fetch during a store blip, a full
            // disk): build again later even if nothing changes.
            let wait = self.retry.map_or(POLL_INTERVAL, |(_, last)| {
                (last * 2).min(MAX_RETRY_INTERVAL)
            });
            Some((tokio::time::Instant::now() + wait, wait))
        };
        self.metrics.config_version.set(state.version as i64);
        let version = state.version;
        self.state = Some(state);
        let result = if report.failures == 0 { "ok" } else { "error" };
        self.metrics
            .config_reloads_total
            .with_label_values(&[result])
            .inc();
        tracing::info!(version, failures = report.failures, "configuration loaded");
        Ok(())
    }

    /// Whether the store's `version` is older than the configuration served
    /// and must not replace it: a Redis restarted empty would otherwise
    /// make every app answer 404. Reported once per version; cleared (and
    /// said so) once the store has caught up.
    fn refuses(&mut self, version: u64) -> bool {
        let Some(served) = self.served else {
            return false;
        };
        if version >= served || self.accept_regression {
            if self.refused_version.take().is_some() {
                tracing::info!(
                    version,
                    served,
                    "the store has caught up with the configuration served"
                );
                self.readiness.set_warning(None);
            }
            return false;
        }
        if self.refused_version != Some(version) {
            self.refused_version = Some(version);
            self.metrics.store_version_regressions_total.inc();
            tracing::error!(
                store_version = version,
                served,
                "the store went back to an older version (restarted empty, or restored from an old backup?); \
                 still serving version {served}. Restore the store, or restart with --accept-store-regression \
                 to apply it"
            );
            self.readiness.set_warning(Some(format!(
                "the store is at version {version}, behind the version {served} served; \
                 still serving {served} (see the log)"
            )));
        }
        true
    }

    /// The store's state now: what was served plus what changed since (and
    /// which tenants those are), or everything when there is nothing to start
    /// from.
    async fn current_state(&mut self) -> anyhow::Result<(State, Option<BTreeSet<String>>)> {
        if let (Some(mut state), Some(served)) = (self.state.take(), self.served) {
            match self.store.changes_since(served).await {
                // A store behind what was served (emptied, restored) has no
                // log to apply: only a full load says what it holds.
                Ok(Some(changes)) if changes.version < served => {}
                Ok(Some(changes)) => {
                    let changed = changes.tenants.keys().cloned().collect();
                    changes.apply_to(&mut state);
                    return Ok((state, Some(changed)));
                }
                Ok(None) => {}
                Err(e) => {
                    self.state = Some(state);
                    return Err(e.into());
                }
            }
        }
        Ok((self.store.load().await?, None))
    }

    /// Follows the store until the process ends.
    pub(crate) async fn run(mut self) {
        let mut feed = self.store.subscribe();
        loop {
            tokio::select! {
                changed = feed.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(POLL_INTERVAL).await;
                    }
                }
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            let retry_due = self
                .retry
                .is_some_and(|(at, _)| tokio::time::Instant::now() >= at);
            self.builder.forget_released_tenants();
            if self.last_collected.elapsed() >= BUNDLE_GC_INTERVAL {
                self.builder.collect_bundle_dirs();
                self.last_collected = tokio::time::Instant::now();
            }
            match self.store.version().await {
                Ok(version) => {
                    // After a refused regression the store may come back to
                    // the served version number with other content.
                    let current = Some(version) == self.served
                        && !retry_due
                        && self.refused_version.is_none();
                    if current || self.refuses(version) {
                        self.store_answered(Ok::<(), String>(()));
                    } else if let Err(e) = self.reload(retry_due).await {
                        // The reload says whether the store answered it:
                        // back only once the state itself could be read.
                        tracing::debug!("reloading from the store: {e:#}");
                    }
                }
                Err(e) => self.store_answered(Err(e)),
            }
        }
    }
}
