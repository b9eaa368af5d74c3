//! Command-line flags and how they combine with a scenario file: a flag
//! overrides the file's value, and request flags replace the file's mix.

use crate::scenario::{HostsFile, Plan, Protocol, RequestFile, ScenarioFile};
use anyhow::{Context as _, bail};
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Okra's load generator: closed- or open-loop HTTP/1.1 and HTTP/2 load over
/// many hostnames, reported as HDR latency percentiles, JSON and SVG plots.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    /// A TOML scenario file; flags override what it says.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Where to send requests, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    /// Connections to open.
    #[arg(short, long)]
    pub connections: Option<usize>,
    /// HTTP/2: requests in flight at once per connection.
    #[arg(long)]
    pub streams: Option<usize>,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Length of the measured phase, e.g. 10s.
    #[arg(short, long, conflicts_with = "requests")]
    pub duration: Option<String>,
    /// Stop after this many measured requests instead of after a duration.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Load to send, unmeasured, before measuring, e.g. 2s.
    #[arg(long)]
    pub warmup: Option<String>,
    /// Give up on a request after this long (default 10s).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Seed for host and request choices.
    #[arg(long)]
    pub seed: Option<u64>,
    /// A Host to send; repeat for several.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Numbered hosts: a pattern with {i}, e.g. t{i}.localhost, with --host-count.
    #[arg(long, requires = "host_count")]
    pub host_pattern: Option<String>,
    #[arg(long, requires = "host_pattern")]
    pub host_count: Option<usize>,
    /// Choose hosts Zipf-distributed with this exponent instead of uniformly.
    #[arg(long)]
    pub zipf: Option<f64>,
    /// Send this path (replaces the scenario's request mix).
    #[arg(long)]
    pub path: Option<String>,
    #[arg(long, requires = "path")]
    pub method: Option<String>,
    /// A request header, "name: value"; repeat for several.
    #[arg(long = "header", requires = "path")]
    pub headers: Vec<String>,
    #[arg(long, requires = "path")]
    pub body: Option<String>,
    /// Write the report as JSON to this file ("-" for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write SVG plots into this directory.
    #[arg(long)]
    pub plot_dir: Option<PathBuf>,
    /// Title for the plots.
    #[arg(long, default_value = "loadtest")]
    pub title: String,
    /// No progress line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Threads for the load generator's runtime (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The share of requests (0 to 1) that may fail before loadtest exits
    /// with 1 after its report; 0 (the default) fails the run on any
    /// failure, 1 never does.
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub max_failed_ratio: f64,
}

/// A number from 0 to 1.
fn ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?} is not a number from 0 to 1")),
    }
}

impl Cli {
    /// The scenario file (if any) with every flag applied, checked.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let mut s = match &self.scenario {
            Some(path) => ScenarioFile::read(path)?,
            None => ScenarioFile::default(),
        };
        override_with(&mut s.target, &self.target);
        override_with(&mut s.protocol, &self.protocol);
        override_with(&mut s.connections, &self.connections);
        override_with(&mut s.streams, &self.streams);
        override_with(&mut s.rate, &self.rate);
        override_with(&mut s.warmup, &self.warmup);
        override_with(&mut s.timeout, &self.timeout);
        override_with(&mut s.seed, &self.seed);
        if self.duration.is_some() {
            s.duration = self.duration.clone();
            s.requests = None;
        }
        if self.requests.is_some() {
            s.requests = self.requests;
            s.duration = None;
        }
        self.apply_hosts(&mut s);
        if let Some(path) = &self.path {
            s.requests_mix = vec![RequestFile {
                method: self.method.clone().unwrap_or_else(|| "GET".to_string()),
                path: path.clone(),
                weight: 1,
                headers: self
                    .headers
                    .iter()
                    .map(|h| parse_header(h))
                    .collect::<anyhow::Result<BTreeMap<_, _>>>()?,
                body: self.body.clone().unwrap_or_default(),
            }];
        }
        Plan::from_scenario(s)
    }

    fn apply_hosts(&self, s: &mut ScenarioFile) {
        let hosts = s.hosts.get_or_insert_with(HostsFile::default);
        if !self.hosts.is_empty() {
            hosts.names = self.hosts.clone();
            hosts.pattern = None;
            hosts.count = None;
        }
        if self.host_pattern.is_some() {
            hosts.names.clear();
            hosts.pattern = self.host_pattern.clone();
            hosts.count = self.host_count;
        }
        if let Some(exponent) = self.zipf {
            hosts.distribution = Some("zipf".to_string());
            hosts.zipf_exponent = Some(exponent);
        }
    }
}

fn override_with<T: Clone>(field: &mut Option<T>, flag: &Option<T>) {
    if flag.is_some() {
        field.clone_from(flag);
    }
}

fn parse_header(text: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = text
        .split_once(':')
        .with_context(|| format!("header {text:?} is not \"name: value\""))?;
    if name.trim().is_empty() {
        bail!("header {text:?} has no name");
    }
    Ok((name.trim().to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{HostDistribution, Stop};
    use std::time::Duration;

    #[test]
    fn flags_override_the_scenario_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "target = \"http://127.0.0.1:1\"\nconnections = 2\nduration = \"5s\"\n\
             [hosts]\nnames = [\"a\", \"b\"]\n[[request]]\npath = \"/x\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "loadtest",
            "--scenario",
            file.to_str().unwrap(),
            "-c",
            "9",
            "-n",
            "100",
            "--zipf",
            "1.1",
            "--path",
            "/y",
            "--header",
            "x-a: 1",
        ]);
        let plan = cli.plan().unwrap();
        assert_eq!(plan.connections, 9);
        assert_eq!(plan.stop, Stop::Requests(100));
        assert_eq!(plan.hosts, ["a", "b"]);
        assert_eq!(plan.distribution, HostDistribution::Zipf { exponent: 1.1 });
        assert_eq!(plan.mix.len(), 1);
        assert_eq!(plan.mix[0].path, "/y");
        assert_eq!(plan.mix[0].headers[0].0, "x-a");

        let cli = Cli::parse_from(["loadtest", "--scenario", file.to_str().unwrap()]);
        let plan = cli.plan().unwrap();
        assert_eq!(plan.stop, Stop::After(Duration::from_secs(5)));
        assert_eq!(plan.mix[0].path, "/x");
    }

    #[test]
    fn a_header_without_a_colon_is_refused() {
        let cli = Cli::parse_from([
            "loadtest", "--target", "http://x", "--path", "/", "--header", "oops",
        ]);
        assert!(format!("{:#}", cli.plan().unwrap_err()).contains("\"oops\""));
    }
}
