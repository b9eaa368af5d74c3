//! Name resolution for outbound requests: literal addresses pass through,
//! operator-pinned names (`--resolve HOST=IP`, like curl's) answer from the
//! configuration, everything else asks the system resolver. The addresses
//! returned here are the only ones the connector may dial.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Resolves outbound hosts.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    pinned: HashMap<String, Vec<IpAddr>>,
}

/// Why a host has no addresses.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("DNS lookup of {host} failed: {source}")]
    Lookup {
        host: String,
        source: std::io::Error,
    },
    #[error("DNS lookup of {0} returned no addresses")]
    NoAddresses(String),
}

impl Resolver {
    /// Parses `HOST=IP[,IP...]` pins.
    pub(crate) fn new(pins: &[String]) -> anyhow::Result<Self> {
        let mut pinned: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for pin in pins {
            let (host, ips) = pin.split_once('=').ok_or_else(|| {
                anyhow::anyhow!(
                    "resolve {pin:?}: expected HOST=IP[,IP...], e.g. api.example=192.0.2.7"
                )
            })?;
            let host = normalise(host.trim());
            if host.is_empty() {
                anyhow::bail!("resolve {pin:?}: the host is empty");
            }
            let addresses = ips
                .split(',')
                .map(|ip| {
                    ip.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .map_err(|_| {
                            anyhow::anyhow!("resolve {pin:?}: {ip:?} is not an IP address")
                        })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            pinned.entry(host).or_default().extend(addresses);
        }
        Ok(Resolver { pinned })
    }

    /// Every address `host` (a name, an IPv4 address or a bracketed or bare
    /// IPv6 address, as in a normalised URI) stands for, with `port`.
    pub(crate) async fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let name = normalise(host);
        if let Some(ips) = self.pinned.get(&name) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|source| ResolveError::Lookup {
                host: name.clone(),
                source,
            })?
            .collect();
        if found.is_empty() {
            return Err(ResolveError::NoAddresses(name));
        }
        Ok(found)
    }
}

fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_and_pins_answer_without_dns() {
        let r = Resolver::new(&["Api.Example.=10.0.0.1,[::1]".into()]).unwrap();
        let got = r.lookup("api.example", 80).await.unwrap();
        assert_eq!(
            got,
            vec!["10.0.0.1:80".parse().unwrap(), "[::1]:80".parse().unwrap()]
        );
        let got = r.lookup("192.0.2.1", 443).await.unwrap();
        assert_eq!(got, vec!["192.0.2.1:443".parse().unwrap()]);
        let got = r.lookup("[::1]", 443).await.unwrap();
        assert_eq!(got, vec!["[::1]:443".parse().unwrap()]);
        assert!(Resolver::new(&["nohost".into()]).is_err());
        let e = Resolver::new(&["a=not-ip".into()]).unwrap_err();
        assert!(e.to_string().contains("\"not-ip\""), "{e}");
    }
}
