//! A wg-quick configuration: the `[Interface]` section and its `[Peer]`s.

use std::net::{IpAddr, SocketAddr};

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
    /// `Table =`: `None` is wg-quick's default (`auto`).
    pub table: Option<String>,
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

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Addr(a) => write!(f, "{a}"),
            Endpoint::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
    pub endpoint: Option<Endpoint>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
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
                    allowed_ips: p.allowed_ips.iter().copied().map(AllowedIpChange::Add).collect(),
                    ..PeerUpdate::new(p.public_key)
                })
                .collect(),
        }
    }
}
