//! Outbound HTTP from guests. Every wasi:http send (0.2 and 0.3) arrives at
//! [`OutboundHooks::send_request`], which checks the component's
//! `allowed_outbound_hosts`, then hands `*.spin.internal` requests to the
//! app's [`ChainTarget`] (in-process), sends self-routes to a peer, and hands everything else,
//! after Okra's `http.fetch` policy (operator, tenant, app and component
//! scopes), to its tenant's pool; the pool's connector resolves the host and
//! refuses blocked networks before it dials. A refusal reaches the guest as
//! a wasi:http error code, never a trap. Raw wasi:sockets connects pass
//! the same allow-list and block list in [`SocketGate`], and guests'
//! Redis, MQTT and database clients pass them in `service`.

mod audit;
mod block_networks;
mod body;
mod config;
mod connector;
mod hooks;
mod peers;
mod pool;
mod resolver;
mod service;
mod shared;
mod sockets;

pub(crate) use body::CappedBody;
pub use config::{OutboundArgs, OutboundConfig};
pub(crate) use connector::ConnectError;
pub(crate) use hooks::{ChainTarget, ComponentOutbound, OutboundHooks, inject_headers};
pub(crate) use peers::Peers;
pub(crate) use pool::SendFailure;
pub(crate) use service::{ServiceGrant, ServiceRefusal};
pub(crate) use shared::Outbound;
pub(crate) use sockets::SocketGate;
