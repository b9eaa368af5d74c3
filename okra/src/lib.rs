//! Okra's product crate: the binaries an operator and a tenant run, apart
//! from `gateway`, which stays with the data plane it starts.
//!
//! - `okra` ([`commands`]): `okra up`, `okra build`, and the REST API's
//!   client (`okra deploy`, tenants, apps, domains, variables). Only this
//!   crate links an HTTP client for the API.
//! - `control-plane` ([`control_plane`]): the REST API for a cluster of
//!   gateways sharing a Redis store, with its own flags (store, API,
//!   hostnames, limits, quotas) rather than every gateway flag.
//!
//! The glue that embeds the API in a gateway and checks deploys with the
//! gateway's loader is `gateway::control`: the `gateway` binary serves the
//! embedded API itself, so that glue lives where that binary can reach it,
//! and the `control-plane` binary here calls the same code.

#![warn(unreachable_pub, missing_docs)]

pub mod commands;
pub mod control_plane;
