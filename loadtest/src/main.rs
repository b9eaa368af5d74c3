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
    if let Err(e) = run(cli) {
        eprintln!("loadtest: {e:#}");
        std::process::exit(2);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
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
    Ok(())
}
