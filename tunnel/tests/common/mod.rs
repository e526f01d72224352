//! Shared helpers for the root-free tunnel tests.
#![allow(dead_code, clippy::unwrap_used)]

use edgewire_tunnel::key::{PrivateKey, PublicKey};
use edgewire_tunnel::route::IpNet;
use edgewire_tunnel::uapi::{AllowedIpChange, DeviceUpdate, PeerUpdate};
use std::net::{Ipv4Addr, SocketAddr};

/// A minimal IPv4 packet (UDP protocol number, header checksum unset) carrying `payload`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

pub struct Side {
    pub key: PrivateKey,
    pub public: PublicKey,
}

pub fn side() -> Side {
    let key = PrivateKey::generate();
    Side {
        public: key.public_key(),
        key,
    }
}

/// `[Interface] PrivateKey, ListenPort` + one `[Peer]` as a UAPI transaction.
pub fn config(
    me: &Side,
    port: u16,
    peer: &Side,
    endpoint: Option<SocketAddr>,
    allowed: &str,
    keepalive: u16,
) -> DeviceUpdate {
    DeviceUpdate {
        private_key: Some(Some(me.key)),
        listen_port: Some(port),
        replace_peers: true,
        peers: vec![PeerUpdate {
            endpoint,
            persistent_keepalive: Some(keepalive),
            replace_allowed_ips: true,
            allowed_ips: vec![AllowedIpChange::Add(allowed.parse::<IpNet>().unwrap())],
            ..PeerUpdate::new(peer.public)
        }],
        ..Default::default()
    }
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
}
