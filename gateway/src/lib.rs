//! Okra's data plane: the Pingora edge, the Wasmtime runtime that runs each
//! request in a fresh component instance, limits, and metrics.

pub mod admission;
pub mod app;
pub mod component;
pub mod config;
pub mod control;
pub mod direct_p2;
pub mod edge;
pub mod guest_output;
pub mod guest_request;
pub mod guest_state;
pub mod host_table;
pub mod inbound;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod rate_limit;
pub mod ready_body;
pub mod request_body;
pub mod request_link;
pub mod runtime;
pub mod server;
pub mod snapshot_builder;
pub mod spin_stubs;
pub mod spin_variables;
