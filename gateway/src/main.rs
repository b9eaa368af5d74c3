//! The `gateway` binary: parse flags and config, load apps, serve.

use gateway::config::{Cli, OperatorConfig};

/// mimalloc rather than glibc's malloc: every request allocates and frees
/// many small objects across the edge threads, and glibc's malloc and free
/// took about 9 % of a wasm request's CPU (BENCHMARKS.md, issue 6).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::from_args();
    gateway::logging::init(&cli.log, "info");
    let config = match OperatorConfig::from_cli(cli) {
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
