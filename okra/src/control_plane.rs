//! The `control-plane` binary's flags: the store, the REST API, the
//! hostnames tenants' apps answer on, the quotas, and what a deploy is
//! checked against (tenants' default limits, the engine's sizes, the
//! operator's outbound policies); nothing about serving traffic. Its
//! `--config` is the gateway's operator file: it reads the sections it uses.

use gateway::config::{
    ControlArgs, LimitsArgs, OperatorConfig, OutboundArgs, QuotaArgs, RuntimeArgs,
};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Okra control plane: the REST API for a cluster of gateways that share a
/// Redis store (`gateway --store redis://... --no-api`).
#[derive(Debug, clap::Parser)]
#[command(name = "control-plane", version)]
pub struct ControlPlaneCli {
    /// Operator settings file (TOML, the gateway's); flags override it.
    #[arg(long, env = "OKRA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where `/healthz`, `/readyz` (the store answers) and `/metrics` are
    /// served; not read from the file, whose `metrics_listen` is a
    /// gateway's [default: 127.0.0.1:9091].
    #[arg(long, value_name = "ADDR", env = "OKRA_CONTROL_PLANE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// `[control]`: the store, the API and hostnames.
    #[command(flatten)]
    pub control: ControlArgs,
    /// `[limits]`: tenants' defaults, which deploys are checked against.
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// `[quotas]`.
    #[command(flatten)]
    pub quotas: QuotaArgs,
    /// `[runtime]`: a deploy compiles here as on a gateway, within the same
    /// pool sizes.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// `[outbound]`: a deploy's policies are checked against the operator's.
    #[command(flatten)]
    pub outbound: OutboundArgs,
    /// How logs are written.
    #[command(flatten)]
    pub log: gateway::logging::LogArgs,
}

/// Where the control plane serves `/metrics` unless told: next to a
/// gateway's 9090 on the same host.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9091);

impl ControlPlaneCli {
    /// The process's flags, with every default shown in `--help`.
    pub fn from_args() -> Self {
        gateway::config::layers::parse_flags(&OperatorConfig::default())
    }

    /// Defaults, then the file, then these flags.
    pub fn into_config(self) -> anyhow::Result<OperatorConfig> {
        let mut config = OperatorConfig::layered(self.config.as_deref(), |layers| {
            layers.overlay(&self.control)?;
            layers.overlay(&self.limits)?;
            layers.overlay(&self.quotas)?;
            layers.overlay(&self.runtime)?;
            layers.overlay(&self.outbound)
        })?;
        self.control.extend(&mut config.control);
        self.outbound.extend(&mut config.outbound)?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn takes_the_control_flags_and_no_serving_ones() {
        let cli = ControlPlaneCli::try_parse_from([
            "control-plane",
            "--store",
            "redis://127.0.0.1:1",
            "--base-domain",
            "apps.example.com",
            "--max-apps",
            "3",
            "--memory-bytes",
            "8388608",
            "--reserved-host",
            "www.example.com",
            "--max-memory-bytes",
            "536870912",
            "--tenant-policy",
            "acme=acme.json",
        ])
        .unwrap();
        let config = cli.into_config().unwrap();
        assert_eq!(config.control.store.as_deref(), Some("redis://127.0.0.1:1"));
        assert_eq!(config.control.base_domain, "apps.example.com");
        assert_eq!(config.quotas.max_apps, 3);
        assert_eq!(config.limits.memory_bytes, 8 << 20);
        assert_eq!(config.control.reserved_hosts, ["www.example.com"]);
        assert_eq!(config.runtime.max_memory_bytes, 512 << 20);
        assert_eq!(
            config.outbound.tenant_policies["acme"],
            std::path::Path::new("acme.json")
        );
        // Its own --metrics-listen, for /healthz, /readyz and /metrics.
        let cli =
            ControlPlaneCli::try_parse_from(["control-plane", "--metrics-listen", "127.0.0.1:9"])
                .unwrap();
        assert_eq!(cli.metrics_listen.map(|a| a.port()), Some(9));
        for serving in [
            "--listen",
            "--threads",
            "--app",
            "--var",
            "--peer",
            "--upgrade",
        ] {
            let err = ControlPlaneCli::try_parse_from(["control-plane", serving, "x"]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{serving}: {err}"
            );
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let cli = ControlPlaneCli::try_parse_from(["control-plane", "--base-domain", "http://x"])
            .unwrap();
        let err = cli.into_config().unwrap_err();
        assert!(err.to_string().contains("base_domain"), "{err}");
    }
}
