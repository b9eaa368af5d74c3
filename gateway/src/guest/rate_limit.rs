//! Requests-per-second limits: a token bucket in its GCRA form (one atomic
//! "theoretical arrival time", no lock, no refill task). A bucket of `rate`
//! per second holds `burst` requests: a quiet client may send that many at
//! once, then `rate` per second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One bucket.
pub(crate) struct RateLimiter {
    rate: u32,
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// How far ahead of now the arrival time may run: the burst.
    tolerance: u64,
    /// When the bucket would next be full again, in ns since `origin`.
    arrival: AtomicU64,
    origin: Instant,
}

impl RateLimiter {
    /// `rate` requests per second with bursts of up to `burst` (both at least 1).
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        let interval = 1_000_000_000 / u64::from(rate.max(1));
        RateLimiter {
            rate,
            interval,
            tolerance: interval * u64::from(burst.max(1) - 1),
            arrival: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// The sustained rate this bucket was made with.
    pub(crate) fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes a token, or says how long until one is free.
    pub(crate) fn check(&self) -> Result<(), Duration> {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(now)
    }

    /// Gives back a token taken by `check` that went unused (another bucket
    /// refused the same request), so one refusal is not counted twice.
    pub(crate) fn refund(&self) {
        let _ = self
            .arrival
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |arrival| {
                Some(arrival.saturating_sub(self.interval))
            });
    }

    fn check_at(&self, now: u64) -> Result<(), Duration> {
        let mut arrival = self.arrival.load(Ordering::Acquire);
        loop {
            let from = arrival.max(now);
            if from - now > self.tolerance {
                return Err(Duration::from_nanos(from - now - self.tolerance));
            }
            match self.arrival.compare_exchange_weak(
                arrival,
                from + self.interval,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(current) => arrival = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let bucket = RateLimiter::new(10, 5);
        for i in 0..5 {
            assert!(bucket.check_at(0).is_ok(), "burst request {i}");
        }
        let wait = bucket.check_at(0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // One token every 100 ms from then on.
        assert!(bucket.check_at(SECOND / 10).is_ok());
        assert!(bucket.check_at(SECOND / 10).is_err());
        assert!(bucket.check_at(2 * SECOND / 10).is_ok());
    }

    #[test]
    fn an_idle_bucket_fills_up_to_its_burst_and_no_further() {
        let bucket = RateLimiter::new(2, 2);
        assert!(bucket.check_at(0).is_ok());
        assert!(bucket.check_at(0).is_ok());
        assert!(bucket.check_at(0).is_err());
        let later = 100 * SECOND;
        assert!(bucket.check_at(later).is_ok());
        assert!(bucket.check_at(later).is_ok());
        assert!(
            bucket.check_at(later).is_err(),
            "idle time does not bank more than the burst"
        );
    }

    #[test]
    fn a_refunded_token_can_be_taken_again() {
        let bucket = RateLimiter::new(1, 1);
        assert!(bucket.check_at(0).is_ok());
        assert!(bucket.check_at(0).is_err());
        bucket.refund();
        assert!(bucket.check_at(0).is_ok(), "the refund gave the token back");
        assert!(bucket.check_at(0).is_err());
    }

    #[test]
    fn concurrent_callers_never_get_more_than_the_burst() {
        let bucket = std::sync::Arc::new(RateLimiter::new(1, 50));
        let granted = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if bucket.check_at(0).is_ok() {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.load(Ordering::Relaxed), 50);
    }
}
