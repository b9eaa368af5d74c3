//! The `control-plane` binary: the REST API for a cluster of gateways that
//! share a Redis store (`gateway --store redis://... --no-api`), with deploys
//! checked by the gateway's loader. It takes only its own flags.

use okra::control_plane::{ControlPlaneCli, DEFAULT_METRICS_LISTEN};

fn main() {
    let cli = ControlPlaneCli::from_args();
    gateway::logging::init(&cli.log, "info");
    let metrics_listen = cli.metrics_listen.unwrap_or(DEFAULT_METRICS_LISTEN);
    let run = cli
        .into_config()
        .and_then(|config| gateway::control::run_control_plane(&config, metrics_listen));
    if let Err(e) = run {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
