//! A cap on the TCP sockets one instance may create through wasi:sockets
//! 0.2 (`tcp-create-socket`): each is an OS file descriptor from the moment
//! it exists, connected or not, so a guest looping on it could use up the
//! gateway's descriptors for every tenant. Past [`MAX_SOCKETS_PER_INSTANCE`]
//! the guest gets the interface's own `new-socket-limit`. Which addresses a
//! socket may reach is `crate::outbound::SocketGate`'s business.

use crate::guest::state::GuestState;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket;
use wasmtime_wasi::p2::{SocketError, SocketResult, TcpSocket};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

/// TCP sockets one instance may create.
pub(crate) const MAX_SOCKETS_PER_INSTANCE: u32 = 16;

/// Replaces `tcp-create-socket` in `linker` (which already has WASI) with
/// the counting one.
pub(crate) fn cap_socket_creation(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = tcp_create_socket::add_to_linker::<GuestState, CountedSockets>(linker, counted);
    linker.allow_shadowing(false);
    added
}

/// The data the counting `tcp-create-socket` works on.
struct CountedSockets;

impl HasData for CountedSockets {
    type Data<'a> = CountedSocketsView<'a>;
}

/// WASI's sockets context and the instance's count of sockets created.
struct CountedSocketsView<'a> {
    sockets: WasiSocketsCtxView<'a>,
    created: &'a mut u32,
}

fn counted(state: &mut GuestState) -> CountedSocketsView<'_> {
    CountedSocketsView {
        sockets: WasiSocketsCtxView {
            ctx: state.wasi.sockets(),
            table: &mut state.table,
        },
        created: &mut state.sockets_created,
    }
}

// The error conversion the generated bindings ask of the same data.
impl network::Host for CountedSocketsView<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.sockets, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime_wasi::p2::bindings::io::error::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.sockets, err)
    }
}

impl network::HostNetwork for CountedSocketsView<'_> {
    fn drop(&mut self, this: Resource<network::Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets, this)
    }
}

impl tcp_create_socket::Host for CountedSocketsView<'_> {
    fn create_tcp_socket(
        &mut self,
        address_family: IpAddressFamily,
    ) -> SocketResult<Resource<TcpSocket>> {
        if *self.created >= MAX_SOCKETS_PER_INSTANCE {
            return Err(ErrorCode::NewSocketLimit.into());
        }
        *self.created += 1;
        tcp_create_socket::Host::create_tcp_socket(&mut self.sockets, address_family)
    }
}
