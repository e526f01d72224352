//! [`MemoryDevice`]: a [`UapiDevice`] that only keeps state, with wireguard-go's `set`
//! semantics. For tests of anything that speaks UAPI (the real `wg` included) and for the
//! fuzz target; [`apply_update`] is the reference the real device's `set` should agree with.

use parking_lot::Mutex;

use crate::key::PrivateKey;
use crate::uapi::model::{
    AllowedIpChange, DeviceSnapshot, DeviceUpdate, PeerSnapshot, PeerUpdate, SetError, UapiDevice,
};

/// Device state in memory, plus a log of every accepted [`DeviceUpdate`].
#[derive(Default)]
pub struct MemoryDevice {
    state: Mutex<DeviceSnapshot>,
    log: Mutex<Vec<DeviceUpdate>>,
    refuse_next: Mutex<Option<SetError>>,
}

impl MemoryDevice {
    pub fn new(state: DeviceSnapshot) -> Self {
        Self {
            state: Mutex::new(state),
            ..Self::default()
        }
    }

    /// Every update accepted so far, in order.
    pub fn updates(&self) -> Vec<DeviceUpdate> {
        self.log.lock().clone()
    }

    /// Replace the state (e.g. to set counters or handshake times).
    pub fn replace_state(&self, state: DeviceSnapshot) {
        *self.state.lock() = state;
    }

    /// Make the next `set` fail with `error`, changing nothing (like a port already in use).
    pub fn refuse_next_set(&self, error: SetError) {
        *self.refuse_next.lock() = Some(error);
    }
}

impl UapiDevice for MemoryDevice {
    fn get(&self) -> DeviceSnapshot {
        self.state.lock().clone()
    }

    fn set(&self, update: DeviceUpdate) -> Result<(), SetError> {
        if let Some(error) = self.refuse_next.lock().take() {
            return Err(error);
        }
        apply_update(&mut self.state.lock(), &update);
        self.log.lock().push(update);
        Ok(())
    }
}

/// Apply `update` to `state` as wireguard-go does: device fields (the private key clamped), then `replace_peers`,
/// then each peer in order. A peer with the device's own public key is ignored;
/// `update_only` never creates a peer; `remove` of an unknown peer does nothing; an added
/// allowed IP moves from whichever peer had it; `-prefix` removes it only from this peer.
pub fn apply_update(state: &mut DeviceSnapshot, update: &DeviceUpdate) {
    if let Some(key) = update.private_key {
        // The kernel and wireguard-go keep (and show) the key clamped.
        state.private_key = key.map(|PrivateKey(mut b)| {
            b[0] &= 248;
            b[31] = (b[31] & 127) | 64;
            PrivateKey(b)
        });
        if let Some(own) = key.map(|k| k.public_key()) {
            state.peers.retain(|p| p.public_key != own);
        }
    }
    if let Some(port) = update.listen_port {
        state.listen_port = port;
    }
    if let Some(mark) = update.fwmark {
        state.fwmark = mark;
    }
    if update.replace_peers {
        state.peers.clear();
    }
    let own = state.private_key.map(|k| k.public_key());
    for change in &update.peers {
        if Some(change.public_key) == own {
            continue;
        }
        apply_peer(state, change);
    }
}

fn apply_peer(state: &mut DeviceSnapshot, change: &PeerUpdate) {
    let index = state
        .peers
        .iter()
        .position(|p| p.public_key == change.public_key);
    if change.remove {
        if let Some(i) = index {
            state.peers.remove(i);
        }
        return;
    }
    let i = match index {
        Some(i) => i,
        None if change.update_only => return,
        None => {
            state.peers.push(new_peer(change));
            state.peers.len() - 1
        }
    };
    let peer = &mut state.peers[i];
    if let Some(psk) = change.preshared_key {
        peer.preshared_key = psk;
    }
    if let Some(endpoint) = change.endpoint {
        peer.endpoint = Some(endpoint);
    }
    if let Some(interval) = change.persistent_keepalive {
        peer.persistent_keepalive = interval;
    }
    if change.replace_allowed_ips {
        peer.allowed_ips.clear();
    }
    for ip in &change.allowed_ips {
        match *ip {
            AllowedIpChange::Add(net) => {
                for other in state.peers.iter_mut() {
                    other.allowed_ips.retain(|n| *n != net);
                }
                state.peers[i].allowed_ips.push(net);
            }
            AllowedIpChange::Remove(net) => state.peers[i].allowed_ips.retain(|n| *n != net),
        }
    }
}

fn new_peer(change: &PeerUpdate) -> PeerSnapshot {
    PeerSnapshot {
        public_key: change.public_key,
        preshared_key: None,
        endpoint: None,
        persistent_keepalive: 0,
        last_handshake: None,
        rx_bytes: 0,
        tx_bytes: 0,
        allowed_ips: Vec::new(),
        protocol_version: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::PublicKey;

    fn key(b: u8) -> PublicKey {
        PublicKey([b; 32])
    }

    fn net(s: &str) -> crate::route::IpNet {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn allowed_ip_moves_between_peers_and_minus_removes_only_own() {
        let mut state = DeviceSnapshot::default();
        let mut a = PeerUpdate::new(key(1));
        a.allowed_ips = vec![
            AllowedIpChange::Add(net("10.0.0.0/24")),
            AllowedIpChange::Add(net("10.1.0.0/24")),
        ];
        let mut b = PeerUpdate::new(key(2));
        b.allowed_ips = vec![
            AllowedIpChange::Add(net("10.0.0.0/24")),
            AllowedIpChange::Remove(net("10.1.0.0/24")),
        ];
        apply_update(
            &mut state,
            &DeviceUpdate {
                peers: vec![a, b],
                ..DeviceUpdate::default()
            },
        );
        assert_eq!(state.peers[0].allowed_ips, vec![net("10.1.0.0/24")]);
        assert_eq!(state.peers[1].allowed_ips, vec![net("10.0.0.0/24")]);
    }

    #[test]
    fn update_only_remove_and_own_key() {
        let private = PrivateKey([7; 32]);
        let mut state = DeviceSnapshot {
            private_key: Some(private),
            ..DeviceSnapshot::default()
        };
        let mut ghost = PeerUpdate::new(key(3));
        ghost.update_only = true;
        let mut gone = PeerUpdate::new(key(4));
        gone.remove = true;
        let own = PeerUpdate::new(private.public_key());
        apply_update(
            &mut state,
            &DeviceUpdate {
                peers: vec![ghost, gone, own],
                ..DeviceUpdate::default()
            },
        );
        assert!(state.peers.is_empty());
    }
}
