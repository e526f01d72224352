//! The device state and the three things that happen to it: a packet from the TUN
//! ([`Core::encapsulate`]), a datagram from the network ([`Core::decapsulate`]) and the passing
//! of time ([`Core::tick`]). Configuration changes ([`Core::apply`]) take `&mut self`; the
//! data path takes `&self` and locks one peer at a time, so the caller can hold the core
//! under a read lock from several threads.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use parking_lot::Mutex;

use super::counters::Counters;
use super::peer::{Peer, PeerId, PeerState};
use crate::io::{Batch, NO_ADDR};
use crate::key::{PrivateKey, PublicKey};
use crate::route::AllowedIps;
use crate::uapi::model::SetError;
use crate::uapi::{AllowedIpChange, DeviceSnapshot, DeviceUpdate, PeerSnapshot};
use crate::wire::{IpView, MessageType, WgView};

/// Handshake messages per second before we answer with cookies (wireguard-go's limit).
const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// Room boringtun needs in its output buffer: the packet plus 32 bytes, and at least a
/// handshake initiation.
const MIN_OUT_ROOM: usize = 148;

/// What happened to one TUN packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// Encrypted into the output batch (or queued behind a handshake).
    Sent,
    /// Dropped and counted.
    Dropped,
    /// The output batch has no room: send it, clear it and call again.
    Full,
}

/// What happened to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxOutcome {
    /// Decrypted into the TUN batch.
    Delivered,
    /// A protocol message was handled (handshake, keepalive, cookie); replies, if any, are in
    /// the network batch.
    Handled,
    Dropped,
    /// An output batch has no room: flush both and call again.
    Full,
}

struct Keys {
    private: PrivateKey,
    public: PublicKey,
    secret: boringtun::x25519::StaticSecret,
    dalek_public: boringtun::x25519::PublicKey,
}

/// The maps the data path reads once or twice per packet. Their keys are assigned here
/// (sequential peer ids, our own session index prefixes): a datagram can make us look a key
/// up but never insert one, so SipHash's flooding defence buys nothing there (and cost 9 %
/// of a 64-byte decapsulate, docs/PERFORMANCE.md). foldhash is still seeded per process.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Everything a WireGuard interface knows, with no I/O.
pub struct Core {
    keys: Option<Keys>,
    listen_port: u16,
    fwmark: u32,
    peers: FastMap<PeerId, Arc<Peer>>,
    by_key: HashMap<PublicKey, PeerId>,
    /// Our 24-bit session index prefix → peer.
    by_index: FastMap<u32, PeerId>,
    routes: AllowedIps<PeerId>,
    limiter: Arc<RateLimiter>,
    limiter_reset: Mutex<Option<Instant>>,
    next_id: PeerId,
    next_index: u32,
    counters: Arc<Counters>,
}

impl Default for Core {
    fn default() -> Self {
        Self::new()
    }
}

impl Core {
    pub fn new() -> Self {
        use rand_core::RngCore;
        Self {
            keys: None,
            listen_port: 0,
            fwmark: 0,
            peers: FastMap::default(),
            by_key: HashMap::new(),
            by_index: FastMap::default(),
            routes: AllowedIps::new(),
            limiter: Arc::new(RateLimiter::new(
                &PublicKey::default().to_dalek(),
                HANDSHAKE_RATE_LIMIT,
            )),
            limiter_reset: Mutex::new(None),
            next_id: 0,
            next_index: rand_core::OsRng.next_u32() & 0x00ff_ffff,
            counters: Arc::new(Counters::default()),
        }
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    pub fn fwmark(&self) -> u32 {
        self.fwmark
    }

    pub fn public_key(&self) -> Option<PublicKey> {
        self.keys.as_ref().map(|k| k.public)
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    // ---------------------------------------------------------------- data path: TUN → UDP

    /// Encrypts one IP packet from the TUN for the peer that owns its destination.
    #[inline]
    pub fn encapsulate(&self, now: Instant, packet: &[u8], out: &mut Batch) -> TxOutcome {
        let Ok(ip) = IpView::new_checked(packet) else {
            Counters::bump(&self.counters.tx_invalid);
            return TxOutcome::Dropped;
        };
        let Some(peer) = self
            .routes
            .lookup(ip.destination())
            .and_then(|id| self.peers.get(id))
        else {
            Counters::bump(&self.counters.tx_no_route);
            return TxOutcome::Dropped;
        };
        let Some(room) = out.spare() else {
            return TxOutcome::Full;
        };
        if room.len() < (packet.len() + 32).max(MIN_OUT_ROOM) {
            return TxOutcome::Full;
        }
        let mut st = peer.state.lock();
        let Some(endpoint) = st.endpoint else {
            Counters::bump(&self.counters.tx_no_endpoint);
            return TxOutcome::Dropped;
        };
        let Some(tunn) = st.tunn.as_mut() else {
            Counters::bump(&self.counters.tx_no_route);
            return TxOutcome::Dropped;
        };
        match tunn.encapsulate(packet, room) {
            TunnResult::WriteToNetwork(wire) => {
                let n = wire.len();
                out.commit(n, endpoint);
                peer.add_tx(n);
                st.last_sent = Some(now);
                TxOutcome::Sent
            }
            // Queued behind a handshake already in flight.
            TunnResult::Done => TxOutcome::Sent,
            TunnResult::Err(_)
            | TunnResult::WriteToTunnelV4(..)
            | TunnResult::WriteToTunnelV6(..) => TxOutcome::Dropped,
        }
    }

    // ---------------------------------------------------------------- data path: UDP → TUN

    /// Handles one datagram from `src`: decrypted packets go to `to_tun`, protocol replies
    /// and packets released by a completed handshake go to `to_net`.
    pub fn decapsulate(
        &self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
        to_tun: &mut Batch,
        to_net: &mut Batch,
    ) -> RxOutcome {
        let msg = match WgView::new_checked(datagram) {
            Ok(m) => m,
            Err(_) => {
                Counters::bump(&self.counters.rx_invalid);
                return RxOutcome::Dropped;
            }
        };
        // Replies (handshake response, cookie, flushed queue) need network room; decrypted
        // data needs TUN room. Ask for both up front so nothing is lost half way.
        let room_needed = datagram.len().max(MIN_OUT_ROOM);
        if to_tun.spare().is_none_or(|r| r.len() < room_needed)
            || to_net.spare().is_none_or(|r| r.len() < MIN_OUT_ROOM * 4)
        {
            return RxOutcome::Full;
        }
        let peer_id = match msg.receiver_index() {
            Some(index) => self.by_index.get(&(index >> 8)).copied(),
            None => match self.identify_initiator(src, datagram, to_net) {
                Ok(id) => id,
                Err(outcome) => return outcome,
            },
        };
        let Some(peer) = peer_id.and_then(|id| self.peers.get(&id)) else {
            Counters::bump(&self.counters.rx_unknown_peer);
            return RxOutcome::Dropped;
        };
        let mut st = peer.state.lock();
        let st = &mut *st;
        let Some(tunn) = st.tunn.as_mut() else {
            Counters::bump(&self.counters.rx_unknown_peer);
            return RxOutcome::Dropped;
        };
        let Some(room) = to_tun.spare() else {
            return RxOutcome::Full;
        };
        let outcome = match tunn.decapsulate(Some(src.ip()), datagram, room) {
            TunnResult::Done => RxOutcome::Handled,
            TunnResult::Err(WireGuardError::UnderLoad) => {
                Counters::bump(&self.counters.rx_cookie_sent);
                return RxOutcome::Dropped;
            }
            TunnResult::Err(_) => {
                Counters::bump(&self.counters.rx_rejected);
                return RxOutcome::Dropped;
            }
            TunnResult::WriteToNetwork(reply) => {
                // A cookie reply under load does not authenticate the sender: no roaming.
                let is_cookie = reply.len() == crate::wire::wg::COOKIE_REPLY_LEN && reply[0] == 3;
                to_net.push(reply, src);
                st.last_sent = Some(now);
                if is_cookie {
                    Counters::bump(&self.counters.rx_cookie_sent);
                    return RxOutcome::Handled;
                }
                RxOutcome::Handled
            }
            TunnResult::WriteToTunnelV4(packet, source) => {
                let len = packet.len();
                self.deliver(peer_id, IpAddr::V4(source), len, to_tun)
            }
            TunnResult::WriteToTunnelV6(packet, source) => {
                let len = packet.len();
                self.deliver(peer_id, IpAddr::V6(source), len, to_tun)
            }
        };
        // Authenticated: the peer's endpoint follows its latest packet (roaming).
        if msg.kind() != MessageType::CookieReply {
            st.endpoint = Some(src);
        }
        peer.add_rx(datagram.len());
        if outcome == RxOutcome::Handled && msg.kind() != MessageType::Data {
            // A completed handshake releases packets queued while it was in flight.
            flush_queue(st, now, peer, to_net);
        }
        outcome
    }

    /// Finds the peer of a handshake initiation by decrypting its static key, after the rate
    /// limiter (which may answer with a cookie instead).
    fn identify_initiator(
        &self,
        src: SocketAddr,
        datagram: &[u8],
        to_net: &mut Batch,
    ) -> Result<Option<PeerId>, RxOutcome> {
        let Some(keys) = &self.keys else {
            return Ok(None);
        };
        let mut cookie = [0u8; 64];
        let packet = match self
            .limiter
            .verify_packet(Some(src.ip()), datagram, &mut cookie)
        {
            Ok(p) => p,
            Err(TunnResult::WriteToNetwork(reply)) => {
                to_net.push(reply, src);
                Counters::bump(&self.counters.rx_cookie_sent);
                return Err(RxOutcome::Handled);
            }
            Err(_) => {
                Counters::bump(&self.counters.rx_rejected);
                return Err(RxOutcome::Dropped);
            }
        };
        let Packet::HandshakeInit(init) = packet else {
            Counters::bump(&self.counters.rx_invalid);
            return Err(RxOutcome::Dropped);
        };
        match parse_handshake_anon(&keys.secret, &keys.dalek_public, &init) {
            Ok(half) => Ok(self
                .by_key
                .get(&PublicKey(half.peer_static_public))
                .copied()),
            Err(_) => {
                Counters::bump(&self.counters.rx_rejected);
                Err(RxOutcome::Dropped)
            }
        }
    }

    /// Accepts a decrypted packet only if its source belongs to the peer that sent it.
    fn deliver(
        &self,
        from: Option<PeerId>,
        source: IpAddr,
        len: usize,
        to_tun: &mut Batch,
    ) -> RxOutcome {
        if from.is_some() && self.routes.lookup(source).copied() == from {
            to_tun.commit(len, NO_ADDR);
            RxOutcome::Delivered
        } else {
            Counters::bump(&self.counters.rx_source_not_allowed);
            RxOutcome::Dropped
        }
    }

    // ---------------------------------------------------------------- time

    /// Runs session timers (handshake retry, rekey, expiry, passive keepalive) and persistent
    /// keepalives; whatever must be sent lands in `to_net`. Call every [`super::TICK_INTERVAL`].
    pub fn tick(&self, now: Instant, to_net: &mut Batch) {
        {
            let mut last = self.limiter_reset.lock();
            if last.is_none_or(|t| now.saturating_duration_since(t).as_secs() >= 1) {
                self.limiter.reset_count();
                *last = Some(now);
            }
        }
        for peer in self.peers.values() {
            let mut st = peer.state.lock();
            let st = &mut *st;
            let Some(endpoint) = st.endpoint else {
                continue;
            };
            let Some(tunn) = st.tunn.as_mut() else {
                continue;
            };
            let Some(room) = to_net.spare() else { return };
            if room.len() < MIN_OUT_ROOM {
                return;
            }
            if let TunnResult::WriteToNetwork(p) = tunn.update_timers(room) {
                let n = p.len();
                to_net.commit(n, endpoint);
                st.last_sent = Some(now);
            }
            if st.keepalive_due(now) {
                st.keepalive_now = false;
                if let Some(room) = to_net.spare() {
                    if room.len() >= MIN_OUT_ROOM {
                        if let Some(TunnResult::WriteToNetwork(p)) =
                            st.tunn.as_mut().map(|t| t.encapsulate(&[], room))
                        {
                            let n = p.len();
                            to_net.commit(n, endpoint);
                            peer.add_tx(n);
                        }
                    }
                }
                st.last_sent = Some(now);
            }
        }
    }

    // ---------------------------------------------------------------- configuration

    /// Checks a transaction without changing anything.
    pub fn validate(&self, update: &DeviceUpdate) -> Result<(), SetError> {
        let mut seen = std::collections::HashSet::new();
        for p in &update.peers {
            if let Some(v) = p.protocol_version {
                if v != 1 {
                    return Err(SetError {
                        errno: libc::EPROTO,
                        message: format!(
                            "peer {}: protocol_version {v} is not supported",
                            p.public_key.to_base64()
                        ),
                    });
                }
            }
            if p.public_key.is_zero() {
                return Err(SetError::invalid("peer public key is all zeros"));
            }
            if !seen.insert(p.public_key) && !p.remove {
                // The UAPI allows repeating a peer; later entries simply continue it.
            }
        }
        Ok(())
    }

    /// Applies a validated transaction. Established sessions survive every change except a
    /// new private key or a new preshared key for that peer.
    pub fn apply(&mut self, update: DeviceUpdate) -> Result<(), SetError> {
        self.validate(&update)?;
        if let Some(key) = update.private_key {
            self.set_private_key(key);
        }
        if let Some(port) = update.listen_port {
            self.listen_port = port;
        }
        if let Some(mark) = update.fwmark {
            self.fwmark = mark;
        }
        if update.replace_peers {
            let ids: Vec<PeerId> = self.peers.keys().copied().collect();
            for id in ids {
                self.remove_peer(id);
            }
        }
        for p in update.peers {
            let own = self.keys.as_ref().map(|k| k.public);
            if p.remove || own == Some(p.public_key) {
                // Like wireguard-go, a peer with our own public key is silently dropped.
                if let Some(id) = self.by_key.get(&p.public_key).copied() {
                    self.remove_peer(id);
                }
                continue;
            }
            let id = match self.by_key.get(&p.public_key) {
                Some(id) => *id,
                None if p.update_only => continue,
                None => self.add_peer(p.public_key),
            };
            let Some(peer) = self.peers.get(&id).cloned() else {
                continue;
            };
            {
                let mut st = peer.state.lock();
                if let Some(psk) = p.preshared_key {
                    if st.preshared_key != psk {
                        st.preshared_key = psk;
                        let private = self.keys.as_ref().map(|k| k.private);
                        st.rebuild_tunn(private.as_ref(), &peer.public_key, peer.index);
                    }
                }
                if let Some(ep) = p.endpoint {
                    st.endpoint = Some(crate::io::canonical_addr(ep));
                }
                if let Some(ka) = p.persistent_keepalive {
                    st.keepalive_now = ka != 0 && st.keepalive != ka;
                    st.keepalive = ka;
                }
            }
            if p.replace_allowed_ips {
                self.routes.remove_value(&id);
            }
            for change in p.allowed_ips {
                match change {
                    AllowedIpChange::Add(net) => {
                        self.routes.insert(net, id);
                    }
                    AllowedIpChange::Remove(net) => {
                        if self.routes.lookup_exact(net) == Some(&id) {
                            self.routes.remove(net);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn set_private_key(&mut self, key: Option<PrivateKey>) {
        let key = key.map(|k| k.clamped());
        if self.keys.as_ref().map(|k| k.private) == key {
            return;
        }
        self.keys = key.map(|private| {
            let secret = private.to_secret();
            let dalek_public = boringtun::x25519::PublicKey::from(&secret);
            Keys {
                private,
                public: PublicKey(dalek_public.to_bytes()),
                secret,
                dalek_public,
            }
        });
        let public = self.keys.as_ref().map(|k| k.public).unwrap_or_default();
        self.limiter = Arc::new(RateLimiter::new(&public.to_dalek(), HANDSHAKE_RATE_LIMIT));
        // A peer with our own public key cannot exist (wireguard-go removes it).
        if let Some(id) = self.by_key.get(&public).copied() {
            self.remove_peer(id);
        }
        for peer in self.peers.values() {
            let mut st = peer.state.lock();
            st.rebuild_tunn(key.as_ref(), &peer.public_key, peer.index);
        }
    }

    fn add_peer(&mut self, public_key: PublicKey) -> PeerId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let index = loop {
            let candidate = self.next_index & 0x00ff_ffff;
            self.next_index = self.next_index.wrapping_add(1);
            if !self.by_index.contains_key(&candidate) {
                break candidate;
            }
        };
        let peer = Peer::new(public_key, index);
        {
            let mut st = peer.state.lock();
            let private = self.keys.as_ref().map(|k| k.private);
            st.rebuild_tunn(private.as_ref(), &public_key, index);
        }
        self.peers.insert(id, Arc::new(peer));
        self.by_key.insert(public_key, id);
        self.by_index.insert(index, id);
        id
    }

    fn remove_peer(&mut self, id: PeerId) {
        if let Some(peer) = self.peers.remove(&id) {
            self.by_key.remove(&peer.public_key);
            self.by_index.remove(&peer.index);
            self.routes.remove_value(&id);
        }
    }

    /// The `get=1` view. `wall_now` converts session ages to UNIX times.
    pub fn snapshot(&self, wall_now: SystemTime) -> DeviceSnapshot {
        let mut peers: Vec<(PeerId, PeerSnapshot)> = self
            .peers
            .iter()
            .map(|(id, peer)| {
                let mut st = peer.state.lock();
                (
                    *id,
                    PeerSnapshot {
                        public_key: peer.public_key,
                        preshared_key: st.preshared_key,
                        endpoint: st.endpoint,
                        persistent_keepalive: st.keepalive,
                        last_handshake: st.last_handshake(wall_now),
                        rx_bytes: peer.rx_bytes.load(std::sync::atomic::Ordering::Relaxed),
                        tx_bytes: peer.tx_bytes.load(std::sync::atomic::Ordering::Relaxed),
                        allowed_ips: self.routes.prefixes_of(id),
                        protocol_version: 1,
                    },
                )
            })
            .collect();
        peers.sort_by_key(|(id, _)| *id);
        DeviceSnapshot {
            private_key: self.keys.as_ref().map(|k| k.private),
            listen_port: self.listen_port,
            fwmark: self.fwmark,
            peers: peers.into_iter().map(|(_, p)| p).collect(),
        }
    }
}

/// Sends what boringtun queued while the handshake was in flight.
fn flush_queue(st: &mut PeerState, now: Instant, peer: &Peer, to_net: &mut Batch) {
    let Some(endpoint) = st.endpoint else { return };
    let Some(tunn) = st.tunn.as_mut() else { return };
    loop {
        let Some(room) = to_net.spare() else { return };
        if room.len() < 2048 {
            return;
        }
        match Tunn::decapsulate(tunn, None, &[], room) {
            TunnResult::WriteToNetwork(p) => {
                let n = p.len();
                to_net.commit(n, endpoint);
                peer.add_tx(n);
                st.last_sent = Some(now);
            }
            _ => return,
        }
    }
}
