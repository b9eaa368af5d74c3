//! The `[outbound]` section of the operator's configuration and its flags.
//! Each flag's field is named after its key, so the configuration merges a
//! given flag by that key; defaults live only in [`OutboundConfig`]'s
//! `Default`, and `--help` reads them from there.

use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Operator settings for outbound HTTP (`[outbound]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Networks no guest may reach: `private`, `none`, or CIDRs.
    pub block_networks: Vec<String>,
    /// Pinned names, `HOST=IP[,IP...]`, answered without DNS.
    pub resolve: Vec<String>,
    /// Connect timeout when the guest sets none.
    pub connect_timeout_ms: u64,
    /// First-byte timeout when the guest sets none.
    pub first_byte_timeout_ms: u64,
    /// Between-bytes timeout when the guest sets none.
    pub between_bytes_timeout_ms: u64,
    /// The most any guest may ask for, for each of the three timeouts.
    pub max_timeout_ms: u64,
    /// Open connections (in use or idle) per tenant.
    pub max_connections_per_tenant: u32,
    /// How long an idle pooled connection is kept.
    pub idle_timeout_ms: u64,
    /// PEM file of extra CA certificates to trust besides the webpki roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Operator-wide `http.fetch` policy (okra.json form).
    pub global_policy: Option<PathBuf>,
    /// Tenant-wide policies (okra.json form, plus `auth` keys), by tenant.
    pub tenant_policies: BTreeMap<String, PathBuf>,
    /// Where audit records go (JSON lines); the log when unset.
    pub audit_log: Option<PathBuf>,
    /// Chained and self-route hops one request may take before the guest
    /// gets `loop-detected`.
    pub max_hops: u32,
    /// Whether guests may open PostgreSQL sessions (off until the known
    /// issues with hostile servers are fixed; see the README's "Not yet").
    pub postgres: bool,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            block_networks: vec!["private".into()],
            resolve: Vec::new(),
            connect_timeout_ms: 10_000,
            first_byte_timeout_ms: 30_000,
            between_bytes_timeout_ms: 30_000,
            max_timeout_ms: 60_000,
            max_connections_per_tenant: 100,
            idle_timeout_ms: 90_000,
            extra_ca_file: None,
            global_policy: None,
            tenant_policies: BTreeMap::new(),
            audit_log: None,
            max_hops: 10,
            postgres: false,
        }
    }
}

/// The flags of `[outbound]`. Lists given as repeated flags add to the file's.
#[derive(Clone, Debug, Default, clap::Args, Serialize)]
pub struct OutboundArgs {
    /// Networks guests may never reach: `private`, `none` or CIDRs, comma-separated.
    #[arg(long, env = "OKRA_BLOCK_NETWORKS", value_delimiter = ',')]
    pub block_networks: Option<Vec<String>>,
    /// Pin a name for outbound requests, HOST=IP[,IP...], like curl --resolve (repeatable).
    #[arg(long = "resolve", value_name = "HOST=IP")]
    #[serde(skip)]
    pub resolve: Vec<String>,
    /// Open outbound connections per tenant.
    #[arg(
        long = "outbound-max-connections",
        env = "OKRA_OUTBOUND_MAX_CONNECTIONS"
    )]
    pub max_connections_per_tenant: Option<u32>,
    /// Outbound connect timeout when the guest sets none, in ms.
    #[arg(
        long = "outbound-connect-timeout-ms",
        env = "OKRA_OUTBOUND_CONNECT_TIMEOUT_MS"
    )]
    pub connect_timeout_ms: Option<u64>,
    /// Outbound first-byte timeout when the guest sets none, in ms.
    #[arg(
        long = "outbound-first-byte-timeout-ms",
        env = "OKRA_OUTBOUND_FIRST_BYTE_TIMEOUT_MS"
    )]
    pub first_byte_timeout_ms: Option<u64>,
    /// Outbound between-bytes timeout when the guest sets none, in ms.
    #[arg(
        long = "outbound-between-bytes-timeout-ms",
        env = "OKRA_OUTBOUND_BETWEEN_BYTES_TIMEOUT_MS"
    )]
    pub between_bytes_timeout_ms: Option<u64>,
    /// The longest a guest may ask for, for each outbound timeout, in ms.
    #[arg(long = "outbound-max-timeout-ms", env = "OKRA_OUTBOUND_MAX_TIMEOUT_MS")]
    pub max_timeout_ms: Option<u64>,
    /// How long an idle pooled outbound connection is kept, in ms.
    #[arg(
        long = "outbound-idle-timeout-ms",
        env = "OKRA_OUTBOUND_IDLE_TIMEOUT_MS"
    )]
    pub idle_timeout_ms: Option<u64>,
    /// PEM file of CA certificates outbound TLS trusts besides the webpki roots.
    #[arg(long = "outbound-extra-ca-file", env = "OKRA_OUTBOUND_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,
    /// Operator-wide outbound policy file (okra.json form).
    #[arg(long, env = "OKRA_GLOBAL_POLICY")]
    pub global_policy: Option<PathBuf>,
    /// A tenant's outbound policy file, TENANT=PATH (repeatable; static apps are tenant `local`).
    #[arg(long = "tenant-policy", value_name = "TENANT=PATH")]
    #[serde(skip)]
    pub tenant_policies: Vec<String>,
    /// Append outbound audit records (JSON lines) to this file instead of the log.
    #[arg(long, env = "OKRA_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Chained and self-route hops one request may take.
    #[arg(long, env = "OKRA_MAX_HOPS")]
    pub max_hops: Option<u32>,
    /// Let guests open PostgreSQL sessions (off by default: a hostile
    /// server can still exhaust the gateway; see the README's "Not yet").
    #[arg(long = "outbound-postgres", env = "OKRA_OUTBOUND_POSTGRES")]
    #[serde(skip)]
    pub postgres: bool,
}

impl OutboundArgs {
    /// Adds the repeated flags to `config`'s lists (the rest merge by key).
    pub fn extend(&self, config: &mut OutboundConfig) -> anyhow::Result<()> {
        config.resolve.extend(self.resolve.iter().cloned());
        if self.postgres {
            config.postgres = true;
        }
        for spec in &self.tenant_policies {
            let Some((tenant, path)) = spec.split_once('=') else {
                bail!("--tenant-policy {spec:?}: expected TENANT=path/to/policy.json");
            };
            config
                .tenant_policies
                .insert(tenant.trim().to_string(), PathBuf::from(path));
        }
        Ok(())
    }
}
