//! Self-tests of the namespace harness (`tests/common/`), and the baseline it is measured
//! against: Debian's wireguard-go talking to itself with the guide's shapes. If these fail,
//! the edgewire namespace tests prove nothing.

mod common;

use std::time::Duration;

use common::netns::Netns;
use common::traffic::{ping_all, transfer, wait_ping};
use common::tunnel::{Impl, Pair, Shapes, Tunnel, GW_IP, HUB_IP};
use common::wg;
use nix::sys::signal::Signal;

#[test]
fn names_are_unique_and_fit_ifnamsiz() {
    let names: Vec<String> = (0..200).map(|_| wg::iface_name("abcdef")).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicate interface names");
    assert!(
        names
            .iter()
            .all(|n| n.len() <= 15 && n.starts_with("ewabc")),
        "{names:?}"
    );
}

#[test]
fn missing_prerequisites_skip_locally() {
    assert!(!common::require_root_in(
        "prereq check",
        &["edgewire-no-such-tool"],
        false
    ));
}

#[test]
#[should_panic(expected = "CI=true")]
fn missing_prerequisites_fail_in_ci() {
    common::require_root_in("prereq check", &["edgewire-no-such-tool"], true);
}

#[test]
fn netns_and_children_are_removed_even_when_the_test_panics() {
    if !common::require_root("netns cleanup", &[]) {
        return;
    }
    let mut seen = (String::new(), 0);
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = Netns::new("panic");
        let pair_peer = Netns::new("panic2");
        let _veth = common::netns::VethPair::new(&ns, &pair_peer);
        let child = ns.cmd(&["sleep", "600"]).spawn();
        seen = (ns.name().to_string(), child.pid());
        assert!(std::path::Path::new("/var/run/netns")
            .join(ns.name())
            .exists());
        panic!("deliberate panic: checking cleanup on unwind (expected in the log)");
    }));
    assert!(res.is_err());
    let (name, pid) = seen;
    assert!(
        !std::path::Path::new("/var/run/netns").join(&name).exists(),
        "{name} left behind"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "child {pid} still running after drop"
    );
}

#[test]
fn enter_puts_sockets_in_the_namespace() {
    if !common::require_root("netns enter", &[]) {
        return;
    }
    let a = Netns::new("enter");
    let b = Netns::new("enter");
    let veth = common::netns::VethPair::new(&a, &b);
    // The underlay address exists only in `a`: binding it elsewhere fails.
    let bound = a.enter(|| std::net::TcpListener::bind((veth.a_ip, 0)));
    assert!(bound.is_ok(), "bind in {}: {bound:?}", a.name());
    let outside = std::net::TcpListener::bind((veth.a_ip, 0));
    assert!(
        outside.is_err(),
        "{} is bindable outside its namespace",
        veth.a_ip
    );
    let r = transfer(&b, &a, veth.a_ip, 1 << 20, Duration::from_secs(20));
    assert_eq!(r.bytes, 1 << 20);
}

/// wireguard-go ↔ wireguard-go with the guide's shapes: the harness end to end, and the
/// baseline figures the edgewire tests are compared with.
#[test]
fn wireguard_go_pair_baseline() {
    if !common::require_root("wireguard-go baseline", &["wireguard-go"]) {
        return;
    }
    let pair = Pair::new("wgb");
    let s = Shapes::guide(&pair);
    let (hub_if, gw_if) = (wg::iface_name("bh"), wg::iface_name("bg"));
    let mut hub = Tunnel::start(&pair.a, &pair.dir, Impl::WireguardGo, &hub_if, &s.hub);
    let mut gw = Tunnel::start(&pair.b, &pair.dir, Impl::WireguardGo, &gw_if, &s.gw);

    let hs = gw.wait_handshake(&s.hub_keys.public, Duration::from_secs(10));
    assert!(
        hs.abs_diff(wg::unix_now()) < 60,
        "handshake time {hs} is not UNIX time"
    );
    hub.wait_handshake(&s.gw_keys.public, Duration::from_secs(5));

    wait_ping(&pair.b, HUB_IP, Duration::from_secs(5));
    ping_all(&pair.b, HUB_IP, 3);
    ping_all(&pair.a, GW_IP, 3);

    let up = transfer(&pair.b, &pair.a, HUB_IP, 16 << 20, Duration::from_secs(60));
    let down = transfer(&pair.a, &pair.b, GW_IP, 16 << 20, Duration::from_secs(60));
    eprintln!(
        "baseline wireguard-go: gateway→hub {:.0} Mbit/s, hub→gateway {:.0} Mbit/s (16 MiB, checked)",
        up.mbit_per_s(),
        down.mbit_per_s()
    );

    let d = hub.dump();
    let p = d
        .peer(&s.gw_keys.public)
        .expect("gateway peer in hub's dump");
    assert!(p.rx > 16 << 20 && p.tx > 16 << 20, "counters: {p:?}");
    assert_eq!(d.iface.listen_port, 51820);
    assert!(
        p.endpoint.starts_with(&pair.veth.b_ip.to_string()),
        "roamed endpoint: {p:?}"
    );

    // wireguard-go's own lifecycle, the reference for edgewire's: SIGTERM removes both.
    let st = gw.stop(Signal::SIGTERM, Duration::from_secs(5));
    assert!(st.success() || st.code().is_some(), "{st}");
    assert!(!gw.socket().exists(), "wireguard-go left its socket");
    assert!(!gw.link_exists(), "wireguard-go left its TUN");
    let _ = hub.stop(Signal::SIGTERM, Duration::from_secs(5));
}
