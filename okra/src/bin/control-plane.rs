//! The `control-plane` binary: the REST API for a cluster of gateways that
//! share a Redis store (`gateway --store redis://... --no-api`), with deploys
//! checked by the gateway's loader. It takes only its own flags.

use okra::control_plane::ControlPlaneCli;

fn main() {
    gateway::logging::init("info");
    let run = ControlPlaneCli::from_args()
        .into_config()
        .and_then(|config| gateway::control::run_control_plane(&config));
    if let Err(e) = run {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
