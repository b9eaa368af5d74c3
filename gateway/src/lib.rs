//! Okra's data plane: the Pingora edge, the Wasmtime runtime that runs each
//! request in a fresh component instance, limits, and metrics.
//!
//! Layers, each importing only those after it: `edge` (the Pingora app),
//! `app` (apps, snapshots, the store watcher, chaining), `guest` (engines,
//! instances, host interfaces, admission), `outbound` (guests' HTTP sends),
//! `context` (what a request carries). `metrics` and `logging` are leaves
//! anyone may use; `config`, `control` and `server` wire the process
//! together above all of them. See `ARCHITECTURE.md`.

pub mod app;
pub mod config;
pub mod context;
pub mod control;
pub mod edge;
pub mod guest;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod server;
