//! Operator configuration: one TOML file (`--config`) whose every key is also
//! a flag and an `OKRA_*` environment variable. Flags beat the file; the file
//! beats the defaults.
//!
//! Each section owns its flags, beside it: [`ServeArgs`] here for the
//! top-level keys, [`LimitsArgs`], [`RuntimeArgs`], [`OutboundArgs`],
//! [`ControlArgs`] and `QuotaArgs`. A flag's field is named after its key,
//! and [`layers`] merges the flags given over the file by key; a default is
//! written once, in its section's `Default`, and `--help` shows it from
//! there.

mod control;
pub mod layers;
mod limits;

pub use crate::guest::engine_config::{RuntimeArgs, RuntimeConfig};
pub use crate::outbound::{OutboundArgs, OutboundConfig};
pub use control::{ControlArgs, ControlConfig};
pub use control_plane::quotas::{QuotaArgs, Quotas};
pub use layers::Section;
pub use limits::LimitsArgs;

use anyhow::{Context as _, bail};
use clap::Parser;
use layers::Layers;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tenant_config::Limits;

/// The longest grace period a shutdown may give requests in flight.
const MAX_SHUTDOWN_GRACE_MS: u64 = 3_600_000;

/// Okra gateway: serves Spin apps by hostname.
#[derive(Debug, Parser)]
#[command(name = "gateway", version)]
pub struct Cli {
    /// Operator settings file (TOML); flags override it.
    #[arg(long, env = "OKRA_CONFIG")]
    pub config: Option<PathBuf>,
    /// The top-level keys' flags.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// `[limits]`.
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// `[runtime]`.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// `[outbound]`.
    #[command(flatten)]
    pub outbound: OutboundArgs,
    /// `[control]`.
    #[command(flatten)]
    pub control: ControlArgs,
    /// `[quotas]`.
    #[command(flatten)]
    pub quotas: QuotaArgs,
    /// How logs are written (not a configuration key).
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
}

impl Cli {
    /// The process's flags, with every default shown in `--help`.
    pub fn from_args() -> Self {
        layers::parse_flags(&OperatorConfig::default())
    }
}

/// The flags of the top-level keys: listeners, threads, `--app` apps and
/// their variables, peers and the graceful upgrade.
#[derive(Clone, Debug, Default, clap::Args, Serialize)]
pub struct ServeArgs {
    /// Public HTTP listener (HTTP/1.1 and h2c).
    #[arg(long, env = "OKRA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serves /metrics, /healthz and /readyz.
    #[arg(long, env = "OKRA_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Worker threads for the edge [default: number of CPUs].
    #[arg(long, env = "OKRA_THREADS")]
    pub threads: Option<usize>,
    /// Serve an app with no control plane: HOST=path/to/spin.toml (repeatable).
    #[arg(long = "app", value_name = "HOST=PATH")]
    #[serde(skip)]
    pub apps: Vec<String>,
    /// A value for the `--app` apps' variable NAME, NAME=VALUE (repeatable);
    /// beats OKRA_VARIABLE_<NAME>, which beats the manifest default.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    #[serde(skip)]
    pub vars: Vec<String>,
    /// A public listener of this cluster that self-routes balance over
    /// (repeatable) [default: this gateway's --listen].
    #[arg(long = "peer", value_name = "ADDR")]
    #[serde(skip)]
    pub peers: Vec<SocketAddr>,
    /// Take over the listening sockets of the gateway running with the same
    /// --upgrade-sock (graceful upgrade): start this one with --upgrade, then
    /// send the old one SIGQUIT; no connection is refused in between.
    #[arg(long)]
    #[serde(skip)]
    pub upgrade: bool,
    /// Where an old and a new gateway hand the listening sockets over
    /// [default: <data-dir>/upgrade.sock].
    #[arg(long, env = "OKRA_UPGRADE_SOCK")]
    pub upgrade_sock: Option<PathBuf>,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish
    /// before their guests are stopped (503), in ms; keep it below the
    /// supervisor's kill timeout.
    #[arg(long, env = "OKRA_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Add `x-request-id` to apps' responses (the id the request carried,
    /// or the one the gateway gave it); off, the gateway adds no end-to-end
    /// header an app did not set, as Spin does not.
    #[arg(long, env = "OKRA_RESPONSE_REQUEST_ID")]
    #[serde(skip)]
    pub response_request_id: bool,
}

impl Section for ServeArgs {
    const KEY: Option<&'static str> = None;
}

impl Section for RuntimeArgs {
    const KEY: Option<&'static str> = Some("runtime");
}

impl Section for OutboundArgs {
    const KEY: Option<&'static str> = Some("outbound");
}

impl Section for QuotaArgs {
    const KEY: Option<&'static str> = Some("quotas");
}

impl ServeArgs {
    /// Applies the flags that do not merge by key: the repeated `--app`,
    /// `--var` and `--peer`, `--upgrade` and `--response-request-id`.
    fn extend(&self, config: &mut OperatorConfig) -> anyhow::Result<()> {
        config.upgrade = self.upgrade;
        if self.response_request_id {
            config.response_request_id = true;
        }
        if !self.peers.is_empty() {
            config.peers = self.peers.clone();
        }
        for spec in &self.vars {
            let Some((name, value)) = spec.split_once('=') else {
                bail!("--var {spec:?}: expected NAME=VALUE");
            };
            let name = name.trim();
            if let Err(why) = tenant_config::variables::validate_variable_name(name) {
                bail!("--var {spec:?}: {name:?} is not a variable name: {why}");
            }
            config.variables.insert(name.to_string(), value.to_string());
        }
        for spec in &self.apps {
            config.apps.push(parse_app_flag(spec)?);
        }
        Ok(())
    }
}

/// An app served without the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticApp {
    /// The Host it answers, as a host key (IDNA ASCII, lowercase); `*` for any.
    pub host: String,
    /// Its `spin.toml`.
    pub manifest: PathBuf,
}

/// The merged operator configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorConfig {
    /// The public listener.
    pub listen: SocketAddr,
    /// The listener of `/metrics`, `/healthz` and `/readyz`.
    pub metrics_listen: SocketAddr,
    /// 0 means one per CPU.
    pub threads: usize,
    /// The limits tenants' guests run under unless their record sets others.
    pub limits: Limits,
    /// How the engines are sized.
    pub runtime: RuntimeConfig,
    /// Guests' outbound HTTP.
    pub outbound: OutboundConfig,
    /// Apps served without the control plane (`--app`).
    pub apps: Vec<StaticApp>,
    /// Variable values for the `--app` apps, by variable name.
    pub variables: BTreeMap<String, String>,
    /// Public listeners self-routes balance over; empty means `listen`.
    pub peers: Vec<SocketAddr>,
    /// The store, the REST API and hostnames.
    pub control: ControlConfig,
    /// What each tenant may keep in the store.
    pub quotas: Quotas,
    /// Where a graceful upgrade hands the listening sockets over; `None`
    /// means `<data_dir>/upgrade.sock`.
    pub upgrade_sock: Option<PathBuf>,
    /// How long requests in flight may take to finish at shutdown, in ms.
    pub shutdown_grace_ms: u64,
    /// Whether apps' responses carry `x-request-id`.
    pub response_request_id: bool,
    /// Whether this start takes the sockets over from a running gateway
    /// (`--upgrade`; a flag only, never in the file).
    #[serde(skip)]
    pub upgrade: bool,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            threads: 0,
            limits: Limits::default(),
            runtime: RuntimeConfig::default(),
            outbound: OutboundConfig::default(),
            apps: Vec::new(),
            variables: BTreeMap::new(),
            peers: Vec::new(),
            control: ControlConfig::default(),
            quotas: Quotas::default(),
            upgrade_sock: None,
            shutdown_grace_ms: 25_000,
            response_request_id: false,
            upgrade: false,
        }
    }
}

impl OperatorConfig {
    /// The edge's worker threads: `threads`, or one per CPU.
    pub fn edge_threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.threads
        }
    }

    /// Defaults, then the `--config` file, then flags and environment.
    pub fn from_cli(cli: Cli) -> anyhow::Result<Self> {
        let mut config = Self::layered(cli.config.as_deref(), |layers| {
            layers.overlay(&cli.serve)?;
            layers.overlay(&cli.limits)?;
            layers.overlay(&cli.runtime)?;
            layers.overlay(&cli.outbound)?;
            layers.overlay(&cli.control)?;
            layers.overlay(&cli.quotas)
        })?;
        cli.serve.extend(&mut config)?;
        cli.outbound.extend(&mut config.outbound)?;
        cli.control.extend(&mut config.control);
        config.validate()?;
        Ok(config)
    }

    /// Defaults, then `file`, then the flags `overlay` lays on: a flag
    /// replaces the key its field is named after.
    pub fn layered(
        file: Option<&Path>,
        overlay: impl FnOnce(&mut Layers) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let base = match file {
            Some(path) => Self::from_file(path)?,
            None => OperatorConfig::default(),
        };
        let mut layers = Layers::new(&base)?;
        overlay(&mut layers).context("merging the flags into the configuration")?;
        layers.build()
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config: OperatorConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for app in &mut config.apps {
            app.manifest = dir.join(&app.manifest);
            app.host = control_plane::hostnames::host_key(&app.host);
        }
        config.control.data_dir = dir.join(&config.control.data_dir);
        let outbound = &mut config.outbound;
        for path in outbound
            .extra_ca_file
            .iter_mut()
            .chain(config.runtime.compile_cache_dir.iter_mut())
            .chain(outbound.global_policy.iter_mut())
            .chain(outbound.audit_log.iter_mut())
            .chain(outbound.tenant_policies.values_mut())
        {
            *path = dir.join(&*path);
        }
        Ok(config)
    }

    /// The value of variable `name` for the `--app` apps: `--var`, then
    /// `OKRA_VARIABLE_<NAME>`.
    pub fn variable(&self, name: &str) -> Option<String> {
        self.variables
            .get(name)
            .cloned()
            .or_else(|| std::env::var(format!("OKRA_VARIABLE_{}", name.to_ascii_uppercase())).ok())
    }

    /// Every hostname the operator keeps from tenants, as host keys: the
    /// `[[apps]]` hosts and `reserved_hosts`.
    pub fn reserved_hosts(&self) -> impl Iterator<Item = String> + '_ {
        self.apps
            .iter()
            .map(|app| app.host.as_str())
            .chain(self.control.reserved_hosts.iter().map(String::as_str))
            .map(control_plane::hostnames::host_key)
    }

    /// Where a graceful upgrade hands the listening sockets over.
    pub fn upgrade_sock(&self) -> PathBuf {
        self.upgrade_sock
            .clone()
            .unwrap_or_else(|| self.control.data_dir.join("upgrade.sock"))
    }

    /// The listeners self-routes balance over.
    pub fn self_route_peers(&self) -> Vec<SocketAddr> {
        if self.peers.is_empty() {
            vec![self.listen]
        } else {
            self.peers.clone()
        }
    }

    /// Refuses settings that cannot work together, naming them.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.limits.memory_bytes > self.runtime.max_memory_bytes {
            bail!(
                "limits.memory_bytes ({}) exceeds runtime.max_memory_bytes ({}), the most any pool slot can hold; raise --max-memory-bytes or lower --memory-bytes",
                self.limits.memory_bytes,
                self.runtime.max_memory_bytes
            );
        }
        if self.control.base_domain.is_empty() || self.control.base_domain.contains(['/', ':', ' '])
        {
            bail!(
                "base_domain {:?} is not a domain name (e.g. localhost or apps.example.com)",
                self.control.base_domain
            );
        }
        self.limits
            .check()
            .map_err(|why| anyhow::anyhow!("limits.{why}"))?;
        if self.shutdown_grace_ms > MAX_SHUTDOWN_GRACE_MS {
            bail!(
                "shutdown_grace_ms ({}) may be at most {MAX_SHUTDOWN_GRACE_MS} (an hour)",
                self.shutdown_grace_ms
            );
        }
        let mut hosts = std::collections::HashSet::new();
        for app in &self.apps {
            if !hosts.insert(app.host.to_ascii_lowercase()) {
                bail!("host {:?} is given to more than one app", app.host);
            }
        }
        Ok(())
    }
}

/// `HOST=path/to/spin.toml`.
fn parse_app_flag(spec: &str) -> anyhow::Result<StaticApp> {
    let Some((host, manifest)) = spec.split_once('=') else {
        bail!(
            "--app {spec:?}: expected HOST=path/to/spin.toml, e.g. --app hello.localhost=examples/hello/spin.toml"
        );
    };
    let host = host.trim();
    if host.is_empty() || host.contains(['/', ' ', ':']) {
        bail!("--app {spec:?}: {host:?} is not a hostname (no port, scheme or path)");
    }
    Ok(StaticApp {
        // The form clients send and the snapshot matches: IDNA ASCII, lowercase.
        host: control_plane::hostnames::host_key(host),
        manifest: PathBuf::from(manifest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("gateway").chain(args.iter().copied()))
    }

    /// Every key the file may hold, as `section.key` (or `key`), with each
    /// optional one set so that it shows.
    fn file_keys() -> Vec<String> {
        let mut config = OperatorConfig {
            upgrade_sock: Some("u.sock".into()),
            ..OperatorConfig::default()
        };
        config.limits.cpu_parallelism = Some(1);
        config.limits.requests_per_second = Some(1);
        config.limits.app_requests_per_second = Some(1);
        config.runtime.compile_cache_dir = Some("cache".into());
        config.outbound.extra_ca_file = Some("ca.pem".into());
        config.outbound.global_policy = Some("global.json".into());
        config.outbound.audit_log = Some("audit.jsonl".into());
        config.control.store = Some("file:x".into());
        let toml::Value::Table(top) = toml::Value::try_from(&config).unwrap() else {
            panic!("the configuration is a table");
        };
        let sections = ["limits", "runtime", "outbound", "control", "quotas"];
        let mut keys = Vec::new();
        for (key, value) in top {
            match value {
                toml::Value::Table(section) if sections.contains(&key.as_str()) => {
                    keys.extend(section.keys().map(|k| format!("{key}.{k}")));
                }
                _ => keys.push(key),
            }
        }
        keys
    }

    #[test]
    fn every_key_of_the_file_is_also_a_flag_and_an_environment_variable() {
        use clap::CommandFactory;
        // Flags named other than their key; those without an environment
        // variable are repeatable lists.
        let renamed = BTreeMap::from([
            (
                "outbound.max_connections_per_tenant",
                "outbound-max-connections",
            ),
            ("outbound.connect_timeout_ms", "outbound-connect-timeout-ms"),
            (
                "outbound.first_byte_timeout_ms",
                "outbound-first-byte-timeout-ms",
            ),
            (
                "outbound.between_bytes_timeout_ms",
                "outbound-between-bytes-timeout-ms",
            ),
            ("outbound.max_timeout_ms", "outbound-max-timeout-ms"),
            ("outbound.idle_timeout_ms", "outbound-idle-timeout-ms"),
            ("outbound.postgres", "outbound-postgres"),
            ("outbound.extra_ca_file", "outbound-extra-ca-file"),
            ("outbound.tenant_policies", "tenant-policy"),
            ("control.api", "no-api"),
            ("control.reserved_hosts", "reserved-host"),
            ("apps", "app"),
            ("variables", "var"),
            ("peers", "peer"),
        ]);
        let repeatable = [
            "tenant-policy",
            "resolve",
            "reserved-host",
            "app",
            "var",
            "peer",
        ];
        let command = Cli::command();
        let keys = file_keys();
        assert!(keys.len() > 50, "{keys:?}");
        for key in keys {
            let last = key.rsplit('.').next().unwrap().replace('_', "-");
            let flag = renamed.get(key.as_str()).copied().unwrap_or(&last);
            let arg = command
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .unwrap_or_else(|| panic!("`{key}` has no flag --{flag}"));
            if !repeatable.contains(&flag) {
                let env = format!("OKRA_{}", flag.to_ascii_uppercase().replace('-', "_"));
                assert_eq!(
                    arg.get_env().and_then(|e| e.to_str()),
                    Some(env.as_str()),
                    "`{key}` (--{flag}) has no {env}"
                );
            }
        }
    }

    #[test]
    fn help_shows_each_default_from_the_sections_own_default() {
        use clap::CommandFactory;
        let defaults = layers::defaults_by_key(&OperatorConfig::default()).unwrap();
        assert_eq!(defaults["memory_bytes"], "134217728");
        assert_eq!(defaults["block_networks"], "private");
        assert_eq!(defaults["api_listen"], "127.0.0.1:8081");
        let command = layers::with_defaults(Cli::command(), &defaults);
        let help = |id: &str| {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("no flag for {id}"));
            arg.get_help().unwrap().to_string()
        };
        assert!(help("memory_bytes").ends_with("[default: 134217728]"));
        assert!(help("max_apps").ends_with("[default: 100]"));
        assert!(help("connect_timeout_ms").ends_with("[default: 10000]"));
        // A default the help describes in words is left as written.
        assert!(help("threads").ends_with("[default: number of CPUs]"));
        // Every key with a default has a flag whose help shows that value
        // (or, for `threads`, says it in words), so no default is written
        // twice.
        for (key, default) in &defaults {
            let help = help(key);
            if key != "threads" {
                let shown = format!("[default: {default}]");
                assert!(help.ends_with(&shown), "--help of `{key}`: {help}");
            }
        }
        // Flags are merged and shown by key, so no two sections share one.
        let keys = file_keys();
        let mut last_parts: Vec<&str> =
            keys.iter().map(|k| k.rsplit('.').next().unwrap()).collect();
        last_parts.sort_unstable();
        let before = last_parts.len();
        last_parts.dedup();
        assert_eq!(before, last_parts.len(), "a key in two sections: {keys:?}");
    }

    /// The README's `okra.toml` example, as a file.
    fn readme_example() -> String {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```toml\n# okra.toml")
            .expect("the README has its okra.toml example");
        let block = &readme[start + "```toml\n".len()..];
        block[..block.find("```").expect("the block ends")].to_string()
    }

    #[test]
    fn the_readme_example_parses_and_states_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("okra.toml");
        std::fs::write(&file, readme_example()).unwrap();
        let parsed = OperatorConfig::from_file(&file).unwrap();
        let mut expected = OperatorConfig::default();
        expected.peers = vec![expected.listen];
        expected.apps = vec![StaticApp {
            host: "hello.localhost".into(),
            manifest: dir.path().join("examples/hello/spin.toml"),
        }];
        expected.control.data_dir = dir.path().join("okra-data");
        assert_eq!(parsed, expected);
    }

    #[test]
    fn flags_override_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("okra.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1111\"\n[limits]\ncpu_time_ms = 5\n[[apps]]\nhost = \"a.localhost\"\nmanifest = \"a/spin.toml\"\n",
        )
        .unwrap();
        let c = OperatorConfig::from_cli(cli(&[
            "--config",
            file.to_str().unwrap(),
            "--cpu-time-ms",
            "7",
            "--app",
            "B.localhost=b/spin.toml",
            "--outbound-connect-timeout-ms",
            "5",
            "--max-apps",
            "3",
            "--decommit-batch-size",
            "4",
            "--compile-cache-dir",
            "/var/cache/okra",
        ]))
        .unwrap();
        assert_eq!(c.outbound.connect_timeout_ms, 5);
        assert_eq!(c.quotas.max_apps, 3);
        assert_eq!(c.runtime.decommit_batch_size, 4);
        assert_eq!(
            c.runtime.compile_cache_dir.as_deref(),
            Some(Path::new("/var/cache/okra"))
        );
        assert_eq!(c.listen.port(), 1111);
        assert_eq!(c.limits.cpu_time_ms, 7);
        assert_eq!(c.apps[0].manifest, dir.path().join("a/spin.toml"));
        assert_eq!(c.apps[1].host, "b.localhost");
        assert_eq!(c.metrics_listen.port(), 9090);
        assert_eq!(c.self_route_peers(), [c.listen]);
        // --app without --store: no store, no API.
        assert_eq!(c.control.store_url(!c.apps.is_empty()), None);
    }

    #[test]
    fn the_store_defaults_to_the_data_dir() {
        let c = OperatorConfig::from_cli(cli(&["--data-dir", "/srv/okra", "--no-api"])).unwrap();
        assert_eq!(
            c.control.store_url(false).as_deref(),
            Some("file:/srv/okra")
        );
        assert!(!c.control.api);
        let c = OperatorConfig::from_cli(cli(&["--store", "redis://127.0.0.1:1"])).unwrap();
        assert_eq!(
            c.control.store_url(true).as_deref(),
            Some("redis://127.0.0.1:1")
        );
        let e = OperatorConfig::from_cli(cli(&["--base-domain", "http://x"])).unwrap_err();
        assert!(e.to_string().contains("base_domain"), "{e}");
    }

    #[test]
    fn variables_come_from_flags_then_the_environment() {
        let c = OperatorConfig::from_cli(cli(&["--var", "api_url=http://a=b"])).unwrap();
        assert_eq!(c.variable("api_url").as_deref(), Some("http://a=b"));
        // SAFETY of the test: the name is unique to this test.
        unsafe { std::env::set_var("OKRA_VARIABLE_ONLY_IN_ENV_FOR_TEST", "from-env") };
        assert_eq!(
            c.variable("only_in_env_for_test").as_deref(),
            Some("from-env")
        );
        assert_eq!(c.variable("unset_anywhere"), None);
    }

    #[test]
    fn bad_input_is_named() {
        let e = OperatorConfig::from_cli(cli(&["--app", "nohost"])).unwrap_err();
        assert!(e.to_string().contains("HOST=path"), "{e}");
        let e = OperatorConfig::from_cli(cli(&["--memory-bytes", "999999999999"])).unwrap_err();
        assert!(e.to_string().contains("max_memory_bytes"), "{e}");
        let e = OperatorConfig::from_cli(cli(&["--app", "a=x", "--app", "A=y"])).unwrap_err();
        assert!(e.to_string().contains("more than one app"), "{e}");
        let e = OperatorConfig::from_cli(cli(&["--var", "novalue"])).unwrap_err();
        assert!(e.to_string().contains("NAME=VALUE"), "{e}");
        let e = OperatorConfig::from_cli(cli(&["--var", "Api-Url=x"])).unwrap_err();
        assert!(
            e.to_string().contains("\"Api-Url\" is not a variable name"),
            "{e}"
        );
        // TOML holds integers up to i64::MAX; a flag beyond is named.
        let e = OperatorConfig::from_cli(cli(&["--max-stored-bytes", "18446744073709551615"]))
            .unwrap_err();
        assert!(format!("{e:#}").contains("`max_stored_bytes`"), "{e:#}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = 1\n").unwrap();
        let e = OperatorConfig::from_cli(cli(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }
}
