//! Per-tenant admission: how many of a tenant's guest instances may be alive
//! at once.
//!
//! The count belongs to the tenant, not to an app or a build of one: every
//! app of the tenant draws on one [`TenantAdmission`], and a snapshot rebuild
//! (a redeploy, a new app) finds the same one again, so neither more apps nor
//! redeploys hand out a fresh allowance. A slot is held by the instance
//! itself ([`InstanceSlot`] lives in its store), so it is given back when the
//! guest has stopped, not when the client leaves.
//!
//! It also shares the CPU fairly: a guest that has run for a whole epoch
//! tick is CPU-bound, and from then on runs only while it holds one of its
//! tenant's few CPU turns ([`CpuTurn`]). Short requests never wait for one;
//! a tenant's CPU-bound guests take turns among themselves, so however many
//! it runs, they occupy at most `cpu_parallelism` threads and leave the
//! others to everyone else.

use crate::guest::rate_limit::RateLimiter;
use prometheus::{IntGauge, IntGaugeVec};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tenant_config::Limits;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Every tenant's admission state, by tenant name.
pub(crate) struct Admissions {
    tenants: Mutex<HashMap<String, Weak<TenantAdmission>>>,
    inflight: IntGaugeVec,
    cpu_waiting: IntGaugeVec,
    /// The epoch tick: the longest a CPU turn is held.
    tick: Duration,
}

impl Admissions {
    /// `inflight` is `okra_tenant_inflight_requests{tenant}` (instances
    /// alive), `cpu_waiting` `okra_tenant_cpu_waiting{tenant}` (CPU-bound
    /// guests waiting for a turn).
    pub(crate) fn new(inflight: IntGaugeVec, cpu_waiting: IntGaugeVec, tick: Duration) -> Self {
        Admissions {
            tenants: Mutex::default(),
            inflight,
            cpu_waiting,
            tick,
        }
    }

    /// The tenant's admission state, now holding to `limits`
    /// (`cpu_parallelism` is the number when the limits leave it unset).
    /// The same object is returned for as long as anything holds it.
    pub(crate) fn tenant(
        &self,
        name: &str,
        limits: &Limits,
        cpu_parallelism: u32,
    ) -> Arc<TenantAdmission> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let admission = match tenants.get(name).and_then(Weak::upgrade) {
            Some(existing) => existing,
            None => {
                // Entries of tenants nobody holds any more go with this one.
                tenants.retain(|_, weak| weak.strong_count() > 0);
                let fresh = Arc::new(TenantAdmission {
                    max: AtomicU32::new(0),
                    used: AtomicU32::new(0),
                    gauge: self.inflight.with_label_values(&[name]),
                    cpu_waiting: self.cpu_waiting.with_label_values(&[name]),
                    tick: self.tick,
                    cpu_turns: Mutex::new((0, turns(1))),
                    rates: Mutex::default(),
                });
                tenants.insert(name.to_string(), Arc::downgrade(&fresh));
                fresh
            }
        };
        admission
            .max
            .store(limits.max_concurrent_requests, Ordering::Relaxed);
        admission.set_cpu_parallelism(limits.cpu_parallelism.unwrap_or(cpu_parallelism));
        admission.set_rates(limits.requests_per_second, limits.app_requests_per_second);
        admission
    }
}

/// A tenant's CPU turns: at least one.
fn turns(cpu_parallelism: u32) -> Arc<TurnPool> {
    Arc::new(TurnPool {
        permits: Arc::new(Semaphore::new(cpu_parallelism.max(1) as usize)),
        freed: Notify::new(),
    })
}

/// A tenant's CPU turns. A free turn goes to a guest that asks for it while
/// it is being polled, never to a queued waiter nobody polls: a chained
/// callee is driven by its caller, so a turn queued for a callee whose
/// caller itself waits for a turn would be held by neither, and both would
/// wait until their deadline.
struct TurnPool {
    permits: Arc<Semaphore>,
    /// Wakes the guests waiting for a turn when one is given back.
    freed: Notify,
}

impl TurnPool {
    /// Waits until a turn is free and takes it.
    async fn take(self: &Arc<Self>) -> Turn {
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before trying, so a turn given back in between
            // still wakes this guest.
            freed.as_mut().enable();
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return Turn {
                    permit: Some(permit),
                    pool: self.clone(),
                };
            }
            freed.await;
        }
    }
}

/// A turn a guest holds; given back (and the waiting guests woken) on drop.
struct Turn {
    permit: Option<OwnedSemaphorePermit>,
    pool: Arc<TurnPool>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.permit.take();
        self.pool.freed.notify_waiters();
    }
}

/// One tenant's instance count and its cap.
pub(crate) struct TenantAdmission {
    max: AtomicU32,
    used: AtomicU32,
    gauge: IntGauge,
    cpu_waiting: IntGauge,
    tick: Duration,
    /// The tenant's CPU turns and how many there are; replaced whole when
    /// the number changes (turns held from the old one go back to it).
    cpu_turns: Mutex<(u32, Arc<TurnPool>)>,
    rates: Mutex<Rates>,
}

/// A tenant's request-rate buckets; each is kept, with what it has counted,
/// for as long as its rate stays the same.
#[derive(Default)]
struct Rates {
    tenant: Option<Arc<RateLimiter>>,
    /// Requests per second for each app; `None` when unlimited.
    per_app: Option<u32>,
    apps: HashMap<String, Arc<RateLimiter>>,
}

impl Admissions {
    /// Whether anything (an app, an instance) still holds `tenant`'s state.
    pub(crate) fn is_held(&self, tenant: &str) -> bool {
        let tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        tenants.get(tenant).is_some_and(|w| w.strong_count() > 0)
    }
}

/// A bucket of `rate` per second holding one second's worth.
fn bucket(rate: u32) -> Arc<RateLimiter> {
    Arc::new(RateLimiter::new(rate, rate))
}

impl TenantAdmission {
    /// A slot for one more instance, unless the tenant is at its cap.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<InstanceSlot> {
        let max = self.max.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < max).then_some(used + 1)
            })
            .ok()?;
        self.gauge.inc();
        Some(InstanceSlot(self.clone()))
    }

    /// Instances alive now.
    #[cfg(test)]
    fn in_use(&self) -> u32 {
        self.used.load(Ordering::Acquire)
    }

    fn set_cpu_parallelism(&self, cpu_parallelism: u32) {
        let mut current = self.cpu_turns.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = cpu_parallelism.max(1);
        // A semaphore cannot shrink: a new size is a new semaphore.
        if current.0 != wanted {
            *current = (wanted, turns(wanted));
        }
    }

    fn set_rates(&self, tenant: Option<u32>, per_app: Option<u32>) {
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if rates.tenant.as_ref().map(|b| b.rate()) != tenant {
            rates.tenant = tenant.map(bucket);
        }
        if rates.per_app != per_app {
            rates.per_app = per_app;
            rates.apps.clear();
        }
    }

    /// Takes a token from the tenant's bucket and from `app`'s, or says how
    /// long until the emptier one has one.
    pub(crate) fn check_rate(&self, app: &str) -> Result<(), Duration> {
        let app_bucket;
        let tenant_bucket;
        {
            let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
            tenant_bucket = rates.tenant.clone();
            let Rates { per_app, apps, .. } = &mut *rates;
            app_bucket = per_app.map(|rate| {
                apps.entry(app.to_string())
                    .or_insert_with(|| bucket(rate))
                    .clone()
            });
        }
        if let Some(bucket) = &app_bucket {
            bucket.check()?;
        }
        if let Some(bucket) = tenant_bucket
            && let Err(wait) = bucket.check()
        {
            // The request is refused: the app's token was not used.
            if let Some(app) = &app_bucket {
                app.refund();
            }
            return Err(wait);
        }
        Ok(())
    }

    /// A guest's way to its tenant's CPU turns.
    pub(crate) fn cpu_turn(&self) -> CpuTurn {
        let turns = self.cpu_turns.lock().unwrap_or_else(|e| e.into_inner());
        CpuTurn {
            turns: turns.1.clone(),
            held: Arc::default(),
            waiting: self.cpu_waiting.clone(),
            tick: self.tick,
        }
    }
}

/// One guest's use of its tenant's CPU turns. The guest asks for a turn at
/// every epoch tick it runs through ([`CpuTurn::next`]) and gives it back at
/// its next tick, when the task driving it returns to the executor
/// ([`CpuTurn::release`]), when it is dropped, or one tick after it got it,
/// whichever comes first. The last rule means a guest that stops to wait
/// (for an upstream, or for a component it chained to, which may need a
/// turn itself) never keeps a turn from the others for long.
#[derive(Clone)]
pub(crate) struct CpuTurn {
    turns: Arc<TurnPool>,
    held: Arc<Mutex<Held>>,
    waiting: IntGauge,
    tick: Duration,
}

/// The turn a guest holds, numbered so a timer returns only the turn it
/// was started for.
#[derive(Default)]
struct Held {
    turn: u64,
    permit: Option<Turn>,
}

impl CpuTurn {
    /// Gives up the turn this guest holds, if any.
    pub(crate) fn release(&self) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .permit
            .take();
    }

    /// What a guest that ran through a whole tick waits on before it runs
    /// again: it gives up its turn, yields to the executor (as every tick
    /// does), then waits for a turn, which goes to whichever of the
    /// tenant's waiting guests runs first once one is free (see
    /// [`TurnPool`] for why not in a queue).
    pub(crate) fn next(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.release();
        let turns = self.turns.clone();
        let held = self.held.clone();
        let waiting = self.waiting.clone();
        let tick = self.tick;
        Box::pin(async move {
            tokio::task::yield_now().await;
            waiting.inc();
            // Counted until the turn comes, or the guest is dropped waiting.
            let counted = scopeguard(move || waiting.dec());
            let permit = turns.take().await;
            drop(counted);
            let turn = {
                let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
                held.turn += 1;
                held.permit = Some(permit);
                held.turn
            };
            tokio::spawn(async move {
                tokio::time::sleep(tick).await;
                let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
                if held.turn == turn {
                    held.permit = None;
                }
            });
        })
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// One instance's place in its tenant's count; given back on drop.
pub(crate) struct InstanceSlot(Arc<TenantAdmission>);

impl InstanceSlot {
    /// The instance's way to its tenant's CPU turns.
    pub(crate) fn cpu_turn(&self) -> CpuTurn {
        self.0.cpu_turn()
    }
}

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

impl std::fmt::Debug for InstanceSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceSlot")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_concurrent_requests: u32) -> Limits {
        Limits {
            max_concurrent_requests,
            ..Limits::default()
        }
    }

    fn admissions() -> Admissions {
        let gauge = || IntGaugeVec::new(prometheus::Opts::new("g", "g"), &["tenant"]).unwrap();
        Admissions::new(gauge(), gauge(), Duration::from_millis(10))
    }

    #[test]
    fn every_app_and_build_of_a_tenant_shares_one_cap() {
        let all = admissions();
        let first_build = all.tenant("acme", &limits(2), 1);
        let second_build = all.tenant("acme", &limits(2), 1);
        let a = first_build.try_acquire().unwrap();
        let _b = second_build.try_acquire().unwrap();
        assert!(first_build.try_acquire().is_none());
        assert!(second_build.try_acquire().is_none());
        // Another tenant has its own.
        assert!(all.tenant("other", &limits(2), 1).try_acquire().is_some());
        drop(a);
        assert!(second_build.try_acquire().is_some());
    }

    #[test]
    fn a_new_cap_applies_to_instances_already_alive() {
        let all = admissions();
        let acme = all.tenant("acme", &limits(3), 1);
        let mut held: Vec<_> = (0..3).map(|_| acme.try_acquire().unwrap()).collect();
        let lowered = all.tenant("acme", &limits(1), 1);
        held.truncate(1);
        assert_eq!(lowered.in_use(), 1);
        assert!(lowered.try_acquire().is_none(), "one alive, cap one");
    }

    #[test]
    fn the_gauge_counts_instances_alive() {
        let all = admissions();
        let acme = all.tenant("acme", &limits(5), 1);
        let slots: Vec<_> = (0..3).map(|_| acme.try_acquire().unwrap()).collect();
        assert_eq!(all.inflight.with_label_values(&["acme"]).get(), 3);
        drop(slots);
        assert_eq!(all.inflight.with_label_values(&["acme"]).get(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn cpu_bound_guests_of_a_tenant_take_turns() {
        let all = admissions();
        let acme = all.tenant("acme", &limits(10), 1);
        let (first, second) = (acme.cpu_turn(), acme.cpu_turn());
        first.next().await;
        // The only turn is held: the second guest waits for it.
        let mut waiting = poll_by_hand(second.next());
        assert!(waiting().is_pending(), "it yields first");
        assert!(waiting().is_pending(), "then waits for the turn");
        // Another tenant is not affected.
        all.tenant("other", &limits(10), 1).cpu_turn().next().await;
        first.release();
        assert!(waiting().is_ready());
        // Asking again gives the turn up first, so a lone guest never waits
        // on itself.
        second.next().await;
        second.next().await;
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_turn_is_never_left_with_a_guest_nobody_polls() {
        let all = admissions();
        let acme = all.tenant("acme", &limits(10), 1);
        let (caller, callee) = (acme.cpu_turn(), acme.cpu_turn());
        caller.next().await;
        // The callee queues for the only turn, then is not polled again:
        // its driver is the caller, which is about to wait for a turn too.
        let mut callee_waits = poll_by_hand(callee.next());
        assert!(callee_waits().is_pending(), "it yields first");
        assert!(callee_waits().is_pending(), "then waits for the turn");
        tokio::time::timeout(Duration::from_secs(5), caller.next())
            .await
            .expect("the caller takes the turn it gave back");
        caller.release();
        assert!(callee_waits().is_ready(), "the callee takes it once polled");
    }

    /// Polls a future by hand, outside any executor's scheduling.
    fn poll_by_hand(
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> impl FnMut() -> std::task::Poll<()> {
        let mut future = future;
        move || {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            future.as_mut().poll(&mut cx)
        }
    }

    #[test]
    fn rates_hold_per_tenant_and_per_app_and_survive_rebuilds() {
        let all = admissions();
        let rated = Limits {
            requests_per_second: Some(3),
            app_requests_per_second: Some(2),
            ..Limits::default()
        };
        let acme = all.tenant("acme", &rated, 1);
        assert!(acme.check_rate("a").is_ok());
        assert!(acme.check_rate("a").is_ok());
        assert!(acme.check_rate("a").is_err(), "app a is at its 2/s");
        // A rebuild with the same limits keeps what the buckets counted.
        let rebuilt = all.tenant("acme", &rated, 1);
        assert!(rebuilt.check_rate("a").is_err());
        assert!(rebuilt.check_rate("b").is_ok(), "the tenant has one more");
        let wait = rebuilt.check_rate("c").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Without limits, nothing is counted.
        let open = all.tenant("acme", &Limits::default(), 1);
        for _ in 0..100 {
            assert!(open.check_rate("a").is_ok());
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_turn_comes_back_within_a_tick_even_from_a_guest_that_stopped() {
        let all = admissions();
        let acme = all.tenant("acme", &limits(10), 1);
        let (waiting_on_io, other) = (acme.cpu_turn(), acme.cpu_turn());
        waiting_on_io.next().await;
        // It never runs again (it waits on an upstream); the other still
        // gets the turn once a tick has passed.
        tokio::time::timeout(Duration::from_millis(50), other.next())
            .await
            .expect("the turn came back");
    }
}
