//! The `okra` CLI. Everything but `okra up` and `okra build` talks to the
//! REST API; `okra up` serves the app here with the gateway.

use clap::Parser;

/// mimalloc, as in the `gateway` binary: `okra up` runs the same data plane.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = okra::commands::run(okra::commands::Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
