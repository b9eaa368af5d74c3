//! Logs for every binary: to stderr, as text or JSON lines, filtered by
//! `OKRA_LOG` (tracing's env-filter syntax) or the binary's default level.
//! Colours only when stderr is a terminal and `NO_COLOR` is unset. The
//! code generator's debug chatter stays out unless `OKRA_LOG` names it.

use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

/// Targets that log every compiled function at `debug`: quiet (`warn`)
/// unless `OKRA_LOG` names them.
const NOISY_TARGETS: &[&str] = &[
    "cranelift_codegen",
    "cranelift_frontend",
    "regalloc2",
    "wasmtime_internal_cranelift",
    "wasmtime_environ",
    "wasmtime_internal_cache",
];

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the fields as keys.
    Json,
}

/// The log flag every Okra binary that serves takes.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LogArgs {
    /// How log lines are written to stderr: `text`, coloured only on a
    /// terminal and never with NO_COLOR set, or `json`, one object per line.
    /// What is logged is OKRA_LOG's choice, in tracing's env-filter syntax
    /// (e.g. `debug`, or `info,okra::guest=off` to drop guests' output).
    #[arg(long, value_enum, env = "OKRA_LOG_FORMAT", default_value_t)]
    pub log_format: LogFormat,
}

/// Installs the log subscriber; `default_level` applies when `OKRA_LOG` is
/// unset. A bad `OKRA_LOG` is reported, and `default_level` used instead.
pub fn init(args: &LogArgs, default_level: &str) {
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let given = std::env::var("OKRA_LOG")
        .ok()
        .filter(|spec| !spec.trim().is_empty());
    let filter = match filter(given.as_deref().unwrap_or(default_level)) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!(
                "OKRA_LOG={:?} is not a log filter ({e}); logging at {default_level}",
                given.as_deref().unwrap_or_default()
            );
            filter(default_level).unwrap_or_else(|_| EnvFilter::new(default_level))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.with_ansi(colour).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// `spec`, and when it asks for `debug` or `trace`, every noisy target it
/// does not name turned down to `warn` (a quieter spec keeps them quieter).
fn filter(spec: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let mut directives = spec.to_string();
    let verbose = spec.contains("debug") || spec.contains("trace");
    for target in NOISY_TARGETS.iter().filter(|_| verbose) {
        if !spec.contains(target) {
            directives.push_str(&format!(",{target}=warn"));
        }
    }
    EnvFilter::builder().parse(directives)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_generator_is_quiet_unless_named() {
        let debug = filter("debug").unwrap().to_string();
        assert!(debug.contains("cranelift_codegen=warn"), "{debug}");
        let named = filter("debug,cranelift_codegen=trace").unwrap().to_string();
        assert!(named.contains("cranelift_codegen=trace"), "{named}");
        assert!(!named.contains("cranelift_codegen=warn"), "{named}");
        let quiet = filter("error").unwrap().to_string();
        assert!(!quiet.contains("cranelift_codegen"), "{quiet}");
        assert!(filter("debug,[").is_err());
    }
}
