//! A run's results as a [`Report`]: throughput, latency percentiles, status
//! and failure breakdowns and a per-second timeline. Serialises to JSON and
//! renders as text.

use crate::run::RunResult;
use crate::scenario::{HostDistribution, LoadModel, Plan};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub protocol: &'static str,
    /// "closed" or "open".
    pub model: &'static str,
    /// Open loop: the requests per second asked for.
    pub rate: Option<f64>,
    pub connections: usize,
    pub streams: usize,
    pub hosts: usize,
    pub host_distribution: String,
    pub machine: Machine,
    /// Length of the measured phase, in seconds.
    pub duration_secs: f64,
    /// Requests of the measured phase that finished, whatever their outcome.
    pub requests: u64,
    /// Responses with a 2xx or 3xx status.
    pub ok: u64,
    /// Other statuses plus requests that got no response.
    pub failed: u64,
    pub throughput_rps: f64,
    /// Over responses (any status); requests without a response have no latency.
    pub latency_us: Latency,
    pub statuses: BTreeMap<u16, u64>,
    pub failures: BTreeMap<String, u64>,
    pub timeline: Vec<SecondReport>,
    /// (percentile, µs) pairs from p0 to p99.999, for plotting.
    pub percentiles: Vec<(f64, u64)>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub os: &'static str,
    pub arch: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Serialize)]
pub struct SecondReport {
    pub second: usize,
    pub responses: u64,
    pub failed: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Percentiles the plot shows, dense towards the tail.
const PLOT_PERCENTILES: [f64; 12] = [
    0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
];

impl Report {
    pub fn new(plan: &Plan, result: &RunResult) -> Report {
        let totals = &result.totals;
        let responses: u64 = totals.statuses.values().sum();
        let no_response: u64 = totals.failures.values().sum();
        let ok: u64 = totals
            .statuses
            .iter()
            .filter(|(s, _)| (200..400).contains(*s))
            .map(|(_, n)| n)
            .sum();
        let requests = responses + no_response;
        let secs = result.elapsed.as_secs_f64();
        Report {
            target: plan.authority.clone(),
            protocol: plan.protocol.name(),
            model: match plan.model {
                LoadModel::Closed => "closed",
                LoadModel::Open { .. } => "open",
            },
            rate: match plan.model {
                LoadModel::Closed => None,
                LoadModel::Open { rate } => Some(rate),
            },
            connections: plan.connections,
            streams: plan.streams,
            hosts: plan.hosts.len(),
            host_distribution: match plan.distribution {
                HostDistribution::Uniform => "uniform".to_string(),
                HostDistribution::Zipf { exponent } => format!("zipf(s={exponent})"),
            },
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
                os: std::env::consts::OS,
                arch: std::env::consts::ARCH,
            },
            duration_secs: secs,
            requests,
            ok,
            failed: requests - ok,
            throughput_rps: if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            },
            latency_us: latency(&totals.latency),
            statuses: totals.statuses.clone(),
            failures: totals.failures.clone(),
            timeline: result
                .seconds
                .iter()
                .enumerate()
                .map(|(second, s)| SecondReport {
                    second,
                    responses: s.latency.len(),
                    failed: s.failed,
                    p50_us: s.latency.value_at_quantile(0.5),
                    p99_us: s.latency.value_at_quantile(0.99),
                    max_us: s.latency.max(),
                })
                .collect(),
            percentiles: PLOT_PERCENTILES
                .iter()
                .map(|p| (*p, totals.latency.value_at_quantile(p / 100.0)))
                .collect(),
        }
    }

    /// A wrk-like summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let model = match self.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            out,
            "{} {} over {} connection(s) x {} stream(s), {model}, {} host(s) {}",
            self.target,
            self.protocol,
            self.connections,
            self.streams,
            self.hosts,
            self.host_distribution
        );
        let _ = writeln!(
            out,
            "{} requests in {:.2}s: {:.1} req/s, {} ok, {} failed",
            self.requests, self.duration_secs, self.throughput_rps, self.ok, self.failed
        );
        let l = &self.latency_us;
        let _ = writeln!(
            out,
            "latency  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {}, stdev {})",
            micros(l.p50),
            micros(l.p90),
            micros(l.p99),
            micros(l.p999),
            micros(l.max),
            micros(l.mean as u64),
            micros(l.stdev as u64),
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(out, "statuses {}", statuses.join(", "));
        for (label, n) in &self.failures {
            let _ = writeln!(out, "failure  {label}: {n}");
        }
        out
    }
}

fn latency(h: &Histogram<u64>) -> Latency {
    Latency {
        min: h.min(),
        mean: h.mean(),
        stdev: h.stdev(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// `850µs`, `4.21ms`, `1.50s`.
pub fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}
