//! Hands out tickets: permission to send one more request, when it is due
//! and whether it belongs to the measured phase. Closed loop: a ticket is due
//! at once. Open loop: ticket `i` is due at `start + i / rate`, whoever takes
//! it, so a request delayed by a busy worker is measured from when it was due
//! (no coordinated omission).

use crate::scenario::{LoadModel, Plan, Stop};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Ticket {
    /// Open loop: when the request is due. Closed loop: `None`, send now.
    pub due: Option<Instant>,
    /// False during the warm-up.
    pub measured: bool,
}

pub struct Pacer {
    model: LoadModel,
    stop: Stop,
    start: Instant,
    measure_from: Instant,
    /// Open loop: tickets due during the warm-up.
    warmup_tickets: u64,
    issued: AtomicU64,
}

impl Pacer {
    pub fn new(plan: &Plan, start: Instant) -> Pacer {
        let warmup_tickets = match plan.model {
            LoadModel::Open { rate } => (plan.warmup.as_secs_f64() * rate).ceil() as u64,
            LoadModel::Closed => 0,
        };
        Pacer {
            model: plan.model,
            stop: plan.stop,
            start,
            measure_from: start + plan.warmup,
            warmup_tickets,
            issued: AtomicU64::new(0),
        }
    }

    pub fn measure_from(&self) -> Instant {
        self.measure_from
    }

    /// The next ticket, or `None` once the run is over.
    pub fn next(&self) -> Option<Ticket> {
        match self.model {
            LoadModel::Closed => {
                let now = Instant::now();
                if now < self.measure_from {
                    return Some(Ticket {
                        due: None,
                        measured: false,
                    });
                }
                let more = match self.stop {
                    Stop::After(d) => now < self.measure_from + d,
                    Stop::Requests(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
                };
                more.then_some(Ticket {
                    due: None,
                    measured: true,
                })
            }
            LoadModel::Open { rate } => {
                let i = self.issued.fetch_add(1, Ordering::Relaxed);
                let due = self.start + Duration::from_secs_f64(i as f64 / rate);
                let measured = i >= self.warmup_tickets;
                let more = match self.stop {
                    Stop::After(d) => due < self.measure_from + d,
                    Stop::Requests(n) => i < self.warmup_tickets + n,
                };
                more.then_some(Ticket {
                    due: Some(due),
                    measured,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ScenarioFile;

    fn plan(rate: Option<f64>, requests: u64, warmup: &str) -> Plan {
        Plan::from_scenario(ScenarioFile {
            target: Some("http://127.0.0.1:1".into()),
            rate,
            requests: Some(requests),
            warmup: Some(warmup.into()),
            ..ScenarioFile::default()
        })
        .unwrap()
    }

    #[test]
    fn open_loop_tickets_follow_the_rate_and_count_after_the_warmup() {
        let start = Instant::now();
        let pacer = Pacer::new(&plan(Some(100.0), 5, "30ms"), start);
        let tickets: Vec<_> = std::iter::from_fn(|| pacer.next()).collect();
        // 3 warm-up tickets (0, 10 and 20 ms), then exactly 5 measured ones.
        assert_eq!(tickets.len(), 8);
        assert_eq!(tickets.iter().filter(|t| t.measured).count(), 5);
        assert!(tickets[..3].iter().all(|t| !t.measured));
        let offsets: Vec<u128> = tickets
            .iter()
            .map(|t| (t.due.unwrap() - start).as_millis())
            .collect();
        assert_eq!(offsets, [0, 10, 20, 30, 40, 50, 60, 70]);
    }

    #[test]
    fn closed_loop_hands_out_exactly_the_requested_count() {
        let pacer = Pacer::new(&plan(None, 7, "0s"), Instant::now());
        let tickets: Vec<_> = std::iter::from_fn(|| pacer.next()).collect();
        assert_eq!(tickets.len(), 7);
        assert!(tickets.iter().all(|t| t.measured && t.due.is_none()));
    }
}
