//! The cross-platform WireGuard userspace API (`wg`, `wg-quick`, `wg syncconf` speak it).
//!
//! - [`model`]: typed `set` commands and `get` snapshots;
//! - `protocol`: parsing and formatting over any `Read`/`Write`, errors as errno;
//! - `server`: the unix socket at `/var/run/wireguard/IFACE.sock`.

pub mod model;

pub use model::{AllowedIpChange, DeviceSnapshot, DeviceUpdate, PeerSnapshot, PeerUpdate, UapiDevice};
