//! Apps and the configuration they come from: loading a Spin manifest into
//! routes and components, the snapshot that maps hostnames to apps, the
//! builder that turns store records into snapshots, and chaining between an
//! app's components (which `outbound` reaches through [`crate::outbound::ChainTarget`]).
//!
//! Imports point down: `app` uses `guest`, `outbound` and `context`, never
//! `edge` or the process wiring.

pub mod builder;
pub mod chaining;
pub mod host_table;
pub mod loader;
pub mod snapshot;
pub mod watcher;

pub use loader::{App, AppServices, AppSource, RouteTarget, TenantSpec};
pub use snapshot::Snapshot;
