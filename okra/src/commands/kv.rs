//! `okra kv`: read, write, delete and list an app's key-value data through
//! the REST API (`…/apps/{app}/kv/{store}/{key}`), as `spin cloud kv` does.

use super::client::Client;
use anyhow::Context as _;
use control_plane::kv_api::KvKeys;
use std::io::Write as _;
use std::path::PathBuf;

/// `okra kv`.
#[derive(Debug, clap::Subcommand)]
pub enum KvCommand {
    /// Print a key's value (its bytes, as stored).
    Get {
        /// The app's name.
        #[arg(value_parser = super::name_arg)]
        app: String,
        /// The store's label (`key_value_stores` in spin.toml).
        store: String,
        /// The key.
        key: String,
    },
    /// Set a key's value, from the command line or from a file.
    Set {
        /// The app's name.
        #[arg(value_parser = super::name_arg)]
        app: String,
        /// The store's label.
        store: String,
        /// The key.
        key: String,
        /// The value.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file instead.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Delete a key (deleting a key that is not there is not an error).
    Delete {
        /// The app's name.
        #[arg(value_parser = super::name_arg)]
        app: String,
        /// The store's label.
        store: String,
        /// The key.
        key: String,
    },
    /// List a store's keys, one per line, sorted.
    List {
        /// The app's name.
        #[arg(value_parser = super::name_arg)]
        app: String,
        /// The store's label.
        store: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

/// The API path of `store` (and `key`) of the tenant's app, each part
/// percent-encoded (a key may hold `/`, `?` or `%`).
fn path(
    client: &Client,
    tenant: &str,
    app: &str,
    store: &str,
    key: Option<&str>,
) -> anyhow::Result<String> {
    let named = [store].into_iter().chain(key);
    if let Some(bad) = named.clone().find(|s| matches!(*s, "" | "." | "..")) {
        anyhow::bail!("a store label or key may not be {bad:?}");
    }
    let mut url = url::Url::parse(&client.server)
        .with_context(|| format!("the server {:?} is not a URL", client.server))?;
    url.set_path("");
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("the server {:?} cannot take a path", client.server))?
        .extend(["v1", "tenants", tenant, "apps", app, "kv"])
        .extend(named);
    Ok(url.path().to_string())
}

/// Runs `command` for `tenant`.
pub(super) async fn run(client: &Client, tenant: &str, command: KvCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    match command {
        KvCommand::Get { app, store, key } => {
            let path = path(client, tenant, &app, &store, Some(&key))?;
            let value = client.send_raw(client.request(Method::GET, &path)).await?;
            std::io::stdout().write_all(&value)?;
        }
        KvCommand::Set {
            app,
            store,
            key,
            value,
            file,
        } => {
            let value = match (value, file) {
                (_, Some(file)) => {
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?
                }
                (Some(value), None) => value.into_bytes(),
                (None, None) => anyhow::bail!("give a value, or --file"),
            };
            let path = path(client, tenant, &app, &store, Some(&key))?;
            client
                .send_raw(client.request(Method::PUT, &path).body(value))
                .await?;
        }
        KvCommand::Delete { app, store, key } => {
            let path = path(client, tenant, &app, &store, Some(&key))?;
            client
                .send_raw(client.request(Method::DELETE, &path))
                .await?;
        }
        KvCommand::List { app, store, prefix } => {
            let path = path(client, tenant, &app, &store, None)?;
            let mut after: Option<String> = None;
            let mut out = std::io::stdout().lock();
            loop {
                let mut query = vec![("prefix", prefix.clone()), ("limit", "1000".to_string())];
                if let Some(after) = &after {
                    query.push(("after", after.clone()));
                }
                let page: Option<KvKeys> = client
                    .send(client.request(Method::GET, &path).query(&query))
                    .await?;
                let page = page.context("the API sent no body")?;
                for key in &page.keys {
                    writeln!(out, "{key}")?;
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
    }
    Ok(())
}
