//! wasi:sockets for guests: which socket addresses a component may use, as
//! Spin decides it. A TCP connect is allowed when an `allowed_outbound_hosts`
//! entry with the `tcp` or `*` scheme covers the address and port (a literal
//! address, a CIDR network, or `*`; names are not resolved here, so a
//! domain entry never covers a raw address), and the operator's
//! `--block-networks` does not hold the address. The implicit bind of a
//! connect is allowed; explicit binds, listening, UDP and name lookups are
//! not.
//!
//! A refusal reaches the guest as wasi:sockets `access-denied`, before any
//! packet leaves.

use super::block_networks::BlockedNetworks;
use std::net::SocketAddr;
use std::sync::Arc;
use tenant_config::allowed_hosts::{AllowedHosts, OutboundUrl, SchemeRule};
use wasmtime_wasi::sockets::SocketAddrUse;

/// One component's socket rules.
#[derive(Debug, Clone)]
pub(crate) struct SocketGate {
    allowed: AllowedHosts,
    blocked: Arc<BlockedNetworks>,
}

impl SocketGate {
    pub(crate) fn new(allowed: AllowedHosts, blocked: Arc<BlockedNetworks>) -> Self {
        SocketGate { allowed, blocked }
    }

    /// Whether any entry could let a TCP connect through (scheme `tcp` or
    /// `*`); without one the guest gets no TCP at all, not even sockets.
    pub(crate) fn allows_any_connect(&self) -> bool {
        self.allowed.entries().iter().any(|entry| {
            matches!(&entry.scheme, SchemeRule::Any)
                || matches!(&entry.scheme, SchemeRule::Named(s) if s == "tcp")
        })
    }

    /// Whether the guest may use `addr` for `usage`.
    pub(crate) fn allows(&self, addr: SocketAddr, usage: SocketAddrUse) -> bool {
        match usage {
            // What a connect asks for its implicit bind: any local address,
            // any port. Nothing is bound to a chosen address.
            SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
            SocketAddrUse::TcpConnect => self.allows_connect(addr),
            _ => false,
        }
    }

    fn allows_connect(&self, addr: SocketAddr) -> bool {
        !self.blocked.is_blocked(addr.ip()) && self.allowed.allows(&OutboundUrl::tcp_socket(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenant_config::allowed_hosts::AppContext;

    fn gate(entries: &[&str], blocked: &[&str]) -> SocketGate {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        let blocked: Vec<String> = blocked.iter().map(|e| e.to_string()).collect();
        let allowed = AllowedHosts::build(
            &entries,
            &AppContext {
                component_ids: &[],
                variable: &|_| None,
            },
        )
        .unwrap();
        SocketGate::new(allowed, Arc::new(BlockedNetworks::parse(&blocked).unwrap()))
    }

    fn connect(gate: &SocketGate, addr: &str) -> bool {
        gate.allows(addr.parse().unwrap(), SocketAddrUse::TcpConnect)
    }

    #[test]
    fn connects_follow_tcp_and_star_entries_by_address_and_port() {
        let g = gate(&["*://127.0.0.1:7", "tcp://10.1.0.0/16:*"], &["none"]);
        assert!(connect(&g, "127.0.0.1:7"));
        assert!(!connect(&g, "127.0.0.1:8"), "another port");
        assert!(!connect(&g, "127.0.0.2:7"), "another address");
        assert!(connect(&g, "10.1.200.3:5432"), "inside the network");
        assert!(!connect(&g, "10.2.0.1:5432"), "outside the network");
        // The same address spelled as IPv4-mapped IPv6.
        assert!(connect(&g, "[::ffff:127.0.0.1]:7"));
        assert!(!connect(&g, "[::ffff:127.0.0.2]:7"));
    }

    #[test]
    fn other_schemes_and_domains_never_cover_a_raw_socket() {
        let g = gate(
            &[
                "redis://127.0.0.1:7",
                "http://127.0.0.1:7",
                "udp://127.0.0.1:7",
                "*://localhost:7",
            ],
            &["none"],
        );
        assert!(!connect(&g, "127.0.0.1:7"));
    }

    #[test]
    fn the_operators_block_list_wins_over_the_allow_list() {
        let g = gate(&["*://*:*"], &["private"]);
        for addr in [
            "127.0.0.1:7",
            "[::1]:7",
            "[::ffff:10.0.0.1]:80",
            "169.254.169.254:80",
        ] {
            assert!(!connect(&g, addr), "{addr}");
        }
        assert!(connect(&g, "93.184.216.34:80"));
    }

    #[test]
    fn only_the_implicit_bind_of_a_connect_is_allowed() {
        let g = gate(&["*://*:*"], &["none"]);
        let bind = |addr: &str| g.allows(addr.parse().unwrap(), SocketAddrUse::TcpBind);
        assert!(bind("0.0.0.0:0"));
        assert!(bind("[::]:0"));
        assert!(!bind("0.0.0.0:8080"), "a chosen port");
        assert!(!bind("127.0.0.1:0"), "a chosen address");
        for usage in [
            SocketAddrUse::TcpListen,
            SocketAddrUse::TcpAccept,
            SocketAddrUse::UdpBind,
            SocketAddrUse::UdpSend,
            SocketAddrUse::UdpReceive,
        ] {
            assert!(!g.allows("93.184.216.34:80".parse().unwrap(), usage));
        }
    }
}
