//! Recording outcomes. Each worker records into its own [`WorkerRecorder`]
//! (an HDR histogram in microseconds, status and failure counts) without
//! locks; once per second of the run it hands that second's histogram to the
//! shared [`Timeline`], and at the end the workers' totals are merged.
//! Live counters feed the progress line.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest latency the histograms hold: an hour, in µs. Longer ones saturate.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in µs. Callers pass 2 or 3 significant figures, which
/// hdrhistogram accepts with these bounds, so creating it cannot fail.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).expect("valid histogram bounds")
}

/// What happened to one request.
pub enum Outcome {
    Status(u16),
    Failed(String),
}

/// One second of the measured phase, across every worker.
pub struct Second {
    pub latency: Histogram<u64>,
    pub failed: u64,
}

/// State every worker shares.
pub struct Timeline {
    /// Start of the measured phase; the warm-up comes before it.
    pub measure_from: Instant,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    seconds: Mutex<Vec<Second>>,
}

impl Timeline {
    pub fn new(measure_from: Instant) -> Timeline {
        Timeline {
            measure_from,
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            seconds: Mutex::new(Vec::new()),
        }
    }

    fn add_second(&self, index: usize, latency: &Histogram<u64>, failed: u64) {
        let mut seconds = self.seconds.lock().expect("timeline lock");
        while seconds.len() <= index {
            seconds.push(Second {
                latency: histogram(2),
                failed: 0,
            });
        }
        let second = &mut seconds[index];
        second.latency.add(latency).expect("same histogram bounds");
        second.failed += failed;
    }

    pub fn into_seconds(self) -> Vec<Second> {
        self.seconds.into_inner().expect("timeline lock")
    }
}

/// One worker's recordings.
pub struct WorkerRecorder {
    timeline: Arc<Timeline>,
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub failures: BTreeMap<String, u64>,
    second: usize,
    second_latency: Histogram<u64>,
    second_failed: u64,
}

impl WorkerRecorder {
    pub fn new(timeline: Arc<Timeline>) -> Self {
        WorkerRecorder {
            timeline,
            latency: histogram(3),
            statuses: BTreeMap::new(),
            failures: BTreeMap::new(),
            second: 0,
            second_latency: histogram(2),
            second_failed: 0,
        }
    }

    /// Records a measured request that was due (open loop) or sent (closed
    /// loop) at `from` and finished at `to`.
    pub fn record(&mut self, from: Instant, to: Instant, outcome: Outcome) {
        let second = from
            .saturating_duration_since(self.timeline.measure_from)
            .as_secs() as usize;
        if second != self.second {
            self.flush_second();
            self.second = second;
        }
        self.timeline.completed.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Status(status) => {
                let micros = micros(to.duration_since(from));
                self.latency.saturating_record(micros);
                self.second_latency.saturating_record(micros);
                *self.statuses.entry(status).or_default() += 1;
                if !(200..400).contains(&status) {
                    self.count_failure();
                }
            }
            Outcome::Failed(label) => {
                *self.failures.entry(label).or_default() += 1;
                self.count_failure();
            }
        }
    }

    fn count_failure(&mut self) {
        self.second_failed += 1;
        self.timeline.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn flush_second(&mut self) {
        if !self.second_latency.is_empty() || self.second_failed > 0 {
            self.timeline
                .add_second(self.second, &self.second_latency, self.second_failed);
            self.second_latency.reset();
            self.second_failed = 0;
        }
    }

    /// Hands the last partial second to the timeline.
    pub fn finish(mut self) -> WorkerTotals {
        self.flush_second();
        WorkerTotals {
            latency: self.latency,
            statuses: self.statuses,
            failures: self.failures,
        }
    }
}

/// What a worker recorded over the whole measured phase.
pub struct WorkerTotals {
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub failures: BTreeMap<String, u64>,
}

impl WorkerTotals {
    pub fn empty() -> WorkerTotals {
        WorkerTotals {
            latency: histogram(3),
            statuses: BTreeMap::new(),
            failures: BTreeMap::new(),
        }
    }

    pub fn merge(&mut self, other: WorkerTotals) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_and_split_into_seconds() {
        let start = Instant::now();
        let timeline = Arc::new(Timeline::new(start + Duration::from_secs(1)));
        let mut w = WorkerRecorder::new(timeline.clone());
        let at = |s: f64| start + Duration::from_secs_f64(1.0 + s);
        w.record(
            at(0.1),
            at(0.1) + Duration::from_millis(2),
            Outcome::Status(200),
        );
        w.record(
            at(0.5),
            at(0.5) + Duration::from_millis(4),
            Outcome::Status(503),
        );
        w.record(at(2.2), at(2.2), Outcome::Failed("timeout".into()));
        let totals = w.finish();
        assert_eq!(totals.latency.len(), 2);
        assert_eq!(totals.statuses, BTreeMap::from([(200, 1), (503, 1)]));
        assert_eq!(
            totals.failures,
            BTreeMap::from([("timeout".to_string(), 1)])
        );
        assert_eq!(timeline.completed.load(Ordering::Relaxed), 3);
        assert_eq!(timeline.failed.load(Ordering::Relaxed), 2);
        let seconds = Arc::into_inner(timeline).unwrap().into_seconds();
        assert_eq!(seconds.len(), 3);
        assert_eq!((seconds[0].latency.len(), seconds[0].failed), (2, 1));
        assert_eq!((seconds[1].latency.len(), seconds[1].failed), (0, 0));
        assert_eq!((seconds[2].latency.len(), seconds[2].failed), (0, 1));
        assert!(seconds[0].latency.max() >= 4000);
    }
}
