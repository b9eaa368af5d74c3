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

/// The app as the API shows it, or `None` if the tenant has no such app.
async fn app_view(client: &Client, tenant: &str, app: &str) -> anyhow::Result<Option<AppView>> {
    let path = format!("/v1/tenants/{tenant}/apps/{app}");
    let response = client
        .request(reqwest::Method::GET, &path)
        .send()
        .await
        .with_context(|| format!("cannot reach the Okra API at {}", client.server))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    client.decode(response).await
}

/// How long `okra deploy --wait` waits for a gateway to serve the version.
const WAIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Polls the app until the gateway that serves the API reports `version`
/// served; fails when that version does not build there, when another
/// deploy or rollback makes a different version current, or after
/// [`WAIT_TIMEOUT`].
async fn wait_until_served(
    client: &Client,
    tenant: &str,
    app: &str,
    version: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let view: Option<AppView> = client
            .send(client.request(
                reqwest::Method::GET,
                &format!("/v1/tenants/{tenant}/apps/{app}"),
            ))
            .await?;
        let view = view.context("the API sent no body")?;
        if view.current != Some(version) {
            anyhow::bail!(
                "{app} is at {} now (another deploy, rollback or delete); not waiting for version {version}",
                view.current
                    .map_or("no version".to_string(), |v| format!("version {v}"))
            );
        }
        let Some(status) = view.status else {
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
        if status.failed_version == Some(version) {
            anyhow::bail!(
                "the gateway cannot build it: {}",
                status.error.unwrap_or_default()
            );
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
                // Values set now would reach a version already served before
                // the new one is checked; only a first deploy takes them.
                if let Some(served) = app_view(&client, &tenant, &app)
                    .await?
                    .and_then(|view| view.current)
                {
                    anyhow::bail!(
                        "{app} already serves version {served}, which --var would change before the new \
                         version is checked; set the values with `okra vars set {app} NAME=VALUE` (a value \
                         the served version does not declare does nothing to it), then deploy"
                    );
                }
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
            println!("Available routes:");
            for url in &reply.urls {
                match url.strip_suffix("/...") {
                    Some(base) => println!("  {base} (wildcard)"),
                    None => println!("  {url}"),
                }
            }
            if wait {
                wait_until_served(&client, &tenant, &app, reply.version).await?;
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
        Command::Kv { command } => super::kv::run(&client, &tenant()?, command).await?,
        Command::Vars { command } => {
            let tenant = tenant()?;
            let reply: Option<VariableNames> = match command {
                VarCommand::Set { app, values } => {
                    let map = pairs(&values, "value")?;
                    let exists = app_view(&client, &tenant, &app).await?.is_some();
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
