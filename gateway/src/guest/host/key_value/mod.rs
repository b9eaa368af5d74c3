//! Key-value for guests: Spin's own interface, `fermyon:spin/key-value@2.0.0`
//! (`spin`), and `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` (`wasi`),
//! over the same stores (`store`): a guest opens only the stores its
//! component lists in `key_value_stores` (others are `access-denied`), and
//! a store is its app's own (`grant`), kept in the gateway's backend
//! (`okra_kv`: embedded, or the cluster's Redis), under its tenant's quota.
//!
//! `spin:key-value@3.0.0` (spin-sdk 6/7, `spin_v3`) is on the async ABI,
//! so it links separately ([`provides_v3`]), onto wasi:http 0.3 components.

pub(crate) mod grant;
mod spin;
mod spin_v3;
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

/// True when `interface` is `spin:key-value@3.0.0`, on the async ABI.
pub(crate) fn provides_v3(interface: &str) -> bool {
    interface == spin_v3::INTERFACE
}

/// Links `spin:key-value@3.0.0` (onto a linker with concurrency on).
pub(crate) fn add_v3_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    spin_v3::add_to_linker(linker)
}
