//! The protocol core in virtual time: two cores on one thread, packets shuttled by hand,
//! boringtun's clock advanced with `mock_instant`, so minutes of protocol time cost
//! microseconds. Run with `cargo test -p edgewire-tunnel --features virtual-time`.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a test failure

mod common;

use std::time::{Duration, Instant};

use common::*;
use edgewire_tunnel::io::Batch;
use edgewire_tunnel::proto::Core;
use mock_instant::MockClock;

struct Net {
    a: Core,
    b: Core,
    a_addr: std::net::SocketAddr,
    b_addr: std::net::SocketAddr,
    start: Instant,
    elapsed: Duration,
    /// Handshake initiations seen on the wire, by sender.
    inits: [usize; 2],
    /// Every datagram that crossed, by sender.
    sent: [usize; 2],
}

impl Net {
    fn new(keepalive: u16) -> Net {
        let (ka, kb) = (side(), side());
        let (a_addr, b_addr) = (local(1000), local(2000));
        let mut a = Core::new();
        let mut b = Core::new();
        a.apply(config(
            &ka,
            1000,
            &kb,
            Some(b_addr),
            "10.8.0.2/32",
            keepalive,
        ))
        .unwrap();
        b.apply(config(&kb, 2000, &ka, Some(a_addr), "10.8.0.1/32", 0))
            .unwrap();
        Net {
            a,
            b,
            a_addr,
            b_addr,
            start: Instant::now(),
            elapsed: Duration::ZERO,
            inits: [0; 2],
            sent: [0; 2],
        }
    }

    fn now(&self) -> Instant {
        self.start + self.elapsed
    }

    /// Moves both clocks forward: ours (passed in) and boringtun's (mock_instant).
    fn advance(&mut self, d: Duration) {
        MockClock::advance(d);
        self.elapsed += d;
    }

    /// Delivers everything in flight until both sides are quiet; returns packets that
    /// reached each side's TUN.
    fn pump(&mut self, mut to_b: Batch, mut to_a: Batch) -> [Vec<Vec<u8>>; 2] {
        let mut delivered = [Vec::new(), Vec::new()];
        for _ in 0..16 {
            if to_a.is_empty() && to_b.is_empty() {
                break;
            }
            let (mut next_a, mut next_b) = (batch(), batch());
            for (sender, inbox, out, core, from, tun_idx) in [
                (0usize, &to_b, &mut next_a, &self.b, self.a_addr, 1usize),
                (1usize, &to_a, &mut next_b, &self.a, self.b_addr, 0usize),
            ] {
                for (dgram, _) in inbox.iter() {
                    self.sent[sender] += 1;
                    if dgram[0] == 1 {
                        self.inits[sender] += 1;
                    }
                    let mut tun = batch();
                    core.decapsulate(self.start + self.elapsed, from, dgram, &mut tun, out);
                    delivered[tun_idx].extend(tun.iter().map(|(p, _)| p.to_vec()));
                }
            }
            to_a = next_a;
            to_b = next_b;
        }
        delivered
    }

    fn send_a_to_b(&mut self, payload: &[u8]) -> Vec<Vec<u8>> {
        let mut out = batch();
        self.a.encapsulate(
            self.now(),
            &ipv4([10, 8, 0, 1], [10, 8, 0, 2], payload),
            &mut out,
        );
        let [_, at_b] = self.pump(out, batch());
        at_b
    }

    fn send_b_to_a(&mut self, payload: &[u8]) -> Vec<Vec<u8>> {
        let mut out = batch();
        self.b.encapsulate(
            self.now(),
            &ipv4([10, 8, 0, 2], [10, 8, 0, 1], payload),
            &mut out,
        );
        let [at_a, _] = self.pump(batch(), out);
        at_a
    }

    /// Runs both cores' timers every 100 ms of virtual time for `d`, delivering what they send.
    fn run_for(&mut self, d: Duration) {
        let step = Duration::from_millis(100);
        let mut left = d;
        while !left.is_zero() {
            let s = step.min(left);
            self.advance(s);
            left -= s;
            let (mut ta, mut tb) = (batch(), batch());
            self.a.tick(self.now(), &mut tb);
            self.b.tick(self.now(), &mut ta);
            self.pump(tb, ta);
        }
    }
}

fn batch() -> Batch {
    Batch::new(64, 128 * 1024)
}

#[test]
fn handshake_data_both_ways_and_queue_flush() {
    let mut n = Net::new(0);
    // The first packet is queued behind the handshake and flushed when it completes.
    let got = n.send_a_to_b(b"first");
    assert_eq!(got, vec![ipv4([10, 8, 0, 1], [10, 8, 0, 2], b"first")]);
    assert_eq!(n.inits, [1, 0]);
    assert_eq!(
        n.send_b_to_a(b"reply"),
        vec![ipv4([10, 8, 0, 2], [10, 8, 0, 1], b"reply")]
    );
}

#[test]
fn rekey_after_120_seconds() {
    let mut n = Net::new(0);
    assert_eq!(n.send_a_to_b(b"x").len(), 1);
    assert_eq!(n.inits, [1, 0]);
    // Keep traffic flowing for 130 s of virtual time: the initiator rekeys after 120 s.
    for _ in 0..13 {
        n.run_for(Duration::from_secs(10));
        assert_eq!(
            n.send_a_to_b(b"tick").len(),
            1,
            "traffic flows across the rekey"
        );
    }
    assert!(
        n.inits[0] >= 2,
        "a new handshake was started after REKEY_AFTER_TIME: {:?}",
        n.inits
    );
}

#[test]
fn session_expires_without_traffic() {
    let mut n = Net::new(0);
    assert_eq!(n.send_a_to_b(b"x").len(), 1);
    let hs = n.a.snapshot(std::time::SystemTime::now()).peers[0].last_handshake;
    assert!(hs.is_some());
    // REJECT_AFTER_TIME * 3 = 540 s: all session state is wiped.
    n.run_for(Duration::from_secs(600));
    let sent_before = n.sent;
    // After expiry a packet needs a brand-new handshake.
    assert_eq!(n.send_a_to_b(b"again").len(), 1);
    assert!(n.inits[0] >= 2);
    assert!(n.sent[0] > sent_before[0]);
}

#[test]
fn persistent_keepalive_every_interval() {
    let mut n = Net::new(25);
    n.run_for(Duration::from_secs(1));
    assert_eq!(n.inits[0], 1, "keepalive on: handshake without any traffic");
    let after_hs = n.sent[0];
    n.run_for(Duration::from_secs(100));
    // 100 s / 25 s = 4 keepalives (± one at the boundary), and nothing else.
    let keepalives = n.sent[0] - after_hs;
    assert!(
        (3..=5).contains(&keepalives),
        "{keepalives} keepalives in 100 s"
    );
}

#[test]
fn handshake_retry_when_peer_is_silent() {
    let mut n = Net::new(0);
    // B drops everything: remove A from B.
    n.b.apply(edgewire_tunnel::uapi::DeviceUpdate {
        replace_peers: true,
        ..Default::default()
    })
    .unwrap();
    assert!(n.send_a_to_b(b"lost").is_empty());
    n.run_for(Duration::from_secs(30));
    // REKEY_TIMEOUT is 5 s (+ jitter): about 5 retries in 30 s.
    assert!((4..=7).contains(&n.inits[0]), "{} initiations", n.inits[0]);
}

#[test]
fn a_hub_answers_eighty_gateways_in_one_second_without_cookies() {
    // Each initiation counts once against the device-wide limit (100/s), so 80 gateways
    // starting together all get a handshake response, none a cookie reply.
    let hub_keys = side();
    let mut hub = Core::new();
    let gateways: Vec<(common::Side, Core)> = (0..80)
        .map(|_| {
            let k = side();
            let mut c = Core::new();
            c.apply(config(
                &k,
                0,
                &hub_keys,
                Some(local(1000)),
                "10.8.0.0/24",
                0,
            ))
            .unwrap();
            (k, c)
        })
        .collect();
    let mut update = edgewire_tunnel::uapi::DeviceUpdate {
        private_key: Some(Some(hub_keys.key)),
        listen_port: Some(1000),
        ..Default::default()
    };
    for (i, (k, _)) in gateways.iter().enumerate() {
        let mut p = edgewire_tunnel::uapi::PeerUpdate::new(k.public);
        let net = format!("10.9.{}.{}/32", i / 200, i % 200 + 1)
            .parse()
            .unwrap();
        p.allowed_ips = vec![edgewire_tunnel::uapi::AllowedIpChange::Add(net)];
        update.peers.push(p);
    }
    hub.apply(update).unwrap();
    let now = Instant::now();
    let (mut responses, mut cookies) = (0, 0);
    for (i, (_, gw)) in gateways.iter().enumerate() {
        let mut out = batch();
        gw.encapsulate(now, &ipv4([10, 8, 0, 2], [10, 8, 0, 1], b"hi"), &mut out);
        assert_eq!(out.len(), 1, "one initiation");
        let (mut tun, mut net) = (batch(), batch());
        hub.decapsulate(
            now,
            local(2000 + i as u16),
            out.packet(0),
            &mut tun,
            &mut net,
        );
        for (reply, _) in net.iter() {
            match reply[0] {
                2 => responses += 1,
                3 => cookies += 1,
                other => panic!("unexpected reply type {other}"),
            }
        }
    }
    assert_eq!((responses, cookies), (80, 0));
}
