//! The `loadtest` binary: runs a scenario and prints, writes and plots its report.

use anyhow::Context as _;
use clap::Parser as _;
use loadtest::cli::Cli;
use loadtest::progress::Progress;
use loadtest::report::Report;
use std::io::IsTerminal as _;
use std::sync::Arc;

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Runs the scenario and reports it; false when more requests failed than
/// `--max-failed-ratio` allows.
fn run(cli: Cli) -> anyhow::Result<bool> {
    let plan = Arc::new(cli.plan()?);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let progress = (!cli.quiet).then(|| Progress {
        in_place: std::io::stderr().is_terminal(),
    });
    let result = runtime.block_on(loadtest::run::run(plan.clone(), progress))?;
    let report = Report::new(&plan, &result);
    match cli.json.as_deref() {
        Some(path) if path.as_os_str() == "-" => {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Some(path) => {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
            print!("{}", report.text());
        }
        None => print!("{}", report.text()),
    }
    if let Some(dir) = &cli.plot_dir {
        let written = loadtest::plot::write_plots(&report, dir, &cli.title)?;
        if !cli.quiet {
            for path in written {
                eprintln!("wrote {}", path.display());
            }
        }
    }
    let failed_ratio = if report.requests == 0 {
        0.0
    } else {
        report.failed as f64 / report.requests as f64
    };
    if failed_ratio > cli.max_failed_ratio {
        eprintln!(
            "loadtest: {} of {} requests failed ({:.2} %), more than --max-failed-ratio {} allows",
            report.failed,
            report.requests,
            failed_ratio * 100.0,
            cli.max_failed_ratio
        );
        return Ok(false);
    }
    if report.requests == 0 {
        eprintln!("loadtest: no request was sent");
        return Ok(false);
    }
    Ok(true)
}
