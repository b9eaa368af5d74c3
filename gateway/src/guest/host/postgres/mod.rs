//! Outbound PostgreSQL for guests, with tokio-postgres, as Spin serves it:
//! `spin:postgres/postgres@4.0.0` (`v4`, every value type) and
//! `fermyon:spin/postgres@2.0.0` (`rdbms`, spin-sdk 2 to 5's `pg`, the
//! older value set), both over one kind of session (`session`): every host
//! of the connection string must be in `allowed_outbound_hosts`, the first
//! is dialled at a vetted address through the tenant's service gate, and
//! one `open` is one backend session until the guest drops it.

mod bindings;
mod rdbms;
mod session;
mod v4;
mod values;

use crate::guest::state::GuestState;
use wasmtime::component::{HasSelf, Linker};

/// The imports this module serves.
const INTERFACES: [&str; 2] = [
    "spin:postgres/postgres@4.0.0",
    "fermyon:spin/postgres@2.0.0",
];

/// True when `interface` (an import name, with version) is served here.
pub(crate) fn provides(interface: &str) -> bool {
    INTERFACES.contains(&interface)
}

/// Links both PostgreSQL interfaces.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    bindings::spin::postgres::postgres::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)?;
    rdbms::add_to_linker(linker)
}
