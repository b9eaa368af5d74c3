//! The `okra` command line: build and run an app locally (`okra up`), build
//! and deploy it (`okra deploy`), and manage tenants, apps, domains,
//! variables and key-value data through the REST API. The server, token and tenant come from
//! flags, then `OKRA_SERVER`/`OKRA_TOKEN`/`OKRA_TENANT`, then the config file.

mod app_path;
mod build;
mod client;
mod kv;
mod remote;
mod settings;
mod up;

pub use app_path::{AppArg, AppPaths};
pub use build::build;
pub use kv::KvCommand;

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
    #[arg(long, global = true, value_parser = name_arg)]
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
        #[arg(long, value_parser = name_arg)]
        app: Option<String>,
        /// Upload what is already built.
        #[arg(long)]
        no_build: bool,
        /// A variable value to set before deploying, NAME=VALUE (repeatable);
        /// values stay set for later versions, as with `okra vars set`.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Return once the gateway serving the API serves the new version
        /// (a control plane cannot tell, and says so).
        #[arg(long)]
        wait: bool,
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
    /// An app's key-value data (what its guests see in `key_value_stores`).
    Kv {
        /// What to do with the data.
        #[command(subcommand)]
        command: KvCommand,
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
    /// How logs are written.
    #[command(flatten)]
    pub log: gateway::logging::LogArgs,
}

/// `okra tenants`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its token, shown only this once.
    Create {
        /// The tenant's name.
        #[arg(value_parser = name_arg)]
        name: String,
    },
    /// List the tenants.
    List,
    /// Delete a tenant with every app, version and domain it has.
    Delete {
        /// The tenant's name.
        #[arg(value_parser = name_arg)]
        name: String,
    },
    /// Set a tenant's limits, KEY=VALUE (e.g. memory_bytes=67108864); keys
    /// left out keep the operator's defaults.
    Limits {
        /// The tenant's name.
        #[arg(value_parser = name_arg)]
        name: String,
        /// The limits.
        #[arg(required = true, value_name = "KEY=VALUE")]
        values: Vec<String>,
    },
    /// Set a tenant's outbound policy from an okra.json file; it narrows
    /// what the operator's policies allow, never widens it.
    Policy {
        /// The tenant's name.
        #[arg(value_parser = name_arg)]
        name: String,
        /// The policy document (okra.json).
        file: PathBuf,
    },
}

/// `okra apps`.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// List the tenant's apps, the version each serves and its hosts.
    List,
    /// Show an app as JSON.
    Show {
        /// The app's name.
        #[arg(value_parser = name_arg)]
        app: String,
    },
    /// Serve an earlier version again.
    Rollback {
        /// The app's name.
        #[arg(value_parser = name_arg)]
        app: String,
        /// The version to serve.
        version: u64,
    },
    /// Stop serving an app; its versions and variables stay for a rollback
    /// unless --purge.
    Delete {
        /// The app's name.
        #[arg(value_parser = name_arg)]
        app: String,
        /// Remove everything the app keeps too: versions and variables (an
        /// app that was never deployed needs this).
        #[arg(long)]
        purge: bool,
    },
}

/// `okra domains`.
#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Serve the app on a custom domain too.
    Add {
        /// The app's name.
        #[arg(value_parser = name_arg)]
        app: String,
        /// The domain.
        #[arg(value_parser = domain_arg)]
        domain: String,
    },
    /// Stop serving the app on a custom domain.
    Remove {
        /// The app's name.
        #[arg(value_parser = name_arg)]
        app: String,
        /// The domain.
        #[arg(value_parser = domain_arg)]
        domain: String,
    },
}

/// `okra vars`.
#[derive(Debug, Subcommand)]
pub enum VarCommand {
    /// Set NAME=VALUE pairs.
    Set {
        /// The app's name.
        #[arg(value_parser = name_arg)]
        app: String,
        /// The values.
        #[arg(required = true, value_name = "NAME=VALUE")]
        values: Vec<String>,
    },
    /// List the names that have values (values are write-only).
    List {
        /// The app's name.
        #[arg(value_parser = name_arg)]
        app: String,
    },
    /// Remove variables' values (refused if the version served needs them).
    Unset {
        /// The app's name.
        #[arg(value_parser = name_arg)]
        app: String,
        /// The variables' names.
        #[arg(required = true, value_name = "NAME", value_parser = variable_arg)]
        names: Vec<String>,
    },
}

/// A tenant or app name as the API takes it (a DNS label), checked before
/// it becomes part of a URL path.
fn name_arg(name: &str) -> Result<String, String> {
    control_plane::model::validate_name("name", name).map(|()| name.to_string())
}

/// A variable name, checked before it becomes part of a URL path.
fn variable_arg(name: &str) -> Result<String, String> {
    tenant_config::variables::validate_variable_name(name)
        .map(|()| name.to_string())
        .map_err(str::to_string)
}

/// A domain, refused if it could change the URL path it goes into (the
/// API checks the rest).
fn domain_arg(domain: &str) -> Result<String, String> {
    if domain.contains(['/', '\\', '?', '#', '%']) || domain.split('.').any(|p| p.is_empty()) {
        return Err("a hostname such as www.example.com".to_string());
    }
    Ok(domain.to_string())
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

    /// `okra --help` and every subcommand's help say what each command and
    /// each argument is for.
    #[test]
    fn every_command_and_argument_has_help() {
        fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub
                    .get_about()
                    .is_none_or(|a| a.to_string().trim().is_empty())
                {
                    missing.push(path.clone());
                }
                for arg in sub.get_arguments() {
                    if arg.get_help().is_none() && !arg.is_global_set() {
                        missing.push(format!("{path} <{}>", arg.get_id()));
                    }
                }
                check(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        check(&Cli::command(), "okra", &mut missing);
        assert!(missing.is_empty(), "no help: {missing:?}");
    }
}
