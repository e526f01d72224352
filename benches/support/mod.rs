//! Shared set-up for the data-path benches: keys, IPv4 packets, and two `Core`s with an
//! established session, built through the same UAPI transactions the daemon applies.

#![allow(dead_code)]

pub mod loopback;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use edgewire_tunnel::io::Batch;
use edgewire_tunnel::key::{PrivateKey, PublicKey};
use edgewire_tunnel::proto::{Core, RxOutcome, TxOutcome};
use edgewire_tunnel::route::IpNet;
use edgewire_tunnel::uapi::{AllowedIpChange, DeviceUpdate, PeerUpdate};

pub const A_IP: [u8; 4] = [10, 8, 0, 1];
pub const B_IP: [u8; 4] = [10, 8, 0, 2];

/// A well-formed IPv4/UDP packet of exactly `len` bytes (at least 20).
pub fn ipv4(src: [u8; 4], dst: [u8; 4], len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(20)];
    p[..12].copy_from_slice(&[
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ]);
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

/// A batch as big as the device uses: 64 packets of up to 2 KiB.
pub fn batch() -> Batch {
    Batch::new(64, 64 * 2048)
}

pub fn peer(public: PublicKey, endpoint: Option<SocketAddr>, allowed: &[IpNet]) -> PeerUpdate {
    PeerUpdate {
        endpoint,
        replace_allowed_ips: true,
        allowed_ips: allowed.iter().copied().map(AllowedIpChange::Add).collect(),
        ..PeerUpdate::new(public)
    }
}

pub fn device(key: PrivateKey, port: u16, peers: Vec<PeerUpdate>) -> DeviceUpdate {
    DeviceUpdate {
        private_key: Some(Some(key)),
        listen_port: Some(port),
        replace_peers: true,
        peers,
        ..Default::default()
    }
}

pub fn host(ip: [u8; 4]) -> IpNet {
    IpNet::host(IpAddr::V4(Ipv4Addr::from(ip)))
}

/// Two cores, A (10.8.0.1 at `a_addr`) and B (10.8.0.2 at `b_addr`), with a completed
/// handshake and data confirmed in both directions.
pub fn established_pair(a_addr: SocketAddr, b_addr: SocketAddr) -> (Core, Core) {
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let mut a = Core::new();
    let mut b = Core::new();
    let applied = a.apply(device(
        ka,
        a_addr.port(),
        vec![peer(pb, Some(b_addr), &[host(B_IP)])],
    ));
    assert!(applied.is_ok(), "core A config: {applied:?}");
    let applied = b.apply(device(
        kb,
        b_addr.port(),
        vec![peer(pa, Some(a_addr), &[host(A_IP)])],
    ));
    assert!(applied.is_ok(), "core B config: {applied:?}");
    let now = Instant::now();
    let mut out = batch();
    assert_eq!(
        a.encapsulate(now, &ipv4(A_IP, B_IP, 64), &mut out),
        TxOutcome::Sent
    );
    shuttle(&a, a_addr, &b, b_addr, out);
    // The responder's session is confirmed by data from the initiator; send one each way.
    for (from, from_addr, to, src, dst) in
        [(&a, a_addr, &b, A_IP, B_IP), (&b, b_addr, &a, B_IP, A_IP)]
    {
        let mut out = batch();
        assert_eq!(
            from.encapsulate(now, &ipv4(src, dst, 64), &mut out),
            TxOutcome::Sent
        );
        let (mut tun, mut net) = (batch(), batch());
        assert_eq!(
            to.decapsulate(now, from_addr, out.packet(0), &mut tun, &mut net),
            RxOutcome::Delivered,
            "session not established"
        );
    }
    (a, b)
}

/// Delivers datagrams back and forth until both sides are quiet.
pub fn shuttle(a: &Core, a_addr: SocketAddr, b: &Core, b_addr: SocketAddr, to_b: Batch) {
    let now = Instant::now();
    let mut to_b = to_b;
    let mut to_a = batch();
    for _ in 0..8 {
        if to_a.is_empty() && to_b.is_empty() {
            return;
        }
        let (mut next_a, mut next_b) = (batch(), batch());
        let mut tun = batch();
        for (d, _) in to_b.iter() {
            tun.clear();
            b.decapsulate(now, a_addr, d, &mut tun, &mut next_a);
        }
        for (d, _) in to_a.iter() {
            tun.clear();
            a.decapsulate(now, b_addr, d, &mut tun, &mut next_b);
        }
        to_a = next_a;
        to_b = next_b;
    }
}

/// A small deterministic generator (xorshift64*), so every run benchmarks the same tables.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
