//! Where the API is and who the CLI acts as: flags, then `OKRA_SERVER`,
//! `OKRA_TOKEN` and `OKRA_TENANT`, then the CLI's config file.

use super::Cli;
use anyhow::Context as _;
use serde::Deserialize;
use std::path::PathBuf;

/// Where the API is and who we are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Settings {
    pub(super) server: Option<String>,
    pub(super) token: Option<String>,
    pub(super) tenant: Option<String>,
}

impl Settings {
    pub(super) fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
        let chosen = cli
            .config
            .clone()
            .or_else(|| std::env::var_os("OKRA_CLI_CONFIG").map(PathBuf::from));
        if let Some(path) = &chosen
            && !path.exists()
        {
            anyhow::bail!(
                "the config file {} does not exist (given with --config or OKRA_CLI_CONFIG)",
                path.display()
            );
        }
        let path = chosen.or_else(|| {
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
                .or(file.server)
                .map(|server| with_scheme(&server)),
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

/// `server` with `http://` in front when it names no scheme, as in
/// `--server 127.0.0.1:8081`.
fn with_scheme(server: &str) -> String {
    if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

#[cfg(test)]
mod tests {
    use super::with_scheme;

    #[test]
    fn a_server_without_a_scheme_is_http() {
        assert_eq!(with_scheme("127.0.0.1:8081"), "http://127.0.0.1:8081");
        assert_eq!(with_scheme("https://okra.example"), "https://okra.example");
    }
}
