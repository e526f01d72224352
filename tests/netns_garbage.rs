//! Bad input at the real UDP port (issue 2, "Bad input"): random bytes and truncated or
//! forged WireGuard messages sent to a running `edgewire up` are dropped and counted, the
//! daemon keeps running and the established tunnel keeps passing traffic.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::traffic::{ping_all, wait_ping};
use common::tunnel::{guide_up, Offload, Pair, Shapes, HUB_IP, PORT};
use nix::sys::signal::Signal;

/// Deterministic junk: every length 0..=300, with the type byte cycling through the real
/// message types (1–4) and invalid ones, reserved bytes zeroed so size checks are reached.
fn junk() -> Vec<Vec<u8>> {
    let mut seed = 0x9e37_79b9u32;
    let mut out = Vec::new();
    for len in 0..=300usize {
        let mut d: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect();
        if len >= 4 {
            d[0] = (len % 6) as u8;
            d[1..4].fill(0);
        }
        out.push(d);
    }
    // Exact-size messages of every type with garbage inside: they reach the crypto checks.
    for (t, len) in [(1u8, 148usize), (2, 92), (3, 64), (4, 32), (4, 1452)] {
        let mut m = vec![0xa5u8; len];
        m[..4].copy_from_slice(&[t, 0, 0, 0]);
        out.push(m);
    }
    out
}

fn garbage(offload: Offload) {
    let test = format!("garbage at the UDP port ({offload:?})");
    if !common::require_root(&test, &[]) {
        return;
    }
    let pair = Pair::new("gbg");
    let s = Shapes::guide(&pair);
    let (mut hub, mut gw) = guide_up(&pair, &s, "g", offload);
    hub.wait_handshake(&s.gw_keys.public, Duration::from_secs(10));
    wait_ping(&pair.b, HUB_IP, Duration::from_secs(5));

    let target = SocketAddr::new(pair.veth.a_ip.into(), PORT);
    let junk = junk();
    let sent = pair.b.enter(|| {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind in the gateway namespace");
        let mut sent = 0;
        for round in 0..3 {
            for d in &junk {
                if sock.send_to(d, target).is_ok() {
                    sent += 1;
                }
            }
            if round == 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        sent
    });
    assert!(sent > 800, "sent {sent} junk datagrams");

    hub.daemon.assert_running("after junk datagrams");
    ping_all(&pair.b, HUB_IP, 5);
    assert_ne!(hub.latest_handshake(&s.gw_keys.public), 0);

    // The drop counters are logged on the way down.
    let status = hub.stop(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.success(), "hub exit {status:?}");
    let log = hub.daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("dropped packets:"))
        .unwrap_or_else(|| panic!("no drop counters in log:\n{log}"));
    let count = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in {line}"))
    };
    let dropped = count("rx_invalid") + count("rx_unknown_peer") + count("rx_rejected");
    // Empty datagrams never reach us as datagrams; everything else must be counted.
    assert!(
        dropped >= (sent as u64) * 9 / 10,
        "{dropped} of {sent} junk datagrams counted: {line}"
    );
    eprintln!("{test}: {line}");
    let _ = gw.stop(Signal::SIGTERM, Duration::from_secs(10));
}

#[test]
fn garbage_is_dropped_and_counted_offload_on() {
    garbage(Offload::On);
}

#[test]
fn garbage_is_dropped_and_counted_offload_off() {
    garbage(Offload::Off);
}
