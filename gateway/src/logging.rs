//! Logs for every binary: to stderr, filtered by `OKRA_LOG` (tracing's
//! env-filter syntax) or the binary's default level. Colours only when
//! stderr is a terminal and `NO_COLOR` is unset.

use std::io::IsTerminal as _;

/// Installs the log subscriber; `default_level` applies when `OKRA_LOG` is unset.
pub fn init(default_level: &str) {
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OKRA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}
