//! The `[control]` section: the store, the REST API and the hostnames
//! tenants' apps answer on, with its flags. The `control-plane` binary takes
//! these flags too.

use super::layers::Section;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The control-plane side: the store, the embedded API, hostnames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// `file:PATH` or `redis://...`; `None` means file:<data_dir>, or no
    /// store at all when apps are given with `--app`.
    pub store: Option<String>,
    /// Local state: the file store by default, the admin token, the bundle
    /// and compile caches.
    pub data_dir: PathBuf,
    /// The REST API's listener.
    pub api_listen: SocketAddr,
    /// Whether this process serves the REST API.
    pub api: bool,
    /// Apps answer on `{app}.{tenant}.{base_domain}`.
    pub base_domain: String,
    /// The largest bundle a deploy may upload, compressed, in bytes.
    pub max_bundle_bytes: u64,
    /// Hostnames no tenant may claim, besides the `[[apps]]` hosts.
    pub reserved_hosts: Vec<String>,
    /// Whether a store found at an older version than the configuration
    /// served is applied (a deliberate restore) rather than refused.
    pub accept_store_regression: bool,
    /// The port end users reach apps on, shown in deploy answers' URLs;
    /// `None`: the gateway's own `listen` port (the control plane: 80).
    pub public_port: Option<u16>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            store: None,
            data_dir: PathBuf::from("okra-data"),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            api: true,
            base_domain: "localhost".into(),
            max_bundle_bytes: 64 << 20,
            reserved_hosts: Vec::new(),
            accept_store_regression: false,
            public_port: None,
        }
    }
}

impl ControlConfig {
    /// The store URL to open, if any.
    pub fn store_url(&self, has_static_apps: bool) -> Option<String> {
        match &self.store {
            Some(url) => Some(url.clone()),
            None if has_static_apps => None,
            None => Some(format!("file:{}", self.data_dir.display())),
        }
    }
}

/// The flags of `[control]`, named after its keys.
#[derive(Clone, Debug, Default, clap::Args, Serialize)]
pub struct ControlArgs {
    /// Where tenants and apps are stored: file:PATH or redis://HOST:PORT
    /// [default: file:<data-dir>; with --app and no --store, no store at all].
    #[arg(long, env = "OKRA_STORE")]
    pub store: Option<String>,
    /// Local state: the file store (by default), the admin token, bundle and
    /// compile caches.
    #[arg(long, env = "OKRA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The REST API's listener.
    #[arg(long, env = "OKRA_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// Do not serve the REST API (a cluster's gateways; the control-plane binary serves it).
    #[arg(long, env = "OKRA_NO_API")]
    #[serde(skip)]
    pub no_api: bool,
    /// Apps answer on {app}.{tenant}.<base-domain>.
    #[arg(long, env = "OKRA_BASE_DOMAIN")]
    pub base_domain: Option<String>,
    /// Largest app bundle a deploy may upload, compressed, in bytes.
    #[arg(long, env = "OKRA_MAX_BUNDLE_BYTES")]
    pub max_bundle_bytes: Option<u64>,
    /// A hostname no tenant may claim, besides the `--app` hosts (repeatable;
    /// for a control plane whose gateways serve `--app` apps).
    #[arg(long = "reserved-host", value_name = "HOST")]
    #[serde(skip)]
    pub reserved_hosts: Vec<String>,
    /// Apply a store found at an older version than the configuration
    /// served (a deliberate restore); without it the gateway keeps serving
    /// and reports the store as behind.
    #[arg(long, env = "OKRA_ACCEPT_STORE_REGRESSION")]
    #[serde(skip)]
    pub accept_store_regression: bool,
    /// The port end users reach apps on, shown in the URLs a deploy answers
    /// with (behind a load balancer on 80 or 443, say so) [default: the
    /// gateway's --listen port; for the control plane, 80].
    #[arg(long, env = "OKRA_PUBLIC_PORT")]
    pub public_port: Option<u16>,
}

impl Section for ControlArgs {
    const KEY: Option<&'static str> = Some("control");
}

impl ControlArgs {
    /// Applies the flags that do not merge by key: `--no-api`,
    /// `--accept-store-regression`, and the repeated `--reserved-host`,
    /// which adds to the file's list.
    pub fn extend(&self, config: &mut ControlConfig) {
        if self.no_api {
            config.api = false;
        }
        if self.accept_store_regression {
            config.accept_store_regression = true;
        }
        config
            .reserved_hosts
            .extend(self.reserved_hosts.iter().cloned());
    }
}
