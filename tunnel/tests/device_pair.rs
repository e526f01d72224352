//! Two real devices (threads and all) over in-memory TUNs and an in-memory network: no root.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a test failure

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use edgewire_tunnel::device::{Device, DeviceExit};
use edgewire_tunnel::io::fake::{FakeNet, FakeTun, FakeTunHandle};
use edgewire_tunnel::io::UdpBinder;
use edgewire_tunnel::uapi::UapiDevice;

struct Pair {
    net: FakeNet,
    hub: Arc<Device>,
    hub_tun: FakeTunHandle,
    gw: Arc<Device>,
    gw_tun: FakeTunHandle,
    hub_port: u16,
}

fn pair(keepalive: u16) -> Pair {
    let net = FakeNet::new();
    let (h, g) = (side(), side());
    let (hub_dev, hub_tun) = FakeTun::new(1420);
    let (gw_dev, gw_tun) = FakeTun::new(1420);
    let hub = Device::start(
        Arc::new(hub_dev),
        Arc::new(net.clone()) as Arc<dyn UdpBinder>,
    )
    .unwrap();
    let gw = Device::start(
        Arc::new(gw_dev),
        Arc::new(net.clone()) as Arc<dyn UdpBinder>,
    )
    .unwrap();
    // The guide's shapes: hub 10.8.0.1, gateway 10.8.0.2, AllowedIPs 10.8.0.0/24.
    let hub_port = 51820 + (std::process::id() % 1000) as u16;
    hub.set(config(&h, hub_port, &g, None, "10.8.0.0/24", 0))
        .unwrap();
    gw.set(config(
        &g,
        0,
        &h,
        Some(local(hub_port)),
        "10.8.0.0/24",
        keepalive,
    ))
    .unwrap();
    Pair {
        net,
        hub,
        hub_tun,
        gw,
        gw_tun,
        hub_port,
    }
}

fn wait_for(tun: &FakeTunHandle, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(p) = tun.recv(Duration::from_millis(200)) {
            if p == want {
                return;
            }
        }
    }
    panic!("packet never arrived");
}

#[test]
fn handshake_and_data_both_ways() {
    let p = pair(0);
    let up = ipv4([10, 8, 0, 2], [10, 8, 0, 1], b"hello hub");
    p.gw_tun.inject(&up);
    wait_for(&p.hub_tun, &up);
    let down = ipv4([10, 8, 0, 1], [10, 8, 0, 2], b"hello gateway");
    p.hub_tun.inject(&down);
    wait_for(&p.gw_tun, &down);
    // Many packets in one go keep their order.
    for i in 0..200u32 {
        p.gw_tun
            .inject(&ipv4([10, 8, 0, 2], [10, 8, 0, 1], &i.to_be_bytes()));
    }
    for i in 0..200u32 {
        wait_for(
            &p.hub_tun,
            &ipv4([10, 8, 0, 2], [10, 8, 0, 1], &i.to_be_bytes()),
        );
    }
    let snap = p.hub.get();
    assert!(snap.peers[0].last_handshake.is_some());
    assert!(snap.peers[0].rx_bytes > 0 && snap.peers[0].tx_bytes > 0);
    assert_eq!(snap.listen_port, p.hub_port);
    // The hub learned the gateway's endpoint from its authenticated packets (roaming).
    assert!(snap.peers[0].endpoint.is_some());
    p.hub.shutdown();
    p.gw.shutdown();
}

/// One-way bulk never calls the helper worker (it needs full batches both ways); two-way
/// bulk does, and order is kept in both directions while it helps.
#[test]
fn the_helper_joins_only_for_two_way_bulk() {
    let p = pair(0);
    let up = |i: u32| ipv4([10, 8, 0, 2], [10, 8, 0, 1], &i.to_be_bytes());
    let down = |i: u32| ipv4([10, 8, 0, 1], [10, 8, 0, 2], &i.to_be_bytes());
    p.gw_tun.inject(&up(u32::MAX));
    wait_for(&p.hub_tun, &up(u32::MAX));
    for i in 0..3000 {
        p.gw_tun.inject(&up(i));
    }
    for i in 0..3000 {
        wait_for(&p.hub_tun, &up(i));
    }
    assert_eq!(
        (p.gw.helper_calls(), p.hub.helper_calls()),
        (0, 0),
        "one-way"
    );
    let mut next = 0;
    for _burst in 0..20 {
        // Built first and queued side by side: both devices find full batches both ways.
        let ups: Vec<_> = (next..next + 3000).map(up).collect();
        let downs: Vec<_> = (next..next + 3000).map(down).collect();
        for (u, d) in ups.chunks(500).zip(downs.chunks(500)) {
            u.iter().for_each(|u| p.gw_tun.inject(u));
            d.iter().for_each(|d| p.hub_tun.inject(d));
        }
        for i in next..next + 3000 {
            wait_for(&p.hub_tun, &up(i));
            wait_for(&p.gw_tun, &down(i));
        }
        next += 3000;
        if p.gw.helper_calls() + p.hub.helper_calls() > 0 {
            break;
        }
    }
    assert!(
        p.gw.helper_calls() + p.hub.helper_calls() > 0,
        "two-way bulk of {next} packets each way never called the helper"
    );
    p.hub.shutdown();
    p.gw.shutdown();
}

#[test]
fn persistent_keepalive_handshakes_without_traffic() {
    let p = pair(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.hub.get().peers[0].last_handshake.is_none() {
        assert!(
            Instant::now() < deadline,
            "no handshake from keepalive alone"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p.hub.shutdown();
    p.gw.shutdown();
}

#[test]
fn drops_are_counted_and_nothing_panics() {
    let p = pair(0);
    // No peer owns 192.0.2.1.
    p.gw_tun
        .inject(&ipv4([10, 8, 0, 2], [192, 0, 2, 1], b"nowhere"));
    p.gw_tun.inject(b"\x99not ip");
    // Garbage and truncated WireGuard messages at the hub's port.
    let from = local(9);
    let mut seed = 0x1234_5678u32;
    for len in 0..300usize {
        let mut junk = vec![0u8; len];
        for b in &mut junk {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (seed >> 16) as u8;
        }
        if len > 0 {
            junk[0] = (len % 6) as u8; // types 0..5: valid types with wrong sizes too
        }
        if len >= 4 {
            junk[1..4].fill(0);
        }
        p.net.inject(from, p.hub_port, &junk);
    }
    for (t, len) in [(1u8, 148usize), (2, 92), (3, 64), (4, 32), (4, 100)] {
        let mut m = vec![0u8; len];
        m[0] = t;
        p.net.inject(from, p.hub_port, &m);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let hub = p.hub.counters();
        let gw = p.gw.counters();
        if hub.rx_invalid + hub.rx_unknown_peer + hub.rx_rejected >= 300
            && gw.tx_no_route == 1
            && gw.tx_invalid == 1
        {
            break;
        }
        assert!(Instant::now() < deadline, "hub {hub:?} gw {gw:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still working afterwards.
    let up = ipv4([10, 8, 0, 2], [10, 8, 0, 1], b"still alive");
    p.gw_tun.inject(&up);
    wait_for(&p.hub_tun, &up);
    p.hub.shutdown();
    p.gw.shutdown();
}

#[test]
fn spoofed_source_is_dropped() {
    let p = pair(0);
    // Establish the session first.
    let ok = ipv4([10, 8, 0, 2], [10, 8, 0, 1], b"ok");
    p.gw_tun.inject(&ok);
    wait_for(&p.hub_tun, &ok);
    // The gateway's own route table would send this (dst in 10.8.0.0/24), but the source
    // 10.9.9.9 is outside what the hub allows from the gateway.
    p.gw_tun
        .inject(&ipv4([10, 9, 9, 9], [10, 8, 0, 1], b"spoof"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.hub.counters().rx_source_not_allowed == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(p.hub_tun.recv(Duration::from_millis(200)).is_none());
    p.hub.shutdown();
    p.gw.shutdown();
}

#[test]
fn changing_an_established_peer_keeps_the_session() {
    let p = pair(0);
    let ok = ipv4([10, 8, 0, 2], [10, 8, 0, 1], b"one");
    p.gw_tun.inject(&ok);
    wait_for(&p.hub_tun, &ok);
    let before = p.gw.get().peers[0].last_handshake;
    let hub_key = p.gw.get().peers[0].public_key;
    // `wg set gw peer HUB endpoint ... persistent-keepalive 25 allowed-ips ...`
    let mut change = edgewire_tunnel::uapi::PeerUpdate::new(hub_key);
    change.endpoint = Some(local(p.hub_port));
    change.persistent_keepalive = Some(25);
    change.update_only = true;
    p.gw.set(edgewire_tunnel::uapi::DeviceUpdate {
        peers: vec![change],
        ..Default::default()
    })
    .unwrap();
    let two = ipv4([10, 8, 0, 2], [10, 8, 0, 1], b"two");
    p.gw_tun.inject(&two);
    wait_for(&p.hub_tun, &two);
    assert_eq!(
        p.gw.get().peers[0].last_handshake,
        before,
        "no new handshake was needed"
    );
    assert_eq!(p.gw.get().peers[0].persistent_keepalive, 25);
    p.hub.shutdown();
    p.gw.shutdown();
}

#[test]
fn busy_port_refuses_the_whole_set() {
    let p = pair(0);
    let before = p.gw.get();
    let mut update = config(&side(), p.hub_port, &side(), None, "10.7.0.0/24", 0);
    update.replace_peers = true;
    let err = p.gw.set(update).unwrap_err();
    assert_eq!(err.errno, libc::EADDRINUSE);
    assert_eq!(p.gw.get(), before, "nothing half-applied");
    p.hub.shutdown();
    p.gw.shutdown();
}

#[test]
fn tun_deletion_stops_the_device() {
    let p = pair(0);
    p.gw_tun.delete();
    assert_eq!(
        p.gw.wait(Some(Duration::from_secs(3))),
        Some(DeviceExit::TunGone)
    );
    p.hub.shutdown();
    p.gw.shutdown();
}
