//! SaveConfig: the running state written back over the wg-quick file on the way down.

use std::path::Path;

use crate::config::{Config, Endpoint, PeerConfig};
use crate::uapi::DeviceSnapshot;

/// The original `[Interface]` settings (addresses, DNS, hooks …) with the live keys, port,
/// mark and peers, as `wg-quick save` produces.
pub fn merged(original: &Config, live: &DeviceSnapshot) -> Config {
    let mut out = original.clone();
    out.interface.private_key = live.private_key;
    out.interface.listen_port = (live.listen_port != 0).then_some(live.listen_port);
    out.interface.fwmark = (live.fwmark != 0).then_some(live.fwmark);
    out.peers = live
        .peers
        .iter()
        .map(|p| PeerConfig {
            public_key: p.public_key,
            preshared_key: p.preshared_key,
            endpoint: p.endpoint.map(Endpoint::Addr),
            allowed_ips: p.allowed_ips.clone(),
            persistent_keepalive: (p.persistent_keepalive != 0).then_some(p.persistent_keepalive),
        })
        .collect();
    out
}

pub fn save(path: &Path, original: &Config, live: &DeviceSnapshot) -> std::io::Result<()> {
    merged(original, live).save(path)
}
