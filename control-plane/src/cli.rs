//! The `okra` command line: build and run an app locally (`okra up`), build
//! and deploy it (`okra deploy`), and manage tenants, apps, domains and
//! variables through the REST API. The server, token and tenant come from
//! flags, then `OKRA_SERVER`/`OKRA_TOKEN`/`OKRA_TENANT`, then the config file.
//!
//! Serving locally needs the gateway, which this crate does not depend on, so
//! the binary passes `okra up` in as a function.

use crate::api::{AppView, CreatedTenant, Deployed, TenantView, VariableNames};
use crate::error::ErrorBody;
use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the app's components, then serve it on --listen for any Host (like `spin build --up`).
    Up(UpArgs),
    /// Run each component's `[component.x.build] command`.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Build, pack and upload the app; prints its URLs.
    Deploy {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The app's name in Okra [default: `[application] name`].
        #[arg(long)]
        app: Option<String>,
        /// Upload what is already built.
        #[arg(long)]
        no_build: bool,
    },
    /// Tenants (admin token).
    Tenants {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// The tenant's apps.
    Apps {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Custom domains of an app.
    Domains {
        #[command(subcommand)]
        command: DomainCommand,
    },
    /// Variable values of an app.
    Vars {
        #[command(subcommand)]
        command: VarCommand,
    },
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A variable value, NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Serve what is already built.
    #[arg(long)]
    pub no_build: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    Create { name: String },
    List,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    List,
    Show { app: String },
    Rollback { app: String, version: u64 },
    Delete { app: String },
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    Add { app: String, domain: String },
    Remove { app: String, domain: String },
}

#[derive(Debug, Subcommand)]
pub enum VarCommand {
    /// Set NAME=VALUE pairs.
    Set {
        app: String,
        #[arg(required = true, value_name = "NAME=VALUE")]
        values: Vec<String>,
    },
    /// List the names that have values (values are write-only).
    List { app: String },
}

/// Where the API is and who we are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    server: Option<String>,
    token: Option<String>,
    tenant: Option<String>,
}

impl Settings {
    fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
        let path = cli
            .config
            .clone()
            .or_else(|| std::env::var_os("OKRA_CLI_CONFIG").map(PathBuf::from))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/okra/config.toml"))
            });
        let file: Settings = match &path {
            Some(p) if p.exists() => toml::from_str(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{}", p.display()))?,
            _ => Settings::default(),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Ok(Settings {
            server: cli
                .server
                .clone()
                .or_else(|| env("OKRA_SERVER"))
                .or(file.server),
            token: cli
                .token
                .clone()
                .or_else(|| env("OKRA_TOKEN"))
                .or(file.token),
            tenant: cli
                .tenant
                .clone()
                .or_else(|| env("OKRA_TENANT"))
                .or(file.tenant),
        })
    }
}

/// Runs the CLI; `up` serves an app locally and blocks.
pub fn main(cli: Cli, up: &dyn Fn(&UpArgs) -> anyhow::Result<()>) -> anyhow::Result<()> {
    match &cli.command {
        Command::Up(args) => {
            if !args.no_build {
                build(&args.dir)?;
            }
            up(args)
        }
        Command::Build { dir } => build(dir),
        _ => {
            let settings = Settings::resolve(&cli)?;
            tokio::runtime::Runtime::new()?.block_on(remote(cli, settings))
        }
    }
}

/// Runs every component's build command in its workdir, printing progress.
pub fn build(dir: &Path) -> anyhow::Result<()> {
    let manifest = dir.join(crate::bundle::MANIFEST);
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}", manifest.display()))?;
    let components = doc.get("component").and_then(|c| c.as_table());
    for (id, component) in components.into_iter().flatten() {
        let Some(build) = component.get("build").and_then(|b| b.as_table()) else {
            continue;
        };
        let Some(command) = build.get("command").and_then(|c| c.as_str()) else {
            continue;
        };
        let workdir = match build.get("workdir").and_then(|w| w.as_str()) {
            Some(w) => dir.join(w),
            None => dir.to_path_buf(),
        };
        eprintln!("Building component {id} with `{command}`");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&workdir)
            .status()
            .with_context(|| format!("running the build command of component {id}"))?;
        if !status.success() {
            bail!(
                "building component {id} failed ({status}): `{command}` in {}",
                workdir.display()
            );
        }
    }
    eprintln!("Finished building all components");
    Ok(())
}

/// A client of the REST API.
struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

impl Client {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends and decodes; an API error is shown with the API's own message.
    async fn send<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> anyhow::Result<Option<T>> {
        let response = builder
            .send()
            .await
            .with_context(|| format!("cannot reach the Okra API at {}", self.server))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            if let Ok(body) = serde_json::from_slice::<ErrorBody>(&bytes) {
                bail!("{} ({status}, {})", body.error.message, body.error.code);
            }
            bail!(
                "the API answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            serde_json::from_slice(&bytes).context("decoding the API's answer")?,
        ))
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn remote(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    let client = Client {
        http: reqwest::Client::new(),
        server: settings
            .server
            .unwrap_or_else(|| "http://127.0.0.1:8081".to_string()),
        token: settings.token,
    };
    let tenant = || {
        settings
            .tenant
            .clone()
            .context("which tenant? give --tenant, OKRA_TENANT or `tenant` in the config file")
    };
    use reqwest::Method;
    match cli.command {
        Command::Up(_) | Command::Build { .. } => unreachable!("handled locally"),
        Command::Deploy { dir, app, no_build } => {
            if !no_build {
                build(&dir)?;
            }
            let app = match app {
                Some(a) => a,
                None => tenant_config::AppManifest::load(&dir.join(crate::bundle::MANIFEST))?.name,
            };
            let bundle = crate::bundle::pack(&dir)?;
            let tenant = tenant()?;
            eprintln!(
                "Uploading {app} ({} bytes) to {}",
                bundle.len(),
                client.server
            );
            let reply: Option<Deployed> = client
                .send(
                    client
                        .request(Method::PUT, &format!("/v1/tenants/{tenant}/apps/{app}"))
                        .header("content-type", "application/gzip")
                        .body(bundle),
                )
                .await?;
            let reply = reply.context("the API sent no body")?;
            println!("Deployed {app} version {}", reply.version);
            println!("Available routes:");
            for host in &reply.hosts {
                for route in &reply.routes {
                    match route.strip_suffix("/...") {
                        Some(base) => println!("  http://{host}{base} (wildcard)"),
                        None => println!("  http://{host}{route}"),
                    }
                }
            }
        }
        Command::Tenants { command } => match command {
            TenantCommand::Create { name } => {
                let created: Option<CreatedTenant> = client
                    .send(
                        client
                            .request(Method::POST, "/v1/tenants")
                            .json(&serde_json::json!({ "name": name })),
                    )
                    .await?;
                let created = created.context("the API sent no body")?;
                println!("Created tenant {}", created.name);
                println!("Its token (shown only now): {}", created.token);
            }
            TenantCommand::List => {
                let tenants: Option<Vec<TenantView>> = client
                    .send(client.request(Method::GET, "/v1/tenants"))
                    .await?;
                for t in tenants.unwrap_or_default() {
                    println!("{}\t{} apps", t.name, t.apps.len());
                }
            }
        },
        Command::Apps { command } => {
            let tenant = tenant()?;
            let base = format!("/v1/tenants/{tenant}/apps");
            match command {
                AppCommand::List => {
                    let apps: Option<Vec<AppView>> =
                        client.send(client.request(Method::GET, &base)).await?;
                    for a in apps.unwrap_or_default() {
                        let current = a
                            .current
                            .map_or("undeployed".to_string(), |v| format!("v{v}"));
                        println!("{}\t{current}\t{}", a.name, a.hosts.join(" "));
                    }
                }
                AppCommand::Show { app } => {
                    let view: Option<AppView> = client
                        .send(client.request(Method::GET, &format!("{base}/{app}")))
                        .await?;
                    print_json(&view)?;
                }
                AppCommand::Rollback { app, version } => {
                    let reply: Option<Deployed> = client
                        .send(
                            client
                                .request(Method::POST, &format!("{base}/{app}/rollback"))
                                .json(&serde_json::json!({ "version": version })),
                        )
                        .await?;
                    let reply = reply.context("the API sent no body")?;
                    println!("{app} now serves version {}", reply.version);
                }
                AppCommand::Delete { app } => {
                    client
                        .send::<serde_json::Value>(
                            client.request(Method::DELETE, &format!("{base}/{app}")),
                        )
                        .await?;
                    println!("Deleted {app}");
                }
            }
        }
        Command::Domains { command } => {
            let tenant = tenant()?;
            let (method, app, domain, done) = match command {
                DomainCommand::Add { app, domain } => (Method::PUT, app, domain, "Added"),
                DomainCommand::Remove { app, domain } => (Method::DELETE, app, domain, "Removed"),
            };
            client
                .send::<serde_json::Value>(client.request(
                    method,
                    &format!("/v1/tenants/{tenant}/apps/{app}/domains/{domain}"),
                ))
                .await?;
            println!("{done} {domain}");
        }
        Command::Vars { command } => {
            let tenant = tenant()?;
            let reply: Option<VariableNames> = match command {
                VarCommand::Set { app, values } => {
                    let mut map = BTreeMap::new();
                    for pair in &values {
                        let (name, value) = pair
                            .split_once('=')
                            .with_context(|| format!("{pair:?}: expected NAME=VALUE"))?;
                        map.insert(name.to_string(), value.to_string());
                    }
                    client
                        .send(
                            client
                                .request(
                                    Method::PUT,
                                    &format!("/v1/tenants/{tenant}/apps/{app}/variables"),
                                )
                                .json(&map),
                        )
                        .await?
                }
                VarCommand::List { app } => {
                    client
                        .send(client.request(
                            Method::GET,
                            &format!("/v1/tenants/{tenant}/apps/{app}/variables"),
                        ))
                        .await?
                }
            };
            for name in reply.map(|r| r.names).unwrap_or_default() {
                println!("{name}");
            }
        }
    }
    Ok(())
}
