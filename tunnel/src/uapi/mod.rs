//! The cross-platform WireGuard userspace API (`wg`, `wg-quick`, `wg syncconf` speak it).
//!
//! - [`model`]: typed `set` commands and `get` snapshots;
//! - [`protocol`]: parsing and formatting over any `Read`/`Write`, errors as errno;
//! - [`server`]: the unix socket at `/var/run/wireguard/IFACE.sock`;
//! - [`memory`]: an in-memory device with wireguard-go's `set` semantics, for tests.

pub mod memory;
pub mod model;
pub mod protocol;
pub mod server;
mod set;
#[cfg(test)]
mod vectors;

pub use memory::{apply_update, MemoryDevice};
pub use model::{
    AllowedIpChange, DeviceSnapshot, DeviceUpdate, PeerSnapshot, PeerUpdate, SetError, UapiDevice,
};
pub use protocol::{parse_set, serve_connection, write_get};
pub use server::{UapiError, UapiServer, DEFAULT_SOCKET_DIR};
