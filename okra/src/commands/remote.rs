//! The commands that talk to the REST API: deploy, tenants, apps,
//! domains and variables.

use super::client::Client;
use super::settings::Settings;
use super::{AppCommand, Cli, Command, DomainCommand, TenantCommand, VarCommand, build};
use anyhow::Context as _;
use control_plane::api::{AppView, CreatedTenant, Deployed, TenantView, VariableNames};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `NAME=VALUE` pairs as a map; `what` names them in errors.
fn pairs(given: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    given
        .iter()
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("{what} {pair:?}: expected NAME=VALUE"))?;
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

/// Refuses to go on without a token, before anything is packed or sent:
/// every API call needs one.
fn require_token(settings: &Settings) -> anyhow::Result<()> {
    if settings.token.is_none() {
        anyhow::bail!(
            "no token: give --token, set OKRA_TOKEN, or put `token` in the config file \
             (a tenant's token is printed by `okra tenants create`)"
        );
    }
    Ok(())
}

/// How long `okra deploy --wait` waits for a gateway to serve the version.
const WAIT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a build error must last before `--wait` gives up on it (the
/// status may still show the previous version's failure at first).
const WAIT_ERROR_GRACE: Duration = Duration::from_secs(3);

/// Polls the app until the gateway that serves the API reports `version`
/// served; fails on a build error that lasts, or after [`WAIT_TIMEOUT`].
async fn wait_until_served(
    client: &Client,
    tenant: &str,
    app: &str,
    version: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut failing_since: Option<Instant> = None;
    loop {
        let view: Option<AppView> = client
            .send(client.request(
                reqwest::Method::GET,
                &format!("/v1/tenants/{tenant}/apps/{app}"),
            ))
            .await?;
        let Some(status) = view.and_then(|v| v.status) else {
            eprintln!(
                "note: this API runs without a gateway (a control plane), so it cannot tell when \
                 gateways serve the app; each does once it has built it"
            );
            return Ok(());
        };
        if status.serving == Some(version) {
            println!("Served (after {:.1} s)", started.elapsed().as_secs_f64());
            return Ok(());
        }
        if let Some(error) = status.error {
            let since = *failing_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= WAIT_ERROR_GRACE {
                anyhow::bail!("version {version} of {app} does not build on the gateway: {error}");
            }
        } else {
            failing_since = None;
        }
        if started.elapsed() >= WAIT_TIMEOUT {
            anyhow::bail!(
                "version {version} of {app} is not served after {} s",
                WAIT_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one API command.
pub(super) async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    if !matches!(cli.command, Command::Deploy { .. }) {
        require_token(&settings)?;
    }
    let client = Client {
        http: reqwest::Client::new(),
        server: settings
            .server
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:8081".to_string()),
        token: settings.token.clone(),
    };
    let tenant = || -> anyhow::Result<String> {
        let tenant = settings
            .tenant
            .clone()
            .context("which tenant? give --tenant, OKRA_TENANT or `tenant` in the config file")?;
        // From the environment or the config file it is not checked yet.
        super::name_arg(&tenant).map_err(|why| anyhow::anyhow!("tenant {tenant:?}: {why}"))
    };
    use reqwest::Method;
    match cli.command {
        Command::Up(_) | Command::Build { .. } => unreachable!("handled locally"),
        Command::Deploy {
            from,
            app,
            no_build,
            vars,
            wait,
        } => {
            let vars = pairs(&vars, "--var")?;
            let paths = from.resolve()?;
            require_token(&settings)?;
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
            if !vars.is_empty() {
                client
                    .send::<VariableNames>(
                        client
                            .request(
                                Method::PUT,
                                &format!("/v1/tenants/{tenant}/apps/{app}/variables"),
                            )
                            .json(&vars),
                    )
                    .await
                    .context("setting the --var values")?;
            }
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
            for warning in &reply.warnings {
                eprintln!("warning: {warning}");
            }
            println!("Deployed {app} version {}", reply.version);
            if wait {
                wait_until_served(&client, &tenant, &app, reply.version).await?;
            }
            println!("Available routes:");
            for url in &reply.urls {
                match url.strip_suffix("/...") {
                    Some(base) => println!("  {base} (wildcard)"),
                    None => println!("  {url}"),
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
            TenantCommand::Delete { name } => {
                client
                    .send::<serde_json::Value>(
                        client.request(Method::DELETE, &format!("/v1/tenants/{name}")),
                    )
                    .await?;
                println!("Deleted tenant {name}");
            }
            TenantCommand::Limits { name, values } => {
                let limits: serde_json::Map<String, serde_json::Value> = pairs(&values, "limit")?
                    .into_iter()
                    .map(|(key, value)| {
                        // Numbers go as numbers; anything else as given, for
                        // the API to name.
                        let value = serde_json::from_str(&value)
                            .unwrap_or(serde_json::Value::String(value));
                        (key, value)
                    })
                    .collect();
                let set: Option<serde_json::Value> = client
                    .send(
                        client
                            .request(Method::PUT, &format!("/v1/tenants/{name}/limits"))
                            .json(&limits),
                    )
                    .await?;
                print_json(&set)?;
            }
            TenantCommand::Policy { name, file } => {
                let policy = std::fs::read(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                client
                    .send::<serde_json::Value>(
                        client
                            .request(Method::PUT, &format!("/v1/tenants/{name}/policy"))
                            .header("content-type", "application/json")
                            .body(policy),
                    )
                    .await?;
                println!("Set the policy of tenant {name} from {}", file.display());
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
                AppCommand::Delete { app, purge } => {
                    client
                        .send::<serde_json::Value>(
                            client
                                .request(Method::DELETE, &format!("{base}/{app}"))
                                .query(&[("purge", purge)]),
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
                    let map = pairs(&values, "value")?;
                    let exists = client
                        .request(Method::GET, &format!("/v1/tenants/{tenant}/apps/{app}"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() != reqwest::StatusCode::NOT_FOUND);
                    let reply = client
                        .send(
                            client
                                .request(
                                    Method::PUT,
                                    &format!("/v1/tenants/{tenant}/apps/{app}/variables"),
                                )
                                .json(&map),
                        )
                        .await?;
                    let undeclared = reply.iter().flat_map(|r: &VariableNames| &r.undeclared);
                    for name in undeclared {
                        eprintln!(
                            "warning: the version of {app} being served does not declare variable {name}; \
                             the value does nothing until a version that declares it is deployed"
                        );
                    }
                    if !exists {
                        eprintln!(
                            "note: tenant {tenant} has no app {app} yet; the values wait for its first deploy \
                             (a typo? `okra apps delete --purge {app}` removes them)"
                        );
                    }
                    reply
                }
                VarCommand::Unset { app, names } => {
                    let mut reply = None;
                    for name in &names {
                        reply = client
                            .send(client.request(
                                Method::DELETE,
                                &format!("/v1/tenants/{tenant}/apps/{app}/variables/{name}"),
                            ))
                            .await?;
                    }
                    reply
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
