//! The `gateway` binary: parse flags and config, load apps, serve.

use clap::Parser;
use gateway::config::{Cli, OperatorConfig};

fn main() {
    gateway::logging::init("info");
    let config = match OperatorConfig::from_cli(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    match gateway::server::build(&config) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
