//! The `okra` CLI. Everything but `okra up` talks to the REST API
//! (`control_plane::cli`); `okra up` serves the app here with the gateway.

use clap::Parser;
use control_plane::cli::{Cli, UpArgs};
use gateway::config::{Cli as GatewayCli, OperatorConfig};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = control_plane::cli::main(cli, &up) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Serves the app in `args.dir` on `args.listen` for any Host, like `spin up`.
fn up(args: &UpArgs) -> anyhow::Result<()> {
    gateway::logging::init("warn");
    let manifest = args.dir.join("spin.toml");
    let mut flags = vec![
        "okra-up".to_string(),
        "--listen".into(),
        args.listen.to_string(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
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
