//! What a run does, as a scenario file says it: the target, the protocol, the
//! load model, the hostnames and the request mix. [`ScenarioFile`] is the TOML
//! as written (every field optional, so flags can fill or override it);
//! [`Plan`] is the checked, complete description a run executes.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A scenario file. Durations are humantime strings ("10s", "500ms", "2m").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub target: Option<String>,
    pub protocol: Option<Protocol>,
    pub connections: Option<usize>,
    /// HTTP/2 only: requests in flight at once on each connection.
    pub streams: Option<usize>,
    /// Requests per second for an open-loop run; absent means closed loop.
    pub rate: Option<f64>,
    pub duration: Option<String>,
    pub requests: Option<u64>,
    pub warmup: Option<String>,
    pub timeout: Option<String>,
    pub seed: Option<u64>,
    pub hosts: Option<HostsFile>,
    #[serde(default, rename = "request")]
    pub requests_mix: Vec<RequestFile>,
}

/// `[hosts]`: either `names`, or `pattern` with `{i}` and `count`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsFile {
    #[serde(default)]
    pub names: Vec<String>,
    pub pattern: Option<String>,
    pub count: Option<usize>,
    /// "uniform" (the default) or "zipf".
    pub distribution: Option<String>,
    /// The Zipf exponent s (default 1.0).
    pub zipf_exponent: Option<f64>,
}

/// One `[[request]]` of the mix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFile {
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn default_method() -> String {
    "GET".to_string()
}

fn default_weight() -> u32 {
    1
}

impl ScenarioFile {
    pub fn read(path: &Path) -> anyhow::Result<ScenarioFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the scenario {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing the scenario {}", path.display()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive: one request at a time per connection.
    Http1,
    /// HTTP/2 over cleartext (h2c, prior knowledge).
    Http2,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
        }
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadModel {
    /// Every worker sends its next request as soon as the last one is answered.
    Closed,
    /// Requests are due at a constant rate; latency counts from when each was due.
    Open { rate: f64 },
}

/// When the measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HostDistribution {
    Uniform,
    Zipf { exponent: f64 },
}

/// One request of the mix, ready to send.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    pub path: String,
    pub weight: u32,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// A complete, checked run description.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `host:port` to connect to.
    pub authority: String,
    pub protocol: Protocol,
    pub connections: usize,
    pub streams: usize,
    pub model: LoadModel,
    pub stop: Stop,
    pub warmup: Duration,
    pub timeout: Duration,
    pub hosts: Vec<String>,
    pub distribution: HostDistribution,
    pub mix: Vec<RequestSpec>,
    pub seed: u64,
}

impl Plan {
    /// Workers that may have a request in flight at once.
    pub fn workers(&self) -> usize {
        match self.protocol {
            Protocol::Http1 => self.connections,
            Protocol::Http2 => self.connections * self.streams,
        }
    }

    /// Checks a scenario (already merged with the flags) and completes it with defaults.
    pub fn from_scenario(s: ScenarioFile) -> anyhow::Result<Plan> {
        let target = s
            .target
            .context("no target: give --target or `target` in the scenario")?;
        let authority = target_authority(&target)?;
        let connections = s.connections.unwrap_or(32);
        let streams = s.streams.unwrap_or(1);
        if connections == 0 || streams == 0 {
            bail!("connections and streams must be at least 1");
        }
        let model = match s.rate {
            None => LoadModel::Closed,
            Some(rate) if rate > 0.0 && rate.is_finite() => LoadModel::Open { rate },
            Some(rate) => {
                bail!("rate must be a positive number of requests per second, not {rate}")
            }
        };
        let stop = match (s.requests, &s.duration) {
            (Some(_), Some(_)) => bail!("give either a duration or a request count, not both"),
            (Some(0), None) => bail!("requests must be at least 1"),
            (Some(n), None) => Stop::Requests(n),
            (None, Some(d)) => Stop::After(duration("duration", d)?),
            (None, None) => Stop::After(Duration::from_secs(10)),
        };
        let warmup = s
            .warmup
            .as_deref()
            .map_or(Ok(Duration::ZERO), |d| duration("warmup", d))?;
        let timeout = s
            .timeout
            .as_deref()
            .map_or(Ok(Duration::from_secs(10)), |d| duration("timeout", d))?;
        let (hosts, distribution) = hosts(s.hosts.unwrap_or_default(), &authority)?;
        let mix = if s.requests_mix.is_empty() {
            vec![request_spec(RequestFile {
                method: default_method(),
                path: "/".to_string(),
                weight: 1,
                headers: BTreeMap::new(),
                body: String::new(),
            })?]
        } else {
            s.requests_mix
                .into_iter()
                .map(request_spec)
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        if mix.iter().all(|r| r.weight == 0) {
            bail!("every request in the mix has weight 0");
        }
        Ok(Plan {
            authority,
            protocol: s.protocol.unwrap_or(Protocol::Http1),
            connections,
            streams,
            model,
            stop,
            warmup,
            timeout,
            hosts,
            distribution,
            mix,
            seed: s.seed.unwrap_or(1),
        })
    }
}

fn duration(field: &str, text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("{field} {text:?} is not a duration like 10s or 500ms"))
}

/// `http://host:port[/]` → `host:port` (port 80 when absent).
fn target_authority(target: &str) -> anyhow::Result<String> {
    let uri: http::Uri = target
        .parse()
        .with_context(|| format!("target {target:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            bail!("target {target:?}: only http:// targets are supported, not {other}://")
        }
        None => bail!("target {target:?} needs a scheme, like http://127.0.0.1:8080"),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        bail!("target {target:?} must not have a path; put paths in the request mix");
    }
    let authority = uri
        .authority()
        .with_context(|| format!("target {target:?} has no host"))?;
    Ok(match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{}:80", authority.host()),
    })
}

fn hosts(file: HostsFile, authority: &str) -> anyhow::Result<(Vec<String>, HostDistribution)> {
    let names = match (file.names.is_empty(), file.pattern, file.count) {
        (false, None, None) => file.names,
        (true, Some(pattern), count) => {
            if !pattern.contains("{i}") {
                bail!("host pattern {pattern:?} has no {{i}} to number the hosts");
            }
            let count = count.context("a host pattern needs a count")?;
            if count == 0 {
                bail!("host count must be at least 1");
            }
            (0..count)
                .map(|i| pattern.replace("{i}", &i.to_string()))
                .collect()
        }
        (true, None, None) => vec![authority.to_string()],
        (true, None, Some(_)) => bail!("a host count needs a pattern with {{i}}"),
        (false, _, _) => bail!("give host names or a host pattern, not both"),
    };
    for name in &names {
        HeaderValue::from_str(name)
            .with_context(|| format!("host {name:?} is not a valid Host header"))?;
    }
    let distribution = match file.distribution.as_deref() {
        None | Some("uniform") => {
            if file.zipf_exponent.is_some() {
                bail!("zipf_exponent is set but the distribution is not zipf");
            }
            HostDistribution::Uniform
        }
        Some("zipf") => {
            let exponent = file.zipf_exponent.unwrap_or(1.0);
            if !(exponent > 0.0 && exponent.is_finite()) {
                bail!("zipf_exponent must be positive, not {exponent}");
            }
            HostDistribution::Zipf { exponent }
        }
        Some(other) => bail!("host distribution {other:?} is neither uniform nor zipf"),
    };
    Ok((names, distribution))
}

fn request_spec(r: RequestFile) -> anyhow::Result<RequestSpec> {
    let method = Method::from_bytes(r.method.as_bytes())
        .with_context(|| format!("{:?} is not an HTTP method", r.method))?;
    if !r.path.starts_with('/') {
        bail!("request path {:?} must start with /", r.path);
    }
    r.path
        .parse::<http::uri::PathAndQuery>()
        .with_context(|| format!("request path {:?} is not a valid path", r.path))?;
    let headers = r
        .headers
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("{name:?} is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .with_context(|| format!("header {name}: {value:?} is not a header value"))?;
            Ok((name, value))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(RequestSpec {
        method,
        path: r.path,
        weight: r.weight,
        headers,
        body: Bytes::from(r.body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(toml_text: &str) -> anyhow::Result<Plan> {
        Plan::from_scenario(toml::from_str(toml_text)?)
    }

    #[test]
    fn a_full_scenario_resolves() {
        let p = plan(
            r#"
            target = "http://127.0.0.1:8080"
            protocol = "http2"
            connections = 4
            streams = 8
            rate = 500
            requests = 1000
            warmup = "2s"
            [hosts]
            pattern = "t{i}.localhost"
            count = 3
            distribution = "zipf"
            zipf_exponent = 1.2
            [[request]]
            path = "/a"
            weight = 3
            [[request]]
            method = "POST"
            path = "/b?x=1"
            headers = { "content-type" = "text/plain" }
            body = "hi"
            "#,
        )
        .unwrap();
        assert_eq!(p.authority, "127.0.0.1:8080");
        assert_eq!(p.workers(), 32);
        assert_eq!(p.model, LoadModel::Open { rate: 500.0 });
        assert_eq!(p.stop, Stop::Requests(1000));
        assert_eq!(p.warmup, Duration::from_secs(2));
        assert_eq!(p.hosts, ["t0.localhost", "t1.localhost", "t2.localhost"]);
        assert_eq!(p.distribution, HostDistribution::Zipf { exponent: 1.2 });
        assert_eq!(p.mix.len(), 2);
        assert_eq!(p.mix[1].method, Method::POST);
        assert_eq!(p.mix[1].body, "hi");
    }

    #[test]
    fn defaults_are_a_closed_ten_second_run_on_the_targets_host() {
        let p = plan("target = \"http://localhost\"").unwrap();
        assert_eq!(p.authority, "localhost:80");
        assert_eq!(p.hosts, ["localhost:80"]);
        assert_eq!(p.model, LoadModel::Closed);
        assert_eq!(p.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(p.mix[0].path, "/");
    }

    #[test]
    fn bad_scenarios_name_what_is_wrong() {
        let cases = [
            ("", "no target"),
            ("target = \"https://x\"", "only http://"),
            ("target = \"http://x/p\"", "must not have a path"),
            ("target = \"http://x\"\nrate = -1", "rate must be"),
            (
                "target = \"http://x\"\nduration = \"soon\"",
                "duration \"soon\"",
            ),
            (
                "target = \"http://x\"\nrequests = 5\nduration = \"1s\"",
                "not both",
            ),
            (
                "target = \"http://x\"\n[hosts]\npattern = \"t.localhost\"\ncount = 2",
                "no {i}",
            ),
            (
                "target = \"http://x\"\n[hosts]\nnames = [\"a\"]\ndistribution = \"pareto\"",
                "pareto",
            ),
            (
                "target = \"http://x\"\n[[request]]\npath = \"nope\"",
                "must start with /",
            ),
            (
                "target = \"http://x\"\n[[request]]\npath = \"/\"\nweight = 0",
                "weight 0",
            ),
            ("target = \"http://x\"\nconections = 3", "unknown field"),
        ];
        for (text, want) in cases {
            let err = match toml::from_str::<ScenarioFile>(text) {
                Ok(s) => format!("{:#}", Plan::from_scenario(s).unwrap_err()),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_shipped_scenarios_resolve() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut read = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let plan = Plan::from_scenario(ScenarioFile::read(&path).unwrap());
            assert!(plan.is_ok(), "{}: {:#}", path.display(), plan.unwrap_err());
            read += 1;
        }
        assert!(read > 0, "no scenarios in {}", dir.display());
    }
}
