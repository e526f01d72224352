//! boringtun 0.7.1 against gotatun 0.10.2: one data packet encapsulated and decapsulated on
//! an established session, at 64, 512 and 1420 bytes (1420 = the tunnel MTU, a full packet).
//!
//! Run (gotatun is compiled only with the feature):
//! `cargo bench --features compare-engines --bench engines -- --measurement-time 3 --warm-up-time 1`
//!
//! What each measurement contains, so the two engines do the same work:
//! - encapsulate: IP packet in memory → WireGuard data message in memory. boringtun writes into
//!   a caller buffer that is reused (as edgewire's `Batch` does). gotatun takes the packet
//!   as a pooled `Packet` (filled outside the timing, as a TUN read would) and allocates and
//!   zeroes a fresh `BytesMut` for every output (`Session::format_packet_data`); the output
//!   is dropped inside the timing, because freeing it is part of that per-packet cost.
//! - decapsulate: datagram bytes → plaintext IP packet, parsing included. Every datagram
//!   carries a fresh counter (made outside the timing: the replay window rejects repeats).
//!   boringtun decrypts into a reused buffer; gotatun decrypts in place in the datagram's own
//!   buffer. Buffers are freed outside the timing for both.
//! - aead_seal: ring's ChaCha20-Poly1305 sealing the same bytes in place, the ceiling that
//!   both engines approach (boringtun uses ring; gotatun's default backend is aws-lc-rs).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

const SIZES: [usize; 3] = [64, 512, 1420];
/// Datagrams made per timed batch for the decapsulate benches.
const BATCH: usize = 512;
const PEER_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));

/// A well-formed IPv4/UDP packet of `len` bytes from 10.8.0.1 to 10.8.0.2 (boringtun checks the
/// inner header after decryption).
fn ipv4_packet(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[..20].copy_from_slice(&[
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
        10,
        8,
        0,
        1,
        10,
        8,
        0,
        2,
    ]);
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

const KEY_A: [u8; 32] = [0x11; 32];
const KEY_B: [u8; 32] = [0x22; 32];

mod bt {
    use boringtun::noise::{Tunn, TunnResult};
    use boringtun::x25519::{PublicKey, StaticSecret};

    /// Two boringtun sessions after a full handshake; `a` is the initiator.
    pub fn pair() -> (Tunn, Tunn) {
        let (sa, sb) = (
            StaticSecret::from(super::KEY_A),
            StaticSecret::from(super::KEY_B),
        );
        let (pa, pb) = (PublicKey::from(&sa), PublicKey::from(&sb));
        let mut a = Tunn::new(sa, pb, None, None, 1, None);
        let mut b = Tunn::new(sb, pa, None, None, 2, None);
        let mut buf = vec![0u8; 2048];
        let init = match a.format_handshake_initiation(&mut buf, false) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            _ => panic!("boringtun: no handshake initiation"),
        };
        let resp = match b.decapsulate(None, &init, &mut buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            _ => panic!("boringtun: no handshake response"),
        };
        let keepalive = match a.decapsulate(None, &resp, &mut buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            _ => panic!("boringtun: no keepalive after the response"),
        };
        assert!(matches!(
            b.decapsulate(None, &keepalive, &mut buf),
            TunnResult::Done
        ));
        (a, b)
    }

    pub fn encapsulate(t: &mut Tunn, packet: &[u8], out: &mut [u8]) -> usize {
        match t.encapsulate(packet, out) {
            TunnResult::WriteToNetwork(p) => p.len(),
            _ => panic!("boringtun: encapsulate on an established session failed"),
        }
    }

    pub fn decapsulate(t: &mut Tunn, datagram: &[u8], out: &mut [u8]) -> usize {
        match t.decapsulate(Some(super::PEER_ADDR), datagram, out) {
            TunnResult::WriteToTunnelV4(p, _) => p.len(),
            _ => panic!("boringtun: decapsulate of a fresh data message failed"),
        }
    }
}

mod gt {
    use std::sync::Arc;

    use gotatun::noise::index_table::IndexTable;
    use gotatun::noise::rate_limiter::RateLimiter;
    use gotatun::noise::{Tunn, TunnResult};
    use gotatun::packet::{Packet, WgKind};
    use gotatun::x25519::{PublicKey, StaticSecret};

    /// Two gotatun sessions after a full handshake; `a` is the initiator.
    pub fn pair() -> (Tunn, Tunn) {
        let (sa, sb) = (
            StaticSecret::from(super::KEY_A),
            StaticSecret::from(super::KEY_B),
        );
        let (pa, pb) = (PublicKey::from(&sa), PublicKey::from(&sb));
        let limiter_a = Arc::new(RateLimiter::new(&pa, 100));
        let limiter_b = Arc::new(RateLimiter::new(&pb, 100));
        let mut a = Tunn::new(sa, pb, None, None, IndexTable::from_os_rng(), limiter_a);
        let mut b = Tunn::new(sb, pa, None, None, IndexTable::from_os_rng(), limiter_b);
        let init = a
            .format_handshake_initiation(false)
            .expect("gotatun: handshake initiation");
        let TunnResult::WriteToNetwork(resp) =
            b.handle_incoming_packet(WgKind::HandshakeInit(init))
        else {
            panic!("gotatun: no handshake response")
        };
        let TunnResult::WriteToNetwork(keepalive) = a.handle_incoming_packet(resp) else {
            panic!("gotatun: no keepalive after the response")
        };
        assert!(matches!(
            b.handle_incoming_packet(keepalive),
            TunnResult::WriteToTunnel(_)
        ));
        (a, b)
    }

    pub fn encapsulate(t: &mut Tunn, packet: Packet) -> usize {
        match t.encapsulate_with_session(packet) {
            Ok(p) => p.into_bytes().len(),
            Err(_) => panic!("gotatun: encapsulate on an established session failed"),
        }
    }

    pub fn datagram(t: &mut Tunn, packet: &[u8]) -> Packet {
        match t.encapsulate_with_session(Packet::copy_from(packet)) {
            Ok(p) => p.into_bytes(),
            Err(_) => panic!("gotatun: encapsulate on an established session failed"),
        }
    }

    /// Parses and decrypts; returns the plaintext so it is freed outside the timing.
    pub fn decapsulate(t: &mut Tunn, datagram: Packet) -> Packet {
        let Ok(kind) = datagram.try_into_wg() else {
            panic!("gotatun: not a WireGuard message")
        };
        match t.handle_incoming_packet(kind) {
            TunnResult::WriteToTunnel(p) => p,
            _ => panic!("gotatun: decapsulate of a fresh data message failed"),
        }
    }
}

fn encapsulate(c: &mut Criterion) {
    let mut g = c.benchmark_group("encapsulate");
    let (mut bt_a, _bt_b) = bt::pair();
    let (mut gt_a, _gt_b) = gt::pair();
    let pool = gotatun::packet::PacketBufPool::<4096>::new(2 * BATCH);
    let mut out = vec![0u8; 2048];
    for size in SIZES {
        let packet = ipv4_packet(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("boringtun", size), &packet, |b, p| {
            b.iter(|| bt::encapsulate(&mut bt_a, black_box(p), &mut out))
        });
        g.bench_with_input(BenchmarkId::new("gotatun", size), &packet, |b, p| {
            b.iter_batched(
                || pool.get().overwrite_with(&p[..]),
                |input| gt::encapsulate(&mut gt_a, black_box(input)),
                BatchSize::NumIterations(BATCH as u64),
            )
        });
    }
    g.finish();
}

fn decapsulate(c: &mut Criterion) {
    let mut g = c.benchmark_group("decapsulate");
    let (mut bt_a, mut bt_b) = bt::pair();
    let (mut gt_a, mut gt_b) = gt::pair();
    let mut out = vec![0u8; 2048];
    let mut scratch = vec![0u8; 2048];
    for size in SIZES {
        let packet = ipv4_packet(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("boringtun", size), &packet, |b, p| {
            b.iter_batched_ref(
                || {
                    let n = bt::encapsulate(&mut bt_a, p, &mut scratch);
                    scratch[..n].to_vec()
                },
                |d| bt::decapsulate(&mut bt_b, black_box(d), &mut out),
                BatchSize::NumIterations(BATCH as u64),
            )
        });
        g.bench_with_input(BenchmarkId::new("gotatun", size), &packet, |b, p| {
            b.iter_batched(
                || gt::datagram(&mut gt_a, p),
                |d| gt::decapsulate(&mut gt_b, black_box(d)),
                BatchSize::NumIterations(BATCH as u64),
            )
        });
    }
    g.finish();
}

fn aead_seal(c: &mut Criterion) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
    let mut g = c.benchmark_group("aead_seal");
    let Ok(unbound) = UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]) else {
        panic!("ring: key")
    };
    let key = Arc::new(LessSafeKey::new(unbound));
    for size in SIZES {
        let mut buf = ipv4_packet(size);
        let mut counter = 0u64;
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("ring_chacha20poly1305", size), |b| {
            b.iter(|| {
                counter += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&counter.to_le_bytes());
                key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut buf,
                )
                .map(|tag| black_box(tag).as_ref()[0])
            })
        });
    }
    g.finish();
}

criterion_group!(benches, encapsulate, decapsulate, aead_seal);
criterion_main!(benches);
