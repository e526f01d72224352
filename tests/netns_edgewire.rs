//! edgewire ↔ edgewire with the guide's shapes via `edgewire up path/NAME.conf` (issue 2,
//! "Must show"), once per offload mode (issue 3, item 4): handshake, ping both ways, a
//! 100 MB TCP transfer whose content is checked, then SIGTERM/SIGINT → exit 0 and nothing
//! left behind.

mod common;

use std::time::Duration;

use common::traffic::{ping_all, transfer, wait_ping};
use common::tunnel::{guide_up, Offload, Pair, Shapes, GW_IP, HUB_IP};
use common::wg;
use nix::sys::signal::Signal;

const HUNDRED_MB: u64 = 100_000_000;

/// A log line with the word "offload"/"offloads" and the word "off" (issue 3's "one clear
/// log line" for the fallback path).
fn says_offload_off(log: &str) -> bool {
    log.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        let words: Vec<&str> = l
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .collect();
        words.iter().any(|w| w.starts_with("offload")) && words.contains(&"off")
    })
}

fn guide_shapes_up(offload: Offload) {
    let test = format!("edgewire up ↔ edgewire up ({offload:?})");
    if !common::require_root(&test, &[]) {
        return;
    }
    let pair = Pair::new("eup");
    let s = Shapes::guide(&pair);
    let (mut hub, mut gw) = guide_up(&pair, &s, "u", offload);
    let (hub_if, gw_if) = (hub.iface.clone(), gw.iface.clone());

    // What `edgewire up` must have done, as wg-quick would: MTU 1500 - 80, the address,
    // the route for AllowedIPs.
    let link = pair.a.ok(&["ip", "link", "show", "dev", &hub_if]);
    assert!(
        link.contains("mtu 1420"),
        "hub MTU, want wg-quick's 1420:\n{link}"
    );
    assert!(
        pair.a.addrs(&hub_if).contains(" 10.8.0.1/24"),
        "{}",
        pair.a.addrs(&hub_if)
    );
    assert!(
        pair.b.routes(&gw_if).contains("10.8.0.0/24"),
        "{}",
        pair.b.routes(&gw_if)
    );

    // Issue 3 item 4: the forced fallback is announced in one clear log line.
    if offload == Offload::Off && !common::reference_mode() {
        for t in [&hub, &gw] {
            let log = t.daemon.log();
            assert!(
                says_offload_off(&log),
                "EDGEWIRE_OFFLOAD=off: no log line mentions the offload being off; log:\n{log}"
            );
        }
    }

    // PersistentKeepAlive = 21 makes the gateway handshake without any traffic (a keepalive
    // is sent as soon as the interval is configured, as wg(8) documents and wireguard-go
    // and the kernel do), so the hub can reach a gateway that has sent nothing yet.
    let hs = common::wait::poll(Duration::from_secs(10), || {
        gw.daemon.assert_running("waiting for the keepalive handshake");
        Some(gw.latest_handshake(&s.hub_keys.public)).filter(|&t| t != 0)
    })
    .unwrap_or_else(|| {
        panic!("{test}: no handshake within 10 s of start without traffic: PersistentKeepAlive must send a keepalive at once")
    });
    assert!(
        hs.abs_diff(wg::unix_now()) < 60,
        "latest handshake {hs} is not UNIX time"
    );
    hub.wait_handshake(&s.gw_keys.public, Duration::from_secs(5));

    wait_ping(&pair.b, HUB_IP, Duration::from_secs(5));
    ping_all(&pair.b, HUB_IP, 5);
    ping_all(&pair.a, GW_IP, 5);

    let r = transfer(
        &pair.b,
        &pair.a,
        HUB_IP,
        HUNDRED_MB,
        Duration::from_secs(120),
    );
    eprintln!(
        "{test}: 100 MB gateway→hub checked in {:.2} s ({:.0} Mbit/s, hash {:016x})",
        r.elapsed.as_secs_f64(),
        r.mbit_per_s(),
        r.hash
    );
    let d = hub.dump();
    let p = d
        .peer(&s.gw_keys.public)
        .expect("gateway in the hub's dump");
    assert!(p.rx >= HUNDRED_MB, "hub rx counter {} < 100 MB", p.rx);

    // SIGTERM (systemd's stop) on the hub, SIGINT (Ctrl-C) on the gateway: exit 0, the
    // interface, its routes and the UAPI socket gone.
    for (t, sig) in [(&mut hub, Signal::SIGTERM), (&mut gw, Signal::SIGINT)] {
        let st = t.stop(sig, Duration::from_secs(10));
        assert_eq!(
            st.code(),
            Some(0),
            "`edgewire up` after {sig}: {st}; log:\n{}",
            t.daemon.log()
        );
        assert!(!t.link_exists(), "{} still exists after {sig}", t.iface);
        assert!(
            !t.socket().exists(),
            "{} left after {sig}",
            t.socket().display()
        );
        assert!(
            !t.ns.routes(&t.iface).contains("10.8.0.0/24"),
            "route left after {sig}"
        );
    }
}

#[test]
fn guide_shapes_up_offload_on() {
    guide_shapes_up(Offload::On);
}

#[test]
fn guide_shapes_up_offload_off() {
    guide_shapes_up(Offload::Off);
}
