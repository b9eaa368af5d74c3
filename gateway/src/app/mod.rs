//! Apps and the configuration they come from: loading a Spin manifest into
//! routes and components, the snapshot that maps hostnames to apps, the
//! builder that turns store records into snapshots, and chaining between an
//! app's components (which `outbound` reaches through [`crate::outbound::ChainTarget`]).
//!
//! Imports point down: `app` uses `guest`, `outbound` and `context`, never
//! `edge` or the process wiring.

pub(crate) mod builder;
pub(crate) mod chaining;
pub(crate) mod host_table;
pub(crate) mod loader;
pub(crate) mod snapshot;
pub(crate) mod watcher;

pub(crate) use loader::{App, AppServices, AppSource, RouteTarget, TenantSpec};
pub(crate) use snapshot::Snapshot;
