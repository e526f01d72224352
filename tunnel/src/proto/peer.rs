//! One peer: its boringtun session state, endpoint and keepalive timer.
//!
//! Locks: all mutable per-peer state sits in one `Mutex<PeerState>`, taken for one packet
//! (or one run of packets) at a time; byte counters are atomics read without it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use boringtun::noise::Tunn;
use parking_lot::Mutex;

use crate::key::{PresharedKey, PrivateKey, PublicKey};

/// Index of a peer in the core's table; stable while the peer exists.
pub type PeerId = u32;

pub(crate) struct Peer {
    pub public_key: PublicKey,
    /// Our 24-bit session index prefix for this peer (boringtun shifts it left by 8).
    pub index: u32,
    pub state: Mutex<PeerState>,
    pub rx_bytes: AtomicU64,
    pub tx_bytes: AtomicU64,
}

pub(crate) struct PeerState {
    /// `None` while the device has no private key.
    pub tunn: Option<Tunn>,
    pub endpoint: Option<SocketAddr>,
    pub preshared_key: Option<PresharedKey>,
    /// Persistent keepalive interval in seconds, 0 = off.
    pub keepalive: u16,
    /// When we last sent anything to this peer (for persistent keepalive).
    pub last_sent: Option<Instant>,
    /// Send a keepalive at the next tick (keepalive just switched on, as wireguard-go does).
    pub keepalive_now: bool,
    /// The wall-clock handshake time last reported, so repeated reads agree exactly.
    pub handshake_wall: Option<SystemTime>,
}

impl Peer {
    pub fn new(public_key: PublicKey, index: u32) -> Self {
        Self {
            public_key,
            index,
            state: Mutex::new(PeerState {
                tunn: None,
                endpoint: None,
                preshared_key: None,
                keepalive: 0,
                last_sent: None,
                keepalive_now: false,
                handshake_wall: None,
            }),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
        }
    }

    pub fn add_rx(&self, n: usize) {
        self.rx_bytes.fetch_add(n as u64, Relaxed);
    }

    pub fn add_tx(&self, n: usize) {
        self.tx_bytes.fetch_add(n as u64, Relaxed);
    }
}

impl PeerState {
    /// (Re)creates the session state; drops any established session.
    pub fn rebuild_tunn(
        &mut self,
        private: Option<&PrivateKey>,
        public_key: &PublicKey,
        index: u32,
    ) {
        self.tunn = private.map(|k| {
            Tunn::new(
                k.to_secret(),
                public_key.to_dalek(),
                self.preshared_key.map(|p| p.0),
                // Persistent keepalive is ours (see `Core::tick`) so it can change without
                // rebuilding the session.
                None,
                index,
                // Each session gets boringtun's own per-peer limiter (10 handshakes/s, reset
                // by its timers). The device-wide limiter in `Core` only guards the peer
                // lookup of initiations, so no message is counted twice against one limit.
                None,
            )
        });
    }

    /// Wall-clock time of the last completed handshake. boringtun only knows its age, so
    /// the first estimate is kept until a handshake that is clearly newer replaces it.
    pub fn last_handshake(&mut self, wall_now: SystemTime) -> Option<SystemTime> {
        let since = self.tunn.as_ref()?.time_since_last_handshake()?;
        let estimate = wall_now.checked_sub(since)?;
        let newer = match self.handshake_wall {
            Some(known) => estimate
                .duration_since(known)
                .is_ok_and(|d| d > Duration::from_millis(500)),
            None => true,
        };
        if newer {
            self.handshake_wall = Some(estimate);
        }
        self.handshake_wall
    }

    /// Persistent keepalive is due at `now`.
    pub fn keepalive_due(&self, now: Instant) -> bool {
        if self.keepalive == 0 || self.endpoint.is_none() || self.tunn.is_none() {
            return false;
        }
        self.keepalive_now
            || self.last_sent.is_none_or(|t| {
                now.saturating_duration_since(t) >= Duration::from_secs(self.keepalive.into())
            })
    }
}
