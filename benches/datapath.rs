//! edgewire's own data path, measured piece by piece (figures in docs/PERFORMANCE.md):
//! - `core_encapsulate` / `core_decapsulate`: one packet through `Core` and a `Batch`
//!   (route lookup, peer lock, boringtun crypto, counters), 64 / 512 / 1420 bytes;
//! - `allowed_ips`: longest-prefix lookup in a table of 10,000 IPv4 or IPv6 prefixes;
//! - `handshake`: a hub `Core` answering a fresh initiation, and a full handshake
//!   (initiation made, answered, response processed) → handshakes per second;
//! - `hub`: `tick` over 1,000 peers with no timer due, configuring 1,000 peers with 10
//!   prefixes each in one UAPI transaction, and the `get` snapshot (`wg show`) of that hub;
//! - `loopback_pair`: encrypt → UDP on 127.0.0.1 → decrypt, two threads, packets per second,
//!   one syscall per packet (`plain`), `sendmmsg`/`recvmmsg` (`mmsg`), and with UDP GSO/GRO;
//! - `offload`: splitting a 64 KB TSO super-packet read from the TUN, and planning the GRO
//!   coalescing of the resulting 47 segments for the TUN write.
//!
//! Run: `cargo bench --bench datapath -- --measurement-time 3 --warm-up-time 1`

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use edgewire_tunnel::io::Batch;
use edgewire_tunnel::key::PrivateKey;
use edgewire_tunnel::proto::{Core, RxOutcome, TxOutcome};
use edgewire_tunnel::route::{AllowedIps, IpNet};
use edgewire_tunnel::uapi::PeerUpdate;
use std::hint::black_box;

use support::{batch, device, established_pair, ipv4, peer, Rng, A_IP, B_IP};

const SIZES: [usize; 3] = [64, 512, 1420];
const PREFIXES: usize = 10_000;
const PEERS: usize = 1_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

// ------------------------------------------------------------------ Core, packet by packet

fn core_packets(c: &mut Criterion) {
    let (a_addr, b_addr) = (addr(41000), addr(42000));
    let (a, b) = established_pair(a_addr, b_addr);
    let now = Instant::now();

    let mut g = c.benchmark_group("core_encapsulate");
    let mut out = batch();
    for size in SIZES {
        let packet = ipv4(A_IP, B_IP, size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &packet, |bench, p| {
            bench.iter(|| {
                if out.len() == out.max_entries() {
                    out.clear();
                }
                a.encapsulate(now, black_box(p), &mut out)
            })
        });
        out.clear();
        assert_eq!(a.encapsulate(now, &packet, &mut out), TxOutcome::Sent);
    }
    g.finish();

    let mut g = c.benchmark_group("core_decapsulate");
    let (mut tun, mut net) = (batch(), batch());
    let mut scratch = batch();
    for size in SIZES {
        let packet = ipv4(A_IP, B_IP, size);
        // Every datagram needs a fresh counter (replay window): made outside the timing.
        let mut fresh = || {
            scratch.clear();
            a.encapsulate(now, &packet, &mut scratch);
            scratch.packet(0).to_vec()
        };
        let check = fresh();
        assert_eq!(
            b.decapsulate(now, a_addr, &check, &mut tun, &mut net),
            RxOutcome::Delivered
        );
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(size), |bench| {
            bench.iter_batched_ref(
                &mut fresh,
                |d| {
                    tun.clear();
                    net.clear();
                    b.decapsulate(now, a_addr, black_box(d), &mut tun, &mut net)
                },
                BatchSize::NumIterations(512),
            )
        });
    }
    g.finish();
}

// ------------------------------------------------------------------ allowed IPs

/// 10,000 prefixes owned by 1,000 peers (10 each), lengths 16–32 (IPv4) or 32–128 (IPv6),
/// and 4,096 addresses to look up: three in four inside a stored prefix, the rest random.
fn route_table(v6: bool) -> (AllowedIps<u32>, Vec<IpAddr>) {
    let mut rng = Rng::new(if v6 { 6 } else { 4 });
    let mut table = AllowedIps::new();
    let mut stored = Vec::with_capacity(PREFIXES);
    for i in 0..PREFIXES {
        let (ip, bits) = if v6 {
            let hi = 0xfd00_u128 << 112 | u128::from(rng.next_u64()) << 48;
            (
                IpAddr::V6(Ipv6Addr::from(hi | u128::from(rng.next_u64() >> 16))),
                32 + (rng.next_u64() % 97) as u8,
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)),
                16 + (rng.next_u64() % 17) as u8,
            )
        };
        let Ok(net) = IpNet::new(ip, bits) else {
            unreachable!("prefix length in range")
        };
        table.insert(net, (i / 10) as u32);
        stored.push(net);
    }
    let lookups = (0..4096)
        .map(|_| {
            let r = rng.next_u64();
            if r % 4 == 3 {
                if v6 {
                    IpAddr::V6(Ipv6Addr::from(
                        u128::from(r) << 64 | u128::from(rng.next_u64()),
                    ))
                } else {
                    IpAddr::V4(Ipv4Addr::from((r >> 32) as u32))
                }
            } else {
                stored[(r >> 8) as usize % stored.len()].addr()
            }
        })
        .collect();
    (table, lookups)
}

fn allowed_ips(c: &mut Criterion) {
    let mut g = c.benchmark_group("allowed_ips");
    for (name, v6) in [("lookup_v4_10k", false), ("lookup_v6_10k", true)] {
        let (table, lookups) = route_table(v6);
        let hits = lookups
            .iter()
            .filter(|ip| table.lookup(**ip).is_some())
            .count();
        assert!(
            hits >= lookups.len() / 2,
            "{name}: only {hits} of {} lookups hit",
            lookups.len()
        );
        let mut i = 0usize;
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |bench| {
            bench.iter(|| {
                i = (i + 1) & 4095;
                table.lookup(black_box(lookups[i])).copied()
            })
        });
    }
    g.finish();
}

// ------------------------------------------------------------------ hub: handshakes, tick

/// A hub `Core` with 1,000 peers, and each peer's side as a bare boringtun session that can
/// be made to start a handshake on demand.
///
/// The hub's handshake limiter (boringtun's, 100 handshake messages per second of real time)
/// switches it to cookie mode within the first burst; each client then answers the cookie
/// once and carries a valid mac2 from then on, as a gateway would during a reconnect storm.
/// Cookie round trips are done outside the timing and counted in `cookies`.
struct Hub {
    core: Core,
    clients: Vec<(Tunn, SocketAddr)>,
    now: Instant,
    tun: Batch,
    net: Batch,
    cookies: usize,
}

impl Hub {
    fn new(peers: usize) -> Hub {
        let hub_key = PrivateKey::generate();
        let hub_public = hub_key.public_key();
        let mut clients = Vec::with_capacity(peers);
        let mut updates = Vec::with_capacity(peers);
        for i in 0..peers {
            let key = PrivateKey::generate();
            let ip = [10, 9, (i >> 8) as u8, i as u8];
            updates.push(peer(key.public_key(), None, &[support::host(ip)]));
            // A client limiter (keyed by its own public key, for mac1) that never reports
            // load: only the hub's limiter is part of the measurement.
            let limiter = RateLimiter::new(&key.public_key().to_dalek(), u64::MAX);
            let tunn = Tunn::new(
                key.to_secret(),
                hub_public.to_dalek(),
                None,
                None,
                i as u32 + 1,
                Some(Arc::new(limiter)),
            );
            let from = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8)),
                51820,
            );
            clients.push((tunn, from));
        }
        let mut core = Core::new();
        let applied = core.apply(device(hub_key, 51820, updates));
        assert!(applied.is_ok(), "hub config: {applied:?}");
        Hub {
            core,
            clients,
            now: Instant::now(),
            tun: batch(),
            net: batch(),
            cookies: 0,
        }
    }

    /// Client `i` handshakes with the hub. Returns the time of the hub's answer alone, or of
    /// the whole handshake (`full`: initiation made, answered, response processed).
    fn handshake(&mut self, i: usize, full: bool) -> Duration {
        let mut buf = [0u8; 256];
        loop {
            let t0 = Instant::now();
            let (tunn, from) = &mut self.clients[i];
            let init = match tunn.format_handshake_initiation(&mut buf, true) {
                TunnResult::WriteToNetwork(p) => &*p,
                _ => panic!("client {i}: no handshake initiation"),
            };
            self.tun.clear();
            self.net.clear();
            let t1 = Instant::now();
            let outcome =
                self.core
                    .decapsulate(self.now, *from, init, &mut self.tun, &mut self.net);
            let t2 = Instant::now();
            let answer = self.net.packet(0);
            match (outcome, self.net.len(), answer.first()) {
                (RxOutcome::Handled, 1, Some(2)) => {
                    let done = matches!(
                        tunn.decapsulate(None, answer, &mut buf),
                        TunnResult::WriteToNetwork(_)
                    );
                    let t3 = Instant::now();
                    assert!(done, "client {i}: handshake response rejected");
                    return if full { t3 - t0 } else { t2 - t1 };
                }
                (RxOutcome::Handled, 1, Some(3)) => {
                    self.cookies += 1;
                    let taken = tunn.decapsulate(None, answer, &mut buf);
                    assert!(
                        matches!(taken, TunnResult::Done),
                        "client {i}: cookie reply rejected"
                    );
                }
                other => panic!(
                    "hub answered client {i} with {other:?}: {:?}",
                    self.core.counters().snapshot()
                ),
            }
        }
    }
}

fn handshakes(c: &mut Criterion) {
    let mut hub = Hub::new(PEERS);
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    let mut next = 0usize;
    for (name, full) in [("hub_responds", false), ("full", true)] {
        g.bench_function(name, |bench| {
            bench.iter_custom(|n| {
                (0..n)
                    .map(|_| {
                        next = (next + 1) % PEERS;
                        hub.handshake(next, full)
                    })
                    .sum()
            })
        });
    }
    g.finish();
    eprintln!(
        "handshake: {} cookie round trips (outside the timing)",
        hub.cookies
    );
}

fn hub(c: &mut Criterion) {
    let mut g = c.benchmark_group("hub");
    let mut hub = Hub::new(PEERS);
    for i in 0..PEERS {
        hub.handshake(i, true);
    }
    let mut out = Batch::new(PEERS * 2, PEERS * 2 * 256);
    let now = hub.now;
    out.clear();
    hub.core.tick(now, &mut out);
    assert_eq!(out.len(), 0, "a timer was due in the tick bench");
    g.throughput(Throughput::Elements(PEERS as u64));
    g.bench_function("tick_1000_peers", |bench| {
        bench.iter(|| {
            out.clear();
            hub.core.tick(now, &mut out);
            out.len()
        })
    });

    // One `wg syncconf`-sized transaction: 1,000 peers × 10 prefixes into an empty device.
    let keys: Vec<_> = (0..PEERS)
        .map(|_| PrivateKey::generate().public_key())
        .collect();
    let mut rng = Rng::new(99);
    let nets: Vec<Vec<IpNet>> = (0..PEERS)
        .map(|_| {
            (0..10)
                .filter_map(|_| {
                    IpNet::new(IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)), 24).ok()
                })
                .collect()
        })
        .collect();
    let hub_key = PrivateKey::generate();
    g.sample_size(10);
    g.throughput(Throughput::Elements(PEERS as u64));
    // `replace_allowed_ips` as `wg syncconf`/`wg setconf` send it, and without (append), to
    // show what replacing costs on a growing table.
    for (name, replace) in [
        ("apply_1000_peers_10k_prefixes", true),
        ("apply_1000_peers_10k_prefixes_append", false),
    ] {
        g.bench_function(name, |bench| {
            bench.iter_batched(
                || {
                    let peers = keys
                        .iter()
                        .zip(&nets)
                        .map(|(k, n)| PeerUpdate {
                            replace_allowed_ips: replace,
                            ..peer(*k, None, n)
                        })
                        .collect();
                    (Core::new(), device(hub_key, 51820, peers))
                },
                |(mut core, update)| {
                    let applied = core.apply(update);
                    assert!(applied.is_ok());
                    core
                },
                BatchSize::PerIteration,
            )
        });
    }

    // `wg show` on that hub: the UAPI `get` snapshot.
    let mut big = Core::new();
    let peers = keys
        .iter()
        .zip(&nets)
        .map(|(k, n)| peer(*k, None, n))
        .collect();
    assert!(big.apply(device(hub_key, 51820, peers)).is_ok());
    g.bench_function("snapshot_1000_peers_10k_prefixes", |bench| {
        bench.iter(|| big.snapshot(SystemTime::now()).peers.len())
    });
    g.finish();
}

// ------------------------------------------------------------------ loopback UDP pair

fn loopback_pair(c: &mut Criterion) {
    use edgewire_tunnel::io::offload::Offload;
    use support::loopback::{LoopbackPair, Transport};
    let mut g = c.benchmark_group("loopback_pair");
    for (name, transport) in [
        ("plain", Transport::Plain),
        ("mmsg", Transport::Batched(Offload::Off)),
        ("mmsg_gso_gro", Transport::Batched(Offload::Auto)),
    ] {
        for size in [64, 1420] {
            let pair = match LoopbackPair::start(size, transport) {
                Ok(p) => p,
                Err(e) => panic!("loopback pair ({name}): cannot open UDP on 127.0.0.1: {e}"),
            };
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::new(name, size), |bench| {
                bench.iter_custom(|n| pair.run(n))
            });
        }
    }
    g.finish();
}

// ------------------------------------------------------------------ TUN offloads

/// Payload per segment at tunnel MTU 1420: 1420 − 20 (IPv4) − 20 (TCP).
const MSS: usize = 1380;
const TSO_SEGMENTS: usize = 47;

/// A TCPv4 super-packet as a vnet_hdr TUN returns it: 47 × 1380 bytes of payload behind one
/// IPv4 + TCP header, the TCP checksum field holding the pseudo-header sum (CHECKSUM_PARTIAL).
fn tso_super_packet() -> (edgewire_tunnel::io::offload::VirtioNetHdr, Vec<u8>) {
    use edgewire_tunnel::io::offload::{
        checksum, checksum_fold, pseudo_header_nofold, VirtioNetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM,
        VIRTIO_NET_HDR_GSO_TCPV4,
    };
    let total = 40 + TSO_SEGMENTS * MSS;
    let mut p = vec![0u8; total];
    p[..20].copy_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
        64,
        6,
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
    let c = checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    // Ports 40000 → 5201, seq 1, ack 1, data offset 5, ACK|PSH, window 502.
    p[20..40].copy_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0x01, 0xf6, 0, 0, 0, 0,
    ]);
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    let partial = checksum_fold(pseudo_header_nofold(
        &p[12..16],
        &p[16..20],
        6,
        (total - 20) as u32,
    ));
    p[36..38].copy_from_slice(&partial.to_be_bytes());
    let hdr = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 40,
        gso_size: MSS as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    (hdr, p)
}

fn offload(c: &mut Criterion) {
    use edgewire_tunnel::io::offload::{
        checksum, split_in_place, split_into, transport_checksum_valid,
    };
    use edgewire_tunnel::io::offload_gro::{GroTable, MAX_GRO_HEADER};
    let mut g = c.benchmark_group("offload");
    let (hdr, mut super_packet) = tso_super_packet();
    // The TUN reader's batch: room around each packet for in-place encryption.
    let mut segments = Batch::with_room(64, 64 * (MSS + 40 + 64), 16, 16);
    let done = split_into(&hdr, &mut super_packet, 0, &mut segments);
    assert!(
        matches!(done, Ok(p) if p.emitted == TSO_SEGMENTS && p.next_segment.is_none()),
        "split: {done:?}"
    );
    assert!(
        (0..segments.len()).all(|i| transport_checksum_valid(segments.packet(i), 20, 6)),
        "split checksums"
    );
    g.throughput(Throughput::Bytes((TSO_SEGMENTS * MSS) as u64));
    g.bench_function("tso_split_64k", |bench| {
        bench.iter(|| {
            segments.clear();
            split_into(&hdr, black_box(&mut super_packet), 0, &mut segments).map(|p| p.emitted)
        })
    });

    // What the device does: split where the packet was read, each segment handed on
    // (rewriting a buffer that was split before is the same work: headers are rewritten
    // and every checksum recomputed).
    let (_, mut in_place) = tso_super_packet();
    g.bench_function("tso_split_in_place_64k", |bench| {
        bench.iter(|| {
            let mut bytes = 0;
            split_in_place(&hdr, black_box(&mut in_place), &mut |p| bytes += p.len())
                .map(|n| (n, bytes))
        })
    });

    let mut gro = GroTable::new();
    let mut header = [0u8; MAX_GRO_HEADER];
    gro.plan(&segments, true, false);
    let outs = gro.outputs();
    assert!(
        outs.len() == 1 && usize::from(outs[0].segments) == TSO_SEGMENTS,
        "GRO plan: {outs:?}"
    );
    g.bench_function("gro_coalesce_47", |bench| {
        bench.iter(|| {
            gro.plan(black_box(&segments), true, false);
            let mut n = 0;
            for out in gro.outputs() {
                n += gro.header(out, &segments, &mut header);
            }
            n
        })
    });

    // The transport checksum of one full-sized segment, the split's per-byte work.
    let segment = segments.packet(0);
    g.throughput(Throughput::Bytes(segment.len() as u64));
    g.bench_function("checksum_segment", |bench| {
        bench.iter(|| checksum(black_box(segment), 0))
    });
    g.finish();
}

criterion_group!(
    benches,
    core_packets,
    allowed_ips,
    handshakes,
    hub,
    loopback_pair,
    offload
);
criterion_main!(benches);
