//! The `control-plane` binary: the REST API for a cluster of gateways that
//! share a Redis store (`gateway --store redis://... --no-api`). Takes the
//! gateway's flags; only the store, API, hostname and limit ones matter.

use clap::Parser;
use gateway::config::{Cli, OperatorConfig};

fn main() {
    gateway::logging::init("info");
    let run = OperatorConfig::from_cli(Cli::parse())
        .and_then(|config| gateway::control::run_control_plane(&config));
    if let Err(e) = run {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
