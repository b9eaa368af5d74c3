//! The operator's `--block-networks` list: address ranges no guest request may
//! reach, whatever a tenant's allow-list says. Checked against every address
//! DNS returns, after the lookup; IPv6 forms that embed an IPv4 address
//! (mapped, compatible, NAT64) are checked as that IPv4 address too.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges that are not on the public internet.
const PRIVATE_V4: &[&str] = &[
    "0.0.0.0/8",       // "this network"
    "10.0.0.0/8",      // RFC 1918
    "100.64.0.0/10",   // CGNAT
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local, incl. cloud metadata 169.254.169.254
    "172.16.0.0/12",   // RFC 1918
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // TEST-NET-1
    "192.88.99.0/24",  // 6to4 relay anycast
    "192.168.0.0/16",  // RFC 1918
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // TEST-NET-2
    "203.0.113.0/24",  // TEST-NET-3
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, incl. broadcast 255.255.255.255
];

/// IPv6 ranges that are not on the public internet.
const PRIVATE_V6: &[&str] = &[
    "::/128",        // unspecified
    "::1/128",       // loopback
    "100::/64",      // discard
    "2001:db8::/32", // documentation
    "fc00::/7",      // unique local
    "fe80::/10",     // link-local
    "fec0::/10",     // site-local (deprecated, still routed by some stacks)
    "ff00::/8",      // multicast
];

/// A parsed block list. Empty means nothing is blocked.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlockedNetworks {
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

impl BlockedNetworks {
    /// Parses entries: `private`, `none` (alone: block nothing), or CIDRs such
    /// as `203.0.113.0/24` and `2001:db8::/32` (a bare address is a /32 or /128).
    pub(crate) fn parse(entries: &[String]) -> anyhow::Result<Self> {
        let mut blocked = BlockedNetworks::default();
        let entries: Vec<&str> = entries
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.contains(&"none") {
            if entries.len() > 1 {
                anyhow::bail!(
                    "block_networks: `none` turns blocking off and cannot be combined with {:?}",
                    entries.iter().filter(|e| **e != "none").collect::<Vec<_>>()
                );
            }
            return Ok(blocked);
        }
        for entry in entries {
            if entry == "private" {
                for net in PRIVATE_V4.iter().chain(PRIVATE_V6) {
                    blocked.add(net.parse().expect("built-in network"));
                }
                continue;
            }
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "block_networks: {entry:?} is not `private`, `none` or a network such as `10.0.0.0/8`"
                    )
                })?;
            blocked.add(net.trunc());
        }
        Ok(blocked)
    }

    fn add(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => self.v4.push(n),
            IpNet::V6(n) => self.v6.push(n),
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` may not be connected to.
    pub(crate) fn is_blocked(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.iter().any(|n| n.contains(&v4)),
            IpAddr::V6(v6) => {
                self.v6.iter().any(|n| n.contains(&v6))
                    || embedded_v4(v6).is_some_and(|v4| self.is_blocked(IpAddr::V4(v4)))
            }
        }
    }
}

/// The IPv4 address an IPv6 address stands for: `::ffff:a.b.c.d` (mapped),
/// `::a.b.c.d` (compatible, deprecated) and `64:ff9b::a.b.c.d` (NAT64).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6] == [0; 6];
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (compatible || nat64).then_some(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> BlockedNetworks {
        BlockedNetworks::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn blocked(b: &BlockedNetworks, ip: &str) -> bool {
        b.is_blocked(ip.parse().unwrap())
    }

    #[test]
    fn spin_table_f_custom_networks() {
        let b = list(&["123.123.0.0/16", "2001::/96"]);
        for ip in ["123.123.123.123", "2001::1000", "::ffff:123.123.123.123"] {
            assert!(blocked(&b, ip), "{ip}");
        }
        for ip in ["123.100.100.100", "2002::1000"] {
            assert!(!blocked(&b, ip), "{ip}");
        }
    }

    #[test]
    fn private_blocks_every_non_public_range_and_its_v6_forms() {
        let b = list(&["private"]);
        for ip in [
            "0.0.0.0",
            "10.10.10.10",
            "100.64.1.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.168.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.10.10.10",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "fc00::f00d",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(blocked(&b, ip), "{ip}");
        }
        for ip in [
            "123.123.123.123",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2600::beef",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!blocked(&b, ip), "{ip}");
        }
    }

    #[test]
    fn none_blocks_nothing_and_bad_entries_are_named() {
        assert!(list(&["none"]).is_empty());
        assert!(list(&[]).is_empty());
        assert!(!blocked(&list(&["none"]), "127.0.0.1"));
        let e = BlockedNetworks::parse(&["private,none".into()]).unwrap_err();
        assert!(e.to_string().contains("cannot be combined"), "{e}");
        let e = BlockedNetworks::parse(&["10.0.0.0/33".into()]).unwrap_err();
        assert!(e.to_string().contains("\"10.0.0.0/33\""), "{e}");
        // A bare address blocks just itself; lists may be comma-separated.
        let b = list(&["1.1.1.1, 10.0.0.0/8"]);
        assert!(blocked(&b, "1.1.1.1") && blocked(&b, "10.2.3.4") && !blocked(&b, "1.1.1.2"));
    }
}
