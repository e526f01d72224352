//! edgewire ↔ Debian's wireguard-go, each side initiating, in both offload modes.
//!
//! Only the initiator is given an Endpoint and neither side a keepalive, so the first
//! handshake must come from the initiator, triggered by the first ping; the responder has
//! to learn the initiator's endpoint from it.

mod common;

use std::time::Duration;

use common::traffic::{ping_all, transfer, wait_ping};
use common::tunnel::{Impl, Initiator, Offload, Pair, Shapes, Tunnel, GW_IP, HUB_IP};
use common::wg;

const EIGHT_MB: u64 = 8 << 20;

/// edgewire is the gateway (`edgewire up`, has the Endpoint) when `edgewire_initiates`,
/// otherwise the hub (listening, no Endpoint) and wireguard-go initiates.
fn interop(offload: Offload, edgewire_initiates: bool) {
    let who = if edgewire_initiates {
        "edgewire"
    } else {
        "wireguard-go"
    };
    let test = format!("edgewire ↔ wireguard-go, {who} initiates ({offload:?})");
    if !common::require_root(&test, &["wireguard-go"]) {
        return;
    }
    let pair = Pair::new("iop");
    let s = Shapes::new(&pair, Initiator::Gateway, None);
    let (hub_imp, gw_imp) = if edgewire_initiates {
        (Impl::WireguardGo, Impl::EdgewireUp(offload))
    } else {
        (Impl::EdgewireUp(offload), Impl::WireguardGo)
    };
    let (hub_if, gw_if) = (wg::iface_name("ih"), wg::iface_name("ig"));
    let mut hub = Tunnel::start(&pair.a, &pair.dir, hub_imp, &hub_if, &s.hub);
    let mut gw = Tunnel::start(&pair.b, &pair.dir, gw_imp, &gw_if, &s.gw);

    assert_eq!(
        gw.latest_handshake(&s.hub_keys.public),
        0,
        "handshake before any traffic"
    );
    wait_ping(&pair.b, HUB_IP, Duration::from_secs(10));
    let hs = gw.wait_handshake(&s.hub_keys.public, Duration::from_secs(5));
    assert!(
        hs.abs_diff(wg::unix_now()) < 60,
        "handshake time {hs} is not UNIX time"
    );
    hub.wait_handshake(&s.gw_keys.public, Duration::from_secs(5));

    // The responder learned the initiator's endpoint (it was never configured).
    let learned = hub.dump();
    let p = learned
        .peer(&s.gw_keys.public)
        .expect("gateway in the hub's dump");
    assert!(
        p.endpoint.starts_with(&format!("{}:", pair.veth.b_ip)),
        "{test}: hub did not learn the gateway's endpoint: {p:?}"
    );

    ping_all(&pair.b, HUB_IP, 5);
    ping_all(&pair.a, GW_IP, 5);
    let up = transfer(&pair.b, &pair.a, HUB_IP, EIGHT_MB, Duration::from_secs(60));
    let down = transfer(&pair.a, &pair.b, GW_IP, EIGHT_MB, Duration::from_secs(60));
    eprintln!(
        "{test}: 8 MiB checked, gateway→hub {:.0} Mbit/s, hub→gateway {:.0} Mbit/s",
        up.mbit_per_s(),
        down.mbit_per_s()
    );
    hub.daemon.assert_running(&test);
    gw.daemon.assert_running(&test);
}

#[test]
fn edgewire_initiates_offload_on() {
    interop(Offload::On, true);
}

#[test]
fn edgewire_initiates_offload_off() {
    interop(Offload::Off, true);
}

#[test]
fn wireguard_go_initiates_offload_on() {
    interop(Offload::On, false);
}

#[test]
fn wireguard_go_initiates_offload_off() {
    interop(Offload::Off, false);
}
