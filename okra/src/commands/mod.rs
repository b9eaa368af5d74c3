//! The `okra` command line: build and run an app locally (`okra up`), build
//! and deploy it (`okra deploy`), and manage tenants, apps, domains and
//! variables through the REST API. The server, token and tenant come from
//! flags, then `OKRA_SERVER`/`OKRA_TOKEN`/`OKRA_TENANT`, then the config file.

mod app_path;
mod build;
mod client;
mod remote;
mod settings;
mod up;

pub use app_path::{AppArg, AppPaths};
pub use build::build;

use clap::{Parser, Subcommand};
use settings::Settings;
use std::net::SocketAddr;
use std::path::PathBuf;

/// okra: run Spin apps locally and deploy them to an Okra gateway.
#[derive(Debug, Parser)]
#[command(name = "okra", version)]
pub struct Cli {
    /// The API's URL [env OKRA_SERVER, config `server`, default http://127.0.0.1:8081].
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// Bearer token: a tenant's, or the admin's [env OKRA_TOKEN, config `token`].
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// The tenant to act as [env OKRA_TENANT, config `tenant`].
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// Config file (TOML with `server`, `token`, `tenant`) [env OKRA_CLI_CONFIG,
    /// default ~/.config/okra/config.toml].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `okra` commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the app's components, then serve it on --listen for any Host (like `spin build --up`).
    Up(UpArgs),
    /// Run each component's `[component.x.build] command`.
    Build {
        /// The app to build.
        #[command(flatten)]
        app: AppArg,
    },
    /// Build, pack and upload the app; prints its URLs.
    Deploy {
        /// The app to deploy; its manifest must be named spin.toml, which
        /// the bundle carries at its root.
        #[command(flatten)]
        from: AppArg,
        /// The app's name in Okra [default: `[application] name`].
        #[arg(long)]
        app: Option<String>,
        /// Upload what is already built.
        #[arg(long)]
        no_build: bool,
    },
    /// Tenants (admin token).
    Tenants {
        /// What to do with tenants.
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// The tenant's apps.
    Apps {
        /// What to do with apps.
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Custom domains of an app.
    Domains {
        /// What to do with domains.
        #[command(subcommand)]
        command: DomainCommand,
    },
    /// Variable values of an app.
    Vars {
        /// What to do with variables.
        #[command(subcommand)]
        command: VarCommand,
    },
}

/// What `okra up` serves, and where.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The app to serve.
    #[command(flatten)]
    pub app: AppArg,
    /// Where to serve it.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A variable value, NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Serve what is already built.
    #[arg(long)]
    pub no_build: bool,
}

/// `okra tenants`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its token, shown only this once.
    Create {
        /// The tenant's name.
        name: String,
    },
    /// List the tenants.
    List,
}

/// `okra apps`.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// List the tenant's apps, the version each serves and its hosts.
    List,
    /// Show an app as JSON.
    Show {
        /// The app's name.
        app: String,
    },
    /// Serve an earlier version again.
    Rollback {
        /// The app's name.
        app: String,
        /// The version to serve.
        version: u64,
    },
    /// Stop serving an app.
    Delete {
        /// The app's name.
        app: String,
    },
}

/// `okra domains`.
#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Serve the app on a custom domain too.
    Add {
        /// The app's name.
        app: String,
        /// The domain.
        domain: String,
    },
    /// Stop serving the app on a custom domain.
    Remove {
        /// The app's name.
        app: String,
        /// The domain.
        domain: String,
    },
}

/// `okra vars`.
#[derive(Debug, Subcommand)]
pub enum VarCommand {
    /// Set NAME=VALUE pairs.
    Set {
        /// The app's name.
        app: String,
        /// The values.
        #[arg(required = true, value_name = "NAME=VALUE")]
        values: Vec<String>,
    },
    /// List the names that have values (values are write-only).
    List {
        /// The app's name.
        app: String,
    },
}

/// Runs the CLI; `okra up` serves the app here and blocks.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Up(args) => {
            let app = args.app.resolve()?;
            if !args.no_build {
                build(&app)?;
            }
            up::up(args, &app)
        }
        Command::Build { app } => build(&app.resolve()?),
        _ => {
            let settings = Settings::resolve(&cli)?;
            tokio::runtime::Runtime::new()?.block_on(remote::run(cli, settings))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
