//! Allowed IPs: prefixes ([`IpNet`]) and the longest-prefix table that maps them to peers.

mod net;
mod table;

pub use net::{IpNet, IpNetError};
pub use table::AllowedIps;
