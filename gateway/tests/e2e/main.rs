//! The gateway's end-to-end tests, in one test binary: each module starts
//! the real `gateway` (and `control-plane`, `okra`) binaries on free ports and
//! talks to them over real sockets; `layers` checks the source's layering.

mod cluster;
mod control_plane;
mod edge;
mod inside_app;
mod layers;
mod limits;
mod okra_cli;
mod outbound;
mod support;
mod variables;
