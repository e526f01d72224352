//! Proof that the steady-state data path never touches the heap: a counting global allocator
//! wraps the system one, and after a warm-up (handshake done, batches at size, tracing
//! callsites registered) thousands of encapsulate → decapsulate rounds through two `Core`s,
//! in both directions, IPv4 and IPv6, small and full-size packets, plus `tick`s with no timer
//! due, must allocate exactly zero times; so must dropping junk datagrams, and the same
//! rounds through real UDP sockets on 127.0.0.1 (`io::LinuxUdp`, with and without GSO/GRO).
//!
//! Counting is per thread (the test harness allocates on its own threads meanwhile). When
//! something does allocate, the first allocation's backtrace is captured and printed, so the
//! failure names the line.
//!
//! Run: `cargo test -p edgewire-tunnel --test alloc_free`
// Test set-up from constants: a failure there is a bug in the test, shown by the panic.
#![allow(clippy::unwrap_used)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::Instant;

use common::*;
use edgewire_tunnel::io::offload::Offload;
use edgewire_tunnel::io::udp_linux::{RECV_BATCH_BYTES, RECV_BATCH_ENTRIES};
use edgewire_tunnel::io::{Batch, LinuxUdp, UdpIo};
use edgewire_tunnel::proto::{Core, RxOutcome, TxOutcome};
use edgewire_tunnel::route::IpNet;
use edgewire_tunnel::uapi::{AllowedIpChange, DeviceUpdate, PeerUpdate};

// ---------------------------------------------------------------- the counting allocator

struct Counting;

thread_local! {
    /// Count allocations made by this thread.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    /// Set while recording a backtrace, so the recording itself is not counted.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    static FIRST_SITE: RefCell<Option<String>> = const { RefCell::new(None) };
}

impl Counting {
    fn note(&self, what: &str, size: usize) {
        // `try_with`: never panic inside the allocator (thread-locals may be gone at exit).
        let armed = ARMED.try_with(Cell::get).unwrap_or(false);
        let recording = RECORDING.try_with(Cell::get).unwrap_or(true);
        if !armed || recording {
            return;
        }
        let n = COUNT.try_with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        if n == Ok(1) {
            let _ = RECORDING.try_with(|r| r.set(true));
            let trace = std::backtrace::Backtrace::force_capture();
            let _ = FIRST_SITE.try_with(|s| {
                *s.borrow_mut() = Some(format!("{what} of {size} bytes at\n{trace}"))
            });
            let _ = RECORDING.try_with(|r| r.set(false));
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's own arguments, so `System`'s
// guarantees hold unchanged; the bookkeeping only touches thread-locals.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note("alloc", layout.size());
        // SAFETY: forwarded verbatim; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note("alloc_zeroed", layout.size());
        // SAFETY: forwarded verbatim; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note("realloc", new_size);
        // SAFETY: forwarded verbatim; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded verbatim; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` with counting on; returns how many allocations it made on this thread and where
/// the first one happened.
fn count_allocations<R>(f: impl FnOnce() -> R) -> (u64, Option<String>, R) {
    COUNT.with(|c| c.set(0));
    FIRST_SITE.with(|s| s.borrow_mut().take());
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (
        COUNT.with(Cell::get),
        FIRST_SITE.with(|s| s.borrow_mut().take()),
        r,
    )
}

// ---------------------------------------------------------------- two cores

const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// A minimal IPv6 packet (UDP next header) carrying `payload`.
fn ipv6(src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![
        0x60,
        0,
        0,
        0,
        (payload.len() >> 8) as u8,
        payload.len() as u8,
        17,
        64,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

struct Pair {
    a: Core,
    b: Core,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    /// Reused for the whole test, as the device threads reuse theirs.
    out: Batch,
    tun: Batch,
    net: Batch,
    /// Packets to send: (from A?, bytes).
    packets: Vec<(bool, Vec<u8>)>,
}

fn allowed(
    me: &Side,
    port: u16,
    peer: &Side,
    endpoint: SocketAddr,
    v4: &str,
    v6: &str,
) -> DeviceUpdate {
    let mut update = config(me, port, peer, Some(endpoint), v4, 0);
    let with_v6: PeerUpdate = PeerUpdate {
        allowed_ips: vec![
            AllowedIpChange::Add(v4.parse::<IpNet>().unwrap()),
            AllowedIpChange::Add(v6.parse::<IpNet>().unwrap()),
        ],
        ..update.peers[0].clone()
    };
    update.peers = vec![with_v6];
    update
}

impl Pair {
    fn new(a_addr: SocketAddr, b_addr: SocketAddr) -> Pair {
        let (ka, kb) = (side(), side());
        let mut a = Core::new();
        let mut b = Core::new();
        a.apply(allowed(
            &ka,
            1000,
            &kb,
            b_addr,
            "10.8.0.2/32",
            "fd00::2/128",
        ))
        .unwrap();
        b.apply(allowed(
            &kb,
            2000,
            &ka,
            a_addr,
            "10.8.0.1/32",
            "fd00::1/128",
        ))
        .unwrap();
        let mut packets = Vec::new();
        for size in [0usize, 44, 492, 1400] {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            packets.push((true, ipv4([10, 8, 0, 1], [10, 8, 0, 2], &payload)));
            packets.push((false, ipv4([10, 8, 0, 2], [10, 8, 0, 1], &payload)));
            packets.push((true, ipv6(A6, B6, &payload[..size.min(1380)])));
            packets.push((false, ipv6(B6, A6, &payload[..size.min(1380)])));
        }
        let batch = || Batch::new(64, 64 * 2048);
        Pair {
            a,
            b,
            a_addr,
            b_addr,
            out: batch(),
            tun: batch(),
            net: batch(),
            packets,
        }
    }

    /// Handshake: A's first packet is queued behind it and released when it completes.
    fn handshake(&mut self) {
        let now = Instant::now();
        self.out.clear();
        let first = ipv4([10, 8, 0, 1], [10, 8, 0, 2], b"first");
        assert_eq!(
            self.a.encapsulate(now, &first, &mut self.out),
            TxOutcome::Sent
        );
        let mut delivered = 0;
        // init → B; response → A; keepalive + queued packet → B.
        let mut to_b: Vec<Vec<u8>> = self.out.iter().map(|(d, _)| d.to_vec()).collect();
        for _ in 0..4 {
            let mut to_a = Vec::new();
            for d in &to_b {
                self.tun.clear();
                self.net.clear();
                self.b
                    .decapsulate(now, self.a_addr, d, &mut self.tun, &mut self.net);
                delivered += self.tun.len();
                to_a.extend(self.net.iter().map(|(d, _)| d.to_vec()));
            }
            to_b.clear();
            for d in &to_a {
                self.tun.clear();
                self.net.clear();
                self.a
                    .decapsulate(now, self.b_addr, d, &mut self.tun, &mut self.net);
                to_b.extend(self.net.iter().map(|(d, _)| d.to_vec()));
            }
        }
        assert_eq!(
            delivered, 1,
            "the queued packet arrives after the handshake"
        );
    }

    /// Every packet once through encapsulate → decapsulate; returns how many arrived intact.
    fn round(&mut self) -> usize {
        let now = Instant::now();
        let mut ok = 0;
        for (from_a, packet) in &self.packets {
            let (tx, rx, src) = if *from_a {
                (&self.a, &self.b, self.a_addr)
            } else {
                (&self.b, &self.a, self.b_addr)
            };
            self.out.clear();
            if tx.encapsulate(now, packet, &mut self.out) != TxOutcome::Sent || self.out.len() != 1
            {
                continue;
            }
            self.tun.clear();
            self.net.clear();
            let outcome =
                rx.decapsulate(now, src, self.out.packet(0), &mut self.tun, &mut self.net);
            if outcome == RxOutcome::Delivered && self.tun.packet(0) == packet.as_slice() {
                ok += 1;
            }
        }
        ok
    }

    fn ticks(&mut self) -> usize {
        let now = Instant::now();
        self.net.clear();
        self.a.tick(now, &mut self.net);
        self.b.tick(now, &mut self.net);
        self.net.len()
    }

    /// Datagrams that must be dropped: garbage, truncated data, a replayed message.
    fn drops(&mut self, replay: &[u8]) -> usize {
        let now = Instant::now();
        let mut dropped = 0;
        let junk: [&[u8]; 4] = [&[], &[4, 0, 0, 0, 1, 2, 3], &[1; 148], replay];
        for d in junk {
            self.tun.clear();
            self.net.clear();
            if self
                .b
                .decapsulate(now, self.a_addr, d, &mut self.tun, &mut self.net)
                == RxOutcome::Dropped
            {
                dropped += 1;
            }
        }
        dropped
    }
}

fn established() -> Pair {
    established_at(local(1000), local(2000))
}

fn established_at(a_addr: SocketAddr, b_addr: SocketAddr) -> Pair {
    let mut p = Pair::new(a_addr, b_addr);
    p.handshake();
    // Warm-up: every path runs once (lazy statics, tracing callsites, first-use buffers).
    for _ in 0..64 {
        assert_eq!(p.round(), p.packets.len(), "warm-up: every packet arrives");
        p.ticks();
    }
    p
}

const ROUNDS: usize = 2_000;

#[test]
fn encapsulate_and_decapsulate_allocate_nothing() {
    let mut p = established();
    let expected = ROUNDS * p.packets.len();
    let (allocs, site, delivered) =
        count_allocations(|| (0..ROUNDS).map(|_| p.round()).sum::<usize>());
    assert_eq!(delivered, expected, "every packet arrives intact");
    assert!(
        allocs == 0,
        "{allocs} heap allocations in {expected} packets; the first was {}",
        site.unwrap_or_default()
    );
}

#[test]
fn tick_with_no_timer_due_allocates_nothing() {
    let mut p = established();
    let (allocs, site, sent) = count_allocations(|| (0..ROUNDS).map(|_| p.ticks()).sum::<usize>());
    assert_eq!(sent, 0, "no timer was due, nothing was sent");
    assert!(
        allocs == 0,
        "{allocs} heap allocations in {ROUNDS} ticks; the first was {}",
        site.unwrap_or_default()
    );
}

#[test]
fn dropped_datagrams_allocate_nothing() {
    let mut p = established();
    p.out.clear();
    let now = Instant::now();
    assert_eq!(
        p.a.encapsulate(now, &p.packets[0].1, &mut p.out),
        TxOutcome::Sent
    );
    let replay = p.out.packet(0).to_vec();
    p.tun.clear();
    p.net.clear();
    assert_eq!(
        p.b.decapsulate(now, p.a_addr, &replay, &mut p.tun, &mut p.net),
        RxOutcome::Delivered
    );
    for _ in 0..16 {
        p.drops(&replay);
    }
    let (allocs, site, dropped) =
        count_allocations(|| (0..ROUNDS).map(|_| p.drops(&replay)).sum::<usize>());
    assert_eq!(
        dropped,
        ROUNDS * 4,
        "garbage, truncated, handshake with a bad mac and a replay are all dropped"
    );
    assert!(
        allocs == 0,
        "{allocs} heap allocations dropping {} datagrams; the first was {}",
        ROUNDS * 4,
        site.unwrap_or_default()
    );
}

#[test]
fn the_counter_counts() {
    let (allocs, site, v) = count_allocations(|| vec![1u8; 100]);
    assert_eq!(v.len(), 100);
    assert_eq!(allocs, 1, "the counting allocator sees a Vec allocation");
    assert!(site.is_some_and(|s| s.contains("alloc")));
}

#[test]
fn the_counter_sees_inside_the_core() {
    // Control: a packet queued behind a handshake is copied to the heap by boringtun (its
    // queue holds `Vec<u8>`s), so counting does reach allocations made inside `Core`.
    let mut p = Pair::new(local(1000), local(2000));
    let (allocs, _, ()) = count_allocations(|| p.handshake());
    assert!(
        allocs > 0,
        "the handshake (queue, session set-up) allocates and is counted"
    );
}

/// A→B through real sockets on 127.0.0.1 (`io::LinuxUdp`: sendmmsg/recvmmsg, GSO/GRO when
/// `offload` allows): each round encrypts 32 packets into one batch, sends it, receives and
/// decrypts until all arrived. Returns the packets delivered.
fn udp_rounds(p: &mut Pair, a: &LinuxUdp, b: &LinuxUdp, rx: &mut Batch, rounds: usize) -> usize {
    let mut delivered = 0;
    for _ in 0..rounds {
        let now = Instant::now();
        p.out.clear();
        for (from_a, packet) in &p.packets {
            for _ in 0..4 {
                if *from_a {
                    p.a.encapsulate(now, packet, &mut p.out);
                }
            }
        }
        let sent = p.out.len();
        a.send(&p.out).unwrap();
        let mut got = 0;
        while got < sent {
            rx.clear();
            if b.recv(rx).unwrap() == 0 {
                break; // POLL_INTERVAL without data: lost, counted by the caller's assert
            }
            for (d, src) in rx.iter() {
                p.tun.clear();
                p.net.clear();
                if p.b.decapsulate(now, src, d, &mut p.tun, &mut p.net) == RxOutcome::Delivered {
                    got += 1;
                }
            }
        }
        delivered += got;
    }
    delivered
}

#[test]
fn udp_sockets_allocate_nothing_either() {
    for offload in [Offload::Auto, Offload::Off] {
        let a = LinuxUdp::bind(0, 0, offload).unwrap();
        let b = LinuxUdp::bind(0, 0, offload).unwrap();
        let mut p = established_at(local(a.local_port()), local(b.local_port()));
        let mut rx = Batch::new(RECV_BATCH_ENTRIES, RECV_BATCH_BYTES);
        let per_round = 4 * p.packets.iter().filter(|(from_a, _)| *from_a).count();
        assert_eq!(
            udp_rounds(&mut p, &a, &b, &mut rx, 16),
            16 * per_round,
            "warm-up over UDP ({offload:?})"
        );
        let rounds = 200;
        let (allocs, site, delivered) =
            count_allocations(|| udp_rounds(&mut p, &a, &b, &mut rx, rounds));
        assert_eq!(
            delivered,
            rounds * per_round,
            "every datagram arrives on loopback ({offload:?})"
        );
        assert!(
            allocs == 0,
            "{allocs} heap allocations in {} packets over UDP ({offload:?}, {}); the first was {}",
            rounds * per_round,
            a.offload_status(),
            site.unwrap_or_default()
        );
    }
}
