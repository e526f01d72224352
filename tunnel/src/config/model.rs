//! A wg-quick configuration: the `[Interface]` section and its `[Peer]`s.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::key::{PresharedKey, PrivateKey, PublicKey};
use crate::route::IpNet;
use crate::uapi::{AllowedIpChange, DeviceUpdate, PeerUpdate};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub interface: InterfaceConfig,
    pub peers: Vec<PeerConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub private_key: Option<PrivateKey>,
    pub addresses: Vec<IpNet>,
    pub listen_port: Option<u16>,
    pub mtu: Option<u32>,
    pub dns: Vec<IpAddr>,
    /// DNS search domains (non-IP entries of `DNS =`).
    pub dns_search: Vec<String>,
    /// `Table =`: `None` is wg-quick's default (`auto`). The parser stores `off`/`auto` in
    /// lower case, numbers in decimal and names as written; [`InterfaceConfig::routing_table`]
    /// gives the typed form.
    pub table: Option<String>,
    /// `FwMark =`; `off` is `None`.
    pub fwmark: Option<u32>,
    pub pre_up: Vec<String>,
    pub post_up: Vec<String>,
    pub pre_down: Vec<String>,
    pub post_down: Vec<String>,
    pub save_config: bool,
}

/// An endpoint as written: a literal address or a host name resolved when the tunnel starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Addr(SocketAddr),
    Host(String, u16),
}

/// A host-name endpoint could not be turned into an address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve endpoint host `{host}`: {source}")]
    Lookup {
        host: String,
        source: std::io::Error,
    },
    #[error("endpoint host `{host}` has no addresses")]
    NoAddress { host: String },
}

impl Endpoint {
    /// The address to send to. A host name is looked up now (blocking, through the system
    /// resolver); like `wg`, an IPv4 address is preferred when the name has both families.
    pub fn resolve(&self) -> Result<SocketAddr, ResolveError> {
        match self {
            Endpoint::Addr(a) => Ok(*a),
            Endpoint::Host(host, port) => {
                let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|source| ResolveError::Lookup {
                        host: host.clone(),
                        source,
                    })?
                    .collect();
                addrs
                    .iter()
                    .find(|a| a.is_ipv4())
                    .or_else(|| addrs.first())
                    .copied()
                    .ok_or_else(|| ResolveError::NoAddress { host: host.clone() })
            }
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Addr(a) => write!(f, "{a}"),
            Endpoint::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// wg-quick's `Table =` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// Add no routes.
    Off,
    /// The default: routes in `main`, or wg-quick's policy routing for default routes.
    Auto,
    /// A numeric table, 1..=2^32-1.
    Id(u32),
    /// A name from `/etc/iproute2/rt_tables` (such as `main`).
    Name(String),
}

impl InterfaceConfig {
    /// The typed `Table =` setting (`auto` when absent).
    pub fn routing_table(&self) -> Table {
        match self.table.as_deref() {
            None => Table::Auto,
            Some(t) if t.eq_ignore_ascii_case("auto") => Table::Auto,
            Some(t) if t.eq_ignore_ascii_case("off") => Table::Off,
            Some(t) => match t.parse::<u32>() {
                Ok(n) if n > 0 => Table::Id(n),
                _ => Table::Name(t.to_owned()),
            },
        }
    }

    /// True if any `Address` is IPv6 (wg-quick's MTU rule then needs at least 1280).
    pub fn has_ipv6(&self) -> bool {
        self.addresses.iter().any(|a| !a.is_ipv4())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
    pub endpoint: Option<Endpoint>,
    pub allowed_ips: Vec<IpNet>,
    /// Seconds; `off` is `None`.
    pub persistent_keepalive: Option<u16>,
}

impl PeerConfig {
    /// A peer with only its public key set.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            preshared_key: None,
            endpoint: None,
            allowed_ips: Vec::new(),
            persistent_keepalive: None,
        }
    }
}

impl Config {
    /// The `wg setconf` transaction for this file: replace everything with what it says.
    /// Host-name endpoints must already have been resolved by `resolve`; unresolved ones are
    /// left unset.
    pub fn to_update(&self, resolve: &dyn Fn(&Endpoint) -> Option<SocketAddr>) -> DeviceUpdate {
        DeviceUpdate {
            private_key: Some(self.interface.private_key),
            listen_port: Some(self.interface.listen_port.unwrap_or(0)),
            fwmark: Some(self.interface.fwmark.unwrap_or(0)),
            replace_peers: true,
            peers: self
                .peers
                .iter()
                .map(|p| PeerUpdate {
                    preshared_key: Some(p.preshared_key),
                    endpoint: p.endpoint.as_ref().and_then(resolve),
                    persistent_keepalive: Some(p.persistent_keepalive.unwrap_or(0)),
                    replace_allowed_ips: true,
                    allowed_ips: p
                        .allowed_ips
                        .iter()
                        .copied()
                        .map(AllowedIpChange::Add)
                        .collect(),
                    ..PeerUpdate::new(p.public_key)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_literal_and_host() {
        let literal: SocketAddr = "[fd00::1]:51820".parse().expect("addr");
        assert_eq!(Endpoint::Addr(literal).resolve().expect("literal"), literal);
        // `localhost` comes from /etc/hosts (no network); IPv4 wins when both exist.
        let got = Endpoint::Host("localhost".into(), 51820)
            .resolve()
            .expect("localhost resolves");
        assert!(got.ip().is_loopback() && got.port() == 51820, "{got}");
        assert!(got.is_ipv4(), "IPv4 preferred, got {got}");
        let e = Endpoint::Host("no-such-host.invalid".into(), 1)
            .resolve()
            .expect_err(".invalid never resolves");
        assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
    }

    #[test]
    fn routing_table_forms() {
        let with = |t: Option<&str>| InterfaceConfig {
            table: t.map(str::to_owned),
            ..Default::default()
        };
        assert_eq!(with(None).routing_table(), Table::Auto);
        assert_eq!(with(Some("off")).routing_table(), Table::Off);
        assert_eq!(with(Some("auto")).routing_table(), Table::Auto);
        assert_eq!(with(Some("1234")).routing_table(), Table::Id(1234));
        assert_eq!(
            with(Some("main")).routing_table(),
            Table::Name("main".into())
        );
    }
}
