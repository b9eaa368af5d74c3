//! Okra's end-to-end tests, in one test binary: each module starts the real
//! `gateway` (and `control-plane`, `okra`) binaries on free ports and talks
//! to them over real sockets. They live in the product crate, which owns
//! `okra` and `control-plane`; `gateway` is found beside them (see
//! `support::gateway_bin`).

mod cluster;
mod control_plane;
mod edge;
mod inside_app;
mod key_value;
mod lifecycle;
mod limits;
mod okra_cli;
mod outbound;
mod readme;
mod spin_services;
mod sqlite;
mod support;
mod variables;
