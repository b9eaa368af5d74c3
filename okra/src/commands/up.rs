//! `okra up`: serves the app in a directory with the gateway in this
//! process, for any Host, like `spin up`.

use super::{AppPaths, UpArgs};
use gateway::config::{Cli as GatewayCli, OperatorConfig};

/// Serves `app` on `args.listen`; blocks.
pub(super) fn up(args: &UpArgs, app: &AppPaths) -> anyhow::Result<()> {
    use clap::Parser as _;
    gateway::logging::init(&args.log, "warn");
    let manifest = &app.manifest;
    let mut flags = vec![
        "okra-up".to_string(),
        "--listen".into(),
        args.listen.to_string(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
        "--no-api".into(),
        "--app".into(),
        format!("*={}", manifest.display()),
    ];
    for var in &args.vars {
        flags.extend(["--var".to_string(), var.clone()]);
    }
    let config = OperatorConfig::from_cli(GatewayCli::try_parse_from(flags)?)?;
    let server = gateway::server::build(&config)?;
    eprintln!("Serving http://{}", args.listen);
    eprintln!("Available routes: every path the app's spin.toml routes, for any Host");
    server.run_forever()
}
