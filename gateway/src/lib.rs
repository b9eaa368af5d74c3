//! Okra's data plane: the Pingora edge, the Wasmtime runtime that runs each
//! request in a fresh component instance, limits, and metrics.
//!
//! Layers, each importing only those after it: `edge` (the Pingora app),
//! `app` (apps, snapshots, the store watcher, chaining), `guest` (engines,
//! instances, host interfaces, admission), `outbound` (guests' HTTP sends),
//! `context` (what a request carries). `metrics` and `logging` are leaves
//! anyone may use; `config`, `control` and `server` wire the process
//! together above all of them. See `ARCHITECTURE.md`.

#![warn(unreachable_pub, missing_docs)]

pub(crate) mod app;
pub mod config;
pub(crate) mod context;
pub mod control;
pub(crate) mod drain;
pub(crate) mod edge;
pub(crate) mod guest;
pub(crate) mod in_flight;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod outbound;
pub(crate) mod readiness;
pub mod server;
