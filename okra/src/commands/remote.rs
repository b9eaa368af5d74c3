//! The commands that talk to the REST API: deploy, tenants, apps,
//! domains and variables.

use super::client::Client;
use super::settings::Settings;
use super::{AppCommand, Cli, Command, DomainCommand, TenantCommand, VarCommand, build};
use anyhow::Context as _;
use control_plane::api::{AppView, CreatedTenant, Deployed, TenantView, VariableNames};
use std::collections::BTreeMap;

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs one API command.
pub(super) async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
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
        Command::Deploy {
            from,
            app,
            no_build,
        } => {
            let paths = from.resolve()?;
            if paths.manifest.file_name() != Some(control_plane::bundle::MANIFEST.as_ref()) {
                anyhow::bail!(
                    "{}: a deployed app's manifest must be named {} (the bundle carries it at its root)",
                    paths.manifest.display(),
                    control_plane::bundle::MANIFEST
                );
            }
            if !no_build {
                build(&paths)?;
            }
            let app = match app {
                Some(a) => a,
                None => tenant_config::AppManifest::load(&paths.manifest)?.name,
            };
            let bundle = control_plane::bundle::pack(&paths.dir)?;
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
