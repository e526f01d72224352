//! Typed UAPI commands and snapshots, independent of the text protocol.

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::key::{PresharedKey, PrivateKey, PublicKey};
use crate::route::IpNet;

/// One `set=1` transaction. Applied all-or-nothing by [`UapiDevice::set`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceUpdate {
    /// `Some(None)`: remove the key (an all-zero key on the wire).
    pub private_key: Option<Option<PrivateKey>>,
    pub listen_port: Option<u16>,
    /// `Some(0)` turns the mark off.
    pub fwmark: Option<u32>,
    pub replace_peers: bool,
    pub peers: Vec<PeerUpdate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUpdate {
    pub public_key: PublicKey,
    pub remove: bool,
    /// Only change the peer if it exists already; never create it.
    pub update_only: bool,
    /// `Some(None)`: remove the preshared key.
    pub preshared_key: Option<Option<PresharedKey>>,
    pub endpoint: Option<SocketAddr>,
    /// Seconds; `Some(0)` turns it off.
    pub persistent_keepalive: Option<u16>,
    pub replace_allowed_ips: bool,
    pub allowed_ips: Vec<AllowedIpChange>,
    /// Only version 1 exists; anything else is refused with EPROTO... recorded here as given.
    pub protocol_version: Option<u32>,
}

impl PeerUpdate {
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
            protocol_version: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowedIpChange {
    Add(IpNet),
    /// `allowed_ip=-10.0.0.0/24`: remove just this prefix.
    Remove(IpNet),
}

/// A `get=1` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSnapshot {
    pub private_key: Option<PrivateKey>,
    pub listen_port: u16,
    pub fwmark: u32,
    pub peers: Vec<PeerSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: u16,
    /// Wall-clock time of the last completed handshake.
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub allowed_ips: Vec<IpNet>,
    pub protocol_version: u32,
}

/// Why a `set` was refused; `errno` is what the UAPI reply carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SetError {
    pub errno: i32,
    pub message: String,
}

impl SetError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            errno: libc::EINVAL,
            message: message.into(),
        }
    }
    pub fn port_in_use(message: impl Into<String>) -> Self {
        Self {
            errno: libc::EADDRINUSE,
            message: message.into(),
        }
    }
    pub fn io(message: impl Into<String>) -> Self {
        Self {
            errno: libc::EIO,
            message: message.into(),
        }
    }
}

/// What the UAPI server needs from a running interface.
pub trait UapiDevice: Send + Sync {
    fn get(&self) -> DeviceSnapshot;
    /// Validate the whole transaction, then apply it; on error nothing has changed.
    fn set(&self, update: DeviceUpdate) -> Result<(), SetError>;
}
