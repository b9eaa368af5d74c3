//! Running guests: the Wasmtime engines, core modules made components
//! (`componentize`), one compiled component and the
//! factory that gives each request a fresh `Store`, the two ways a request
//! reaches an instance (`direct_p2` for wasi:http 0.2 on the direct engine,
//! `handler` through `ProxyHandler` for everything else), what a store
//! carries, the per-tenant admission (instance slots and CPU turns), and the
//! host interfaces a Spin guest imports (`host/`: variables, and the
//! platform interfaces still answered "unsupported").
//!
//! Imports point down: `guest` uses `outbound` (a guest's sends go through
//! its hook) and `context`, never `app` or `edge`.

pub(crate) mod admission;
pub(crate) mod component;
pub(crate) mod componentize;
pub(crate) mod direct_p2;
pub(crate) mod engine;
pub(crate) mod engine_config;
pub(crate) mod factory;
pub(crate) mod failure_log;
pub(crate) mod handler;
pub(crate) mod host;
pub(crate) mod lifecycle;
pub(crate) mod output;
pub(crate) mod rate_limit;
pub(crate) mod request;
pub(crate) mod state;
