//! Operator configuration: one TOML file (`--config`) whose every key is also
//! a flag and an `OKRA_*` environment variable. Flags beat the file; the file
//! beats the defaults.

use crate::guest::engine::RuntimeConfig;
use crate::outbound::OutboundConfig;
use anyhow::{Context as _, bail};
use clap::Parser;
use control_plane::quotas::Quotas;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tenant_config::Limits;

/// Okra gateway: serves Spin apps by hostname.
#[derive(Debug, Parser)]
#[command(name = "gateway", version)]
pub struct Cli {
    /// Operator settings file (TOML); flags override it.
    #[arg(long, env = "OKRA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Public HTTP listener (HTTP/1.1 and h2c) [default: 127.0.0.1:8080].
    #[arg(long, env = "OKRA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serves /metrics, /healthz and /readyz [default: 127.0.0.1:9090].
    #[arg(long, env = "OKRA_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve an app with no control plane: HOST=path/to/spin.toml (repeatable).
    #[arg(long = "app", value_name = "HOST=PATH")]
    pub apps: Vec<String>,
    /// Worker threads for the edge [default: number of CPUs].
    #[arg(long, env = "OKRA_THREADS")]
    pub threads: Option<usize>,
    /// Per-instance memory limit in bytes [default: 134217728].
    #[arg(long, env = "OKRA_MEMORY_BYTES")]
    pub memory_bytes: Option<u64>,
    /// Wall-clock limit per request in ms [default: 30000].
    #[arg(long, env = "OKRA_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Guest CPU time per request in ms [default: 10000].
    #[arg(long, env = "OKRA_CPU_TIME_MS")]
    pub cpu_time_ms: Option<u64>,
    /// Largest request body in bytes [default: 10485760].
    #[arg(long, env = "OKRA_MAX_REQUEST_BODY_BYTES")]
    pub max_request_body_bytes: Option<u64>,
    /// Requests in flight per tenant [default: 100].
    #[arg(long, env = "OKRA_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<u32>,
    /// A tenant's CPU-bound guests that may run at once [default: half the edge threads, at least 1].
    #[arg(long, env = "OKRA_CPU_PARALLELISM")]
    pub cpu_parallelism: Option<u32>,
    /// Requests per second per tenant, all apps together (429 beyond) [default: unlimited].
    #[arg(long, env = "OKRA_REQUESTS_PER_SECOND")]
    pub requests_per_second: Option<u32>,
    /// Requests per second per app (429 beyond) [default: unlimited].
    #[arg(long, env = "OKRA_APP_REQUESTS_PER_SECOND")]
    pub app_requests_per_second: Option<u32>,
    /// Pool slots per engine: component instances alive at once [default: 1000].
    #[arg(long, env = "OKRA_MAX_INSTANCES")]
    pub max_instances: Option<u32>,
    /// Largest linear memory any instance may reserve, in bytes [default: 268435456].
    #[arg(long, env = "OKRA_MAX_MEMORY_BYTES")]
    pub max_memory_bytes: Option<u64>,
    /// Epoch tick in ms [default: 10].
    #[arg(long, env = "OKRA_EPOCH_TICK_MS")]
    pub epoch_tick_ms: Option<u64>,
    /// Bytes of each linear memory a freed pool slot keeps mapped and resets
    /// in place; 0 hands it all back with madvise [default: 4194304].
    #[arg(long, env = "OKRA_MEMORY_KEEP_RESIDENT_BYTES")]
    pub memory_keep_resident_bytes: Option<u64>,
    /// Empty pool slots kept warm for reuse by the same component [default: 100].
    #[arg(long, env = "OKRA_MAX_UNUSED_WARM_SLOTS")]
    pub max_unused_warm_slots: Option<u32>,
    /// The same as --memory-keep-resident-bytes, for tables [default: 65536].
    #[arg(long, env = "OKRA_TABLE_KEEP_RESIDENT_BYTES")]
    pub table_keep_resident_bytes: Option<u64>,
    /// Freed pool slots whose memory is handed back in one batch of madvise calls [default: 1].
    #[arg(long, env = "OKRA_DECOMMIT_BATCH_SIZE")]
    pub decommit_batch_size: Option<u32>,
    /// Where compiled components are kept across restarts [default: <data-dir>/cache/compiled
    /// with a store, none without].
    #[arg(long, env = "OKRA_COMPILE_CACHE_DIR")]
    pub compile_cache_dir: Option<PathBuf>,
    /// Size of the compile cache before the least recently used entries go [default: 536870912].
    #[arg(long, env = "OKRA_COMPILE_CACHE_MAX_BYTES")]
    pub compile_cache_max_bytes: Option<u64>,
    /// Networks guests may never reach: `private`, `none` or CIDRs, comma-separated [default: private].
    #[arg(long, env = "OKRA_BLOCK_NETWORKS", value_delimiter = ',')]
    pub block_networks: Option<Vec<String>>,
    /// Pin a name for outbound requests, HOST=IP[,IP...], like curl --resolve (repeatable).
    #[arg(long = "resolve", value_name = "HOST=IP")]
    pub resolve: Vec<String>,
    /// Open outbound connections per tenant [default: 100].
    #[arg(long, env = "OKRA_OUTBOUND_MAX_CONNECTIONS")]
    pub outbound_max_connections: Option<u32>,
    /// Outbound connect timeout when the guest sets none, in ms [default: 10000].
    #[arg(long, env = "OKRA_OUTBOUND_CONNECT_TIMEOUT_MS")]
    pub outbound_connect_timeout_ms: Option<u64>,
    /// Outbound first-byte timeout when the guest sets none, in ms [default: 30000].
    #[arg(long, env = "OKRA_OUTBOUND_FIRST_BYTE_TIMEOUT_MS")]
    pub outbound_first_byte_timeout_ms: Option<u64>,
    /// Outbound between-bytes timeout when the guest sets none, in ms [default: 30000].
    #[arg(long, env = "OKRA_OUTBOUND_BETWEEN_BYTES_TIMEOUT_MS")]
    pub outbound_between_bytes_timeout_ms: Option<u64>,
    /// The longest a guest may ask for, for each outbound timeout, in ms [default: 60000].
    #[arg(long, env = "OKRA_OUTBOUND_MAX_TIMEOUT_MS")]
    pub outbound_max_timeout_ms: Option<u64>,
    /// How long an idle pooled outbound connection is kept, in ms [default: 90000].
    #[arg(long, env = "OKRA_OUTBOUND_IDLE_TIMEOUT_MS")]
    pub outbound_idle_timeout_ms: Option<u64>,
    /// PEM file of CA certificates outbound TLS trusts besides the webpki roots.
    #[arg(long, env = "OKRA_OUTBOUND_EXTRA_CA_FILE")]
    pub outbound_extra_ca_file: Option<PathBuf>,
    /// Operator-wide outbound policy file (okra.json form).
    #[arg(long, env = "OKRA_GLOBAL_POLICY")]
    pub global_policy: Option<PathBuf>,
    /// A tenant's outbound policy file, TENANT=PATH (repeatable; static apps are tenant `local`).
    #[arg(long = "tenant-policy", value_name = "TENANT=PATH")]
    pub tenant_policies: Vec<String>,
    /// Append outbound audit records (JSON lines) to this file instead of the log.
    #[arg(long, env = "OKRA_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// A value for the `--app` apps' variable NAME, NAME=VALUE (repeatable);
    /// beats OKRA_VARIABLE_<NAME>, which beats the manifest default.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// A public listener of this cluster that self-routes balance over
    /// (repeatable) [default: this gateway's --listen].
    #[arg(long = "peer", value_name = "ADDR")]
    pub peers: Vec<SocketAddr>,
    /// Chained and self-route hops one request may take [default: 10].
    #[arg(long, env = "OKRA_MAX_HOPS")]
    pub max_hops: Option<u32>,
    /// Where tenants and apps are stored: file:PATH or redis://HOST:PORT
    /// [default: file:<data-dir>; with --app and no --store, no store at all].
    #[arg(long, env = "OKRA_STORE")]
    pub store: Option<String>,
    /// Local state: the file store (by default), the admin token, bundle and
    /// compile caches [default: ./okra-data].
    #[arg(long, env = "OKRA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The embedded REST API [default: 127.0.0.1:8081].
    #[arg(long, env = "OKRA_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// Do not serve the REST API (a cluster's gateways; the control-plane binary serves it).
    #[arg(long, env = "OKRA_NO_API")]
    pub no_api: bool,
    /// Apps answer on {app}.{tenant}.<base-domain> [default: localhost].
    #[arg(long, env = "OKRA_BASE_DOMAIN")]
    pub base_domain: Option<String>,
    /// Largest app bundle a deploy may upload, compressed, in bytes [default: 67108864].
    #[arg(long, env = "OKRA_MAX_BUNDLE_BYTES")]
    pub max_bundle_bytes: Option<u64>,
    /// Apps a tenant may have, deployed or not [default: 100].
    #[arg(long, env = "OKRA_MAX_APPS")]
    pub max_apps: Option<usize>,
    /// Versions of each app kept for rollback, the serving one included [default: 10].
    #[arg(long, env = "OKRA_VERSIONS_KEPT")]
    pub versions_kept: Option<usize>,
    /// Variables set on one app [default: 100].
    #[arg(long, env = "OKRA_MAX_VARIABLES")]
    pub max_variables: Option<usize>,
    /// Bytes of one app's variable names and values together [default: 65536].
    #[arg(long, env = "OKRA_MAX_VARIABLE_BYTES")]
    pub max_variable_bytes: Option<usize>,
    /// Custom domains one tenant may hold [default: 20].
    #[arg(long, env = "OKRA_MAX_DOMAINS")]
    pub max_domains: Option<usize>,
    /// Bytes of a tenant's policy document [default: 65536].
    #[arg(long, env = "OKRA_MAX_POLICY_BYTES")]
    pub max_policy_bytes: Option<usize>,
    /// Bytes of every version a tenant keeps, bundles together [default: 1073741824].
    #[arg(long, env = "OKRA_MAX_STORED_BYTES")]
    pub max_stored_bytes: Option<u64>,
    /// Files of every version a tenant keeps, together [default: 50000].
    #[arg(long, env = "OKRA_MAX_STORED_FILES")]
    pub max_stored_files: Option<usize>,
    /// Take over the listening sockets of the gateway running with the same
    /// --upgrade-sock (graceful upgrade): start this one with --upgrade, then
    /// send the old one SIGQUIT; no connection is refused in between.
    #[arg(long)]
    pub upgrade: bool,
    /// Where an old and a new gateway hand the listening sockets over
    /// [default: <data-dir>/upgrade.sock].
    #[arg(long, env = "OKRA_UPGRADE_SOCK")]
    pub upgrade_sock: Option<PathBuf>,
    /// A hostname no tenant may claim, besides the `--app` hosts (repeatable;
    /// for a control plane whose gateways serve `--app` apps).
    #[arg(long = "reserved-host", value_name = "HOST")]
    pub reserved_hosts: Vec<String>,
}

/// An app served without the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticApp {
    pub host: String,
    pub manifest: PathBuf,
}

/// The merged operator configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorConfig {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// 0 means one per CPU.
    pub threads: usize,
    pub limits: Limits,
    pub runtime: RuntimeConfig,
    pub outbound: OutboundConfig,
    pub apps: Vec<StaticApp>,
    /// Variable values for the `--app` apps, by variable name.
    pub variables: BTreeMap<String, String>,
    /// Public listeners self-routes balance over; empty means `listen`.
    pub peers: Vec<SocketAddr>,
    pub control: ControlConfig,
    /// What each tenant may keep in the store.
    pub quotas: Quotas,
    /// Where a graceful upgrade hands the listening sockets over; `None`
    /// means `<data_dir>/upgrade.sock`.
    pub upgrade_sock: Option<PathBuf>,
    /// Whether this start takes the sockets over from a running gateway
    /// (`--upgrade`; a flag only, never in the file).
    #[serde(skip)]
    pub upgrade: bool,
}

/// The control-plane side: the store, the embedded API, hostnames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// `file:PATH` or `redis://...`; `None` means file:<data_dir>, or no
    /// store at all when apps are given with `--app`.
    pub store: Option<String>,
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub api: bool,
    pub base_domain: String,
    pub max_bundle_bytes: u64,
    /// Hostnames no tenant may claim, besides the `[[apps]]` hosts.
    pub reserved_hosts: Vec<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            store: None,
            data_dir: PathBuf::from("okra-data"),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            api: true,
            base_domain: "localhost".into(),
            max_bundle_bytes: 64 << 20,
            reserved_hosts: Vec::new(),
        }
    }
}

impl ControlConfig {
    /// The store URL to open, if any.
    pub fn store_url(&self, has_static_apps: bool) -> Option<String> {
        match &self.store {
            Some(url) => Some(url.clone()),
            None if has_static_apps => None,
            None => Some(format!("file:{}", self.data_dir.display())),
        }
    }
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
        let mut config = match &cli.config {
            Some(path) => Self::from_file(path)?,
            None => OperatorConfig::default(),
        };
        macro_rules! set {
            ($($flag:ident => $($field:ident).+),* $(,)?) => {
                $(if let Some(v) = cli.$flag { config.$($field).+ = v; })*
            };
        }
        set!(
            listen => listen,
            metrics_listen => metrics_listen,
            threads => threads,
            memory_bytes => limits.memory_bytes,
            request_timeout_ms => limits.request_timeout_ms,
            cpu_time_ms => limits.cpu_time_ms,
            max_request_body_bytes => limits.max_request_body_bytes,
            max_concurrent_requests => limits.max_concurrent_requests,
            max_instances => runtime.max_instances,
            max_memory_bytes => runtime.max_memory_bytes,
            epoch_tick_ms => runtime.epoch_tick_ms,
            memory_keep_resident_bytes => runtime.memory_keep_resident_bytes,
            max_unused_warm_slots => runtime.max_unused_warm_slots,
            table_keep_resident_bytes => runtime.table_keep_resident_bytes,
            decommit_batch_size => runtime.decommit_batch_size,
            compile_cache_max_bytes => runtime.compile_cache_max_bytes,
            block_networks => outbound.block_networks,
            outbound_connect_timeout_ms => outbound.connect_timeout_ms,
            outbound_first_byte_timeout_ms => outbound.first_byte_timeout_ms,
            outbound_between_bytes_timeout_ms => outbound.between_bytes_timeout_ms,
            outbound_max_timeout_ms => outbound.max_timeout_ms,
            outbound_idle_timeout_ms => outbound.idle_timeout_ms,
            outbound_max_connections => outbound.max_connections_per_tenant,
            max_apps => quotas.max_apps,
            versions_kept => quotas.versions_kept,
            max_variables => quotas.max_variables,
            max_variable_bytes => quotas.max_variable_bytes,
            max_domains => quotas.max_domains,
            max_policy_bytes => quotas.max_policy_bytes,
            max_stored_bytes => quotas.max_stored_bytes,
            max_stored_files => quotas.max_stored_files,
            max_hops => outbound.max_hops,
            data_dir => control.data_dir,
            api_listen => control.api_listen,
            base_domain => control.base_domain,
            max_bundle_bytes => control.max_bundle_bytes,
        );
        if cli.store.is_some() {
            config.control.store = cli.store;
        }
        for (flag, field) in [
            (cli.cpu_parallelism, &mut config.limits.cpu_parallelism),
            (
                cli.requests_per_second,
                &mut config.limits.requests_per_second,
            ),
            (
                cli.app_requests_per_second,
                &mut config.limits.app_requests_per_second,
            ),
        ] {
            if flag.is_some() {
                *field = flag;
            }
        }
        if cli.no_api {
            config.control.api = false;
        }
        config.control.reserved_hosts.extend(cli.reserved_hosts);
        config.upgrade = cli.upgrade;
        if cli.upgrade_sock.is_some() {
            config.upgrade_sock = cli.upgrade_sock;
        }
        if !cli.peers.is_empty() {
            config.peers = cli.peers;
        }
        for spec in &cli.vars {
            let Some((name, value)) = spec.split_once('=') else {
                bail!("--var {spec:?}: expected NAME=VALUE");
            };
            let name = name.trim();
            if let Err(why) = tenant_config::variables::validate_variable_name(name) {
                bail!("--var {spec:?}: {name:?} is not a variable name: {why}");
            }
            config.variables.insert(name.to_string(), value.to_string());
        }
        if cli.compile_cache_dir.is_some() {
            config.runtime.compile_cache_dir = cli.compile_cache_dir;
        }
        if cli.outbound_extra_ca_file.is_some() {
            config.outbound.extra_ca_file = cli.outbound_extra_ca_file;
        }
        config.outbound.resolve.extend(cli.resolve);
        if cli.global_policy.is_some() {
            config.outbound.global_policy = cli.global_policy;
        }
        if cli.audit_log.is_some() {
            config.outbound.audit_log = cli.audit_log;
        }
        for spec in &cli.tenant_policies {
            let Some((tenant, path)) = spec.split_once('=') else {
                bail!("--tenant-policy {spec:?}: expected TENANT=path/to/policy.json");
            };
            config
                .outbound
                .tenant_policies
                .insert(tenant.trim().to_string(), PathBuf::from(path));
        }
        for spec in &cli.apps {
            config.apps.push(parse_app_flag(spec)?);
        }
        config.validate()?;
        Ok(config)
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

    fn validate(&self) -> anyhow::Result<()> {
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
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = 1\n").unwrap();
        let e = OperatorConfig::from_cli(cli(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }
}
