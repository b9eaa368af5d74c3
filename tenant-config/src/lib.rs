//! Okra's model: what a tenant's app is and what it is allowed to do.
//!
//! Pure data, parsing and validation: Spin manifests ([`manifest`]), Spin's
//! route semantics ([`routes`]), outbound allow-lists ([`allowed_hosts`]) and resource limits ([`limits`]). No async, no
//! network; the gateway enforces what this crate decides.

#![warn(unreachable_pub, missing_docs)]

pub mod allowed_hosts;
pub mod limits;
pub mod manifest;
pub mod paths;
pub mod policy;
pub mod routes;
pub mod spin_headers;
pub mod template;
pub mod variables;
pub mod whole;

pub use allowed_hosts::{AllowedHostError, AllowedHosts, OutboundUrl};
pub use limits::Limits;
pub use manifest::{
    AppManifest, Component, HttpTrigger, ManifestError, StaticResponse, TriggerHandler,
};
pub use paths::PathScope;
pub use routes::{RouteMatch, RoutePattern, RouteTable};
pub use variables::{AppVariables, VariableError, VariableValue};
