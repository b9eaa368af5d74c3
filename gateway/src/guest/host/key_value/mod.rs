//! Key-value for guests: Spin's own interface, `fermyon:spin/key-value@2.0.0`
//! (`spin`), and `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` (`wasi`),
//! over the same stores (`store`): a guest opens only the stores its
//! component lists in `key_value_stores` (others are `access-denied`), and
//! a store is its app's own, kept in the gateway's embedded backend
//! (`backend`).
//!
//! Not here yet: `spin:key-value@3.0.0`, a Redis backend, per-tenant quotas
//! on bytes, and the REST API over the data.

pub(crate) mod backend;
mod spin;
mod store;
mod wasi;

use crate::guest::state::GuestState;
use wasmtime::component::Linker;

/// True when `interface` (an import name, with version) is served here.
pub(crate) fn provides(interface: &str) -> bool {
    interface == spin::INTERFACE || wasi::provides(interface)
}

/// Links Spin's key-value interface and wasi:keyvalue's three.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    spin::add_to_linker(linker)?;
    wasi::add_to_linker(linker)
}
