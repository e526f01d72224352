//! How edgewire starts and stops, next to the tools that drive it:
//! - `wg-quick up`/`down` through `WG_QUICK_USERSPACE_IMPLEMENTATION` (a symlink named
//!   `edgewire-go`), in both offload modes;
//! - `edgewire tun IFACE` daemonises like wireguard-go;
//! - the daemon exits cleanly when its socket file is removed and when its TUN is deleted;
//! - `edgewire down IFACE` stops `edgewire up`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cmd::Output;
use common::netns::Netns;
use common::traffic::{ping_all, wait_ping};
use common::tunnel::{Impl, Offload, Pair, Shapes, Tunnel, GW_IP, HUB_IP};
use common::{edgewire_bin, wg, TempDir};

/// `DIR/edgewire-go` → the edgewire binary.
fn edgewire_go(dir: &TempDir) -> PathBuf {
    let link = dir.path().join("edgewire-go");
    let target = which(common::daemon_bin());
    if let Err(e) = std::os::unix::fs::symlink(&target, &link) {
        panic!("symlink {} → {}: {e}", link.display(), target.display());
    }
    link
}

fn which(prog: &str) -> PathBuf {
    if prog.contains('/') {
        return PathBuf::from(prog);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{prog} not on PATH"))
}

fn wg_quick(
    ns: &Netns,
    verb: &str,
    conf: &Path,
    implementation: &Path,
    offload: Offload,
    log: &Path,
) -> common::cmd::Output {
    let cmd = ns
        .cmd(&["wg-quick", verb])
        .arg(conf)
        .env("WG_QUICK_USERSPACE_IMPLEMENTATION", implementation)
        .env("EDGEWIRE_LOG_FILE", log)
        .timeout(Duration::from_secs(30));
    offload.apply(cmd).run()
}

/// What the daemonised implementation logged (`EDGEWIRE_LOG_FILE`), for failure messages.
fn daemon_log(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(s) => format!("--- daemon log {}:\n{s}", log.display()),
        Err(_) => format!("(no daemon log at {})", log.display()),
    }
}

/// A command's line, status and output, then the daemon's log: for failure messages.
fn describe(out: &Output, log: &Path) -> String {
    format!(
        "`{}` ({}):\n{}{}{}",
        out.argv,
        out.status,
        out.stdout,
        out.stderr,
        daemon_log(log)
    )
}

/// The namespace holds no process any more (the daemonised edgewire-go has exited).
fn wait_no_process(ns: &Netns, what: &str, log: &Path) {
    if common::wait::poll(Duration::from_secs(10), || {
        ns.pids().is_empty().then_some(())
    })
    .is_none()
    {
        panic!(
            "timed out waiting for {what}; still running: {:?}\n{}",
            ns.pids(),
            daemon_log(log)
        );
    }
}

fn wg_quick_up_down(offload: Offload) {
    let test = format!("wg-quick via edgewire-go ({offload:?})");
    if !common::require_root(&test, &["wg-quick"]) {
        return;
    }
    let pair = Pair::new("wq");
    let s = Shapes::guide(&pair);
    let implementation = edgewire_go(&pair.dir);
    let (hub_if, gw_if) = (wg::iface_name("qh"), wg::iface_name("qg"));
    let hub_conf = pair.dir.write(&format!("{hub_if}.conf"), &s.hub.wg_quick());
    let gw_conf = pair.dir.write(&format!("{gw_if}.conf"), &s.gw.wg_quick());
    let hub_log = pair.dir.path().join(format!("{hub_if}.log"));
    let gw_log = pair.dir.path().join(format!("{gw_if}.log"));
    let sides = [
        (&pair.a, &hub_conf, &hub_if, &hub_log),
        (&pair.b, &gw_conf, &gw_if, &gw_log),
    ];

    for (ns, conf, iface, log) in sides {
        let out = wg_quick(ns, "up", conf, &implementation, offload, log);
        let shown = describe(&out, log);
        assert!(out.success(), "{test}: failed {shown}");
        assert!(
            out.stderr.contains("edgewire-go"),
            "wg-quick did not use the userspace implementation: {shown}"
        );
        assert!(ns.link_exists(iface), "{iface} missing after {shown}");
        assert!(
            wg::socket_path(iface).exists(),
            "no UAPI socket for {iface} after {shown}"
        );
        assert!(
            !ns.pids().is_empty(),
            "no daemon left running after {shown}"
        );
    }
    let hs = common::wait::poll(Duration::from_secs(10), || {
        Some(wg::latest_handshake(&pair.b, &gw_if, &s.hub_keys.public)).filter(|&t| t != 0)
    });
    let hs = hs.unwrap_or_else(|| {
        panic!(
            "no handshake 10 s after wg-quick up\n{}\n{}",
            daemon_log(&hub_log),
            daemon_log(&gw_log)
        )
    });
    assert!(hs.abs_diff(wg::unix_now()) < 60, "handshake time {hs}");
    wait_ping(&pair.b, HUB_IP, Duration::from_secs(5));
    ping_all(&pair.b, HUB_IP, 3);
    ping_all(&pair.a, GW_IP, 3);
    let link = pair.a.ok(&["ip", "link", "show", "dev", &hub_if]);
    assert!(
        link.contains("mtu 1420"),
        "wg-quick's MTU on an edgewire TUN:\n{link}"
    );

    for (ns, conf, iface, log) in sides {
        let out = wg_quick(ns, "down", conf, &implementation, offload, log);
        let shown = describe(&out, log);
        assert!(out.success(), "{test}: failed {shown}");
        assert!(!ns.link_exists(iface), "{iface} still exists after {shown}");
        wait_no_process(
            ns,
            &format!("edgewire-go for {iface} to exit after wg-quick down"),
            log,
        );
        assert!(
            !wg::socket_path(iface).exists(),
            "socket of {iface} left after wg-quick down"
        );
    }
}

#[test]
fn wg_quick_up_down_offload_on() {
    wg_quick_up_down(Offload::On);
}

#[test]
fn wg_quick_up_down_offload_off() {
    wg_quick_up_down(Offload::Off);
}

/// `edgewire tun -f IFACE` in a fresh namespace, socket up.
fn bare<'a>(ns: &'a Netns, dir: &TempDir, tag: &str) -> Tunnel<'a> {
    let iface = wg::iface_name(tag);
    let conf = wg::IfaceConf {
        private_key: wg::genkey().private,
        listen_port: Some(51820),
        ..Default::default()
    };
    Tunnel::start(ns, dir, Impl::EdgewireTun(Offload::On), &iface, &conf)
}

#[test]
fn tun_exits_cleanly_when_its_socket_is_removed() {
    if !common::require_root("tun: socket removed", &[]) {
        return;
    }
    let ns = Netns::new("lsk");
    let dir = TempDir::new("lsk");
    let mut t = bare(&ns, &dir, "ls");
    std::fs::remove_file(t.socket()).unwrap_or_else(|e| panic!("removing socket: {e}"));
    let st = t.daemon.wait_timeout(Duration::from_secs(10));
    let st = st.unwrap_or_else(|| {
        panic!(
            "still running 10 s after its socket was removed; log:\n{}",
            t.daemon.log()
        )
    });
    assert_eq!(
        st.code(),
        Some(0),
        "exit after socket removal: {st}; log:\n{}",
        t.daemon.log()
    );
    assert!(!t.link_exists(), "TUN left after socket removal");
}

#[test]
fn tun_exits_cleanly_when_its_tun_is_deleted() {
    if !common::require_root("tun: TUN deleted", &[]) {
        return;
    }
    let ns = Netns::new("ltd");
    let dir = TempDir::new("ltd");
    let mut t = bare(&ns, &dir, "lt");
    ns.ok(&["ip", "link", "del", &t.iface]);
    let st = t.daemon.wait_timeout(Duration::from_secs(10));
    let st = st.unwrap_or_else(|| {
        panic!(
            "still running 10 s after its TUN was deleted; log:\n{}",
            t.daemon.log()
        )
    });
    assert_eq!(
        st.code(),
        Some(0),
        "exit after TUN deletion: {st}; log:\n{}",
        t.daemon.log()
    );
    assert!(!t.socket().exists(), "socket left after TUN deletion");
}

#[test]
fn tun_without_foreground_daemonises_like_wireguard_go() {
    if !common::require_root("tun daemonises", &[]) {
        return;
    }
    let ns = Netns::new("ldm");
    let dir = TempDir::new("ldm");
    let iface = wg::iface_name("ld");
    let socket = wg::socket_path(&iface);
    let log = dir.path().join("daemon.log");
    // Returns once the interface is ready, leaving the daemon behind.
    let argv: Vec<&str> = if common::reference_mode() {
        vec!["wireguard-go", &iface]
    } else {
        vec![edgewire_bin(), "tun", &iface]
    };
    let out = ns
        .cmd(&argv)
        .env("EDGEWIRE_LOG_FILE", &log)
        .timeout(Duration::from_secs(15))
        .run();
    let _cleanup = RemoveOnDrop(socket.clone());
    let shown = describe(&out, &log);
    assert!(out.success(), "failed {shown}");
    assert!(socket.exists(), "no socket when it returned: {shown}");
    assert!(ns.link_exists(&iface), "no TUN when it returned: {shown}");
    assert!(!ns.pids().is_empty(), "no daemon left running: {shown}");
    // Configurable with wg like any wireguard-go.
    let k = wg::genkey();
    let kp = dir.write("key", &k.private);
    let kp = kp.to_string_lossy();
    ns.ok(&[
        "wg",
        "set",
        &iface,
        "private-key",
        &kp,
        "listen-port",
        "51820",
    ]);
    let d = wg::dump(&ns, &iface);
    assert_eq!(
        (d.iface.public_key.as_str(), d.iface.listen_port),
        (k.public.as_str(), 51820)
    );
    ns.ok(&["ip", "link", "del", &iface]);
    wait_no_process(
        &ns,
        "the daemonised `edgewire tun` to exit after its TUN was deleted",
        &log,
    );
    assert!(!socket.exists(), "socket left behind");
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn edgewire_down_stops_edgewire_up() {
    if !common::require_root("edgewire down", &[]) {
        return;
    }
    if common::reference_mode() {
        eprintln!("SKIP edgewire down: edgewire-only (reference mode)");
        return;
    }
    let pair = Pair::new("ldn");
    let s = Shapes::guide(&pair);
    let iface = wg::iface_name("dn");
    let mut hub = Tunnel::start(
        &pair.a,
        &pair.dir,
        Impl::EdgewireUp(Offload::On),
        &iface,
        &s.hub,
    );
    let out = pair
        .a
        .cmd(&[edgewire_bin(), "down", &iface])
        .timeout(Duration::from_secs(20))
        .run();
    assert!(
        out.success(),
        "`{}`: {}\n{}{}",
        out.argv,
        out.status,
        out.stdout,
        out.stderr
    );
    let st = hub.daemon.wait_timeout(Duration::from_secs(10));
    let st = st.unwrap_or_else(|| {
        panic!(
            "`edgewire up` still running after `edgewire down`; log:\n{}",
            hub.daemon.log()
        )
    });
    assert_eq!(
        st.code(),
        Some(0),
        "`edgewire up` after `edgewire down`: {st}"
    );
    assert!(!hub.link_exists(), "{iface} left after `edgewire down`");
    assert!(!hub.socket().exists());
    assert!(!pair.a.routes(&iface).contains("10.8.0.0/24"));
    // A second `down` names the interface and fails.
    let again = pair.a.cmd(&[edgewire_bin(), "down", &iface]).run();
    assert!(
        !again.success(),
        "`edgewire down` of a stopped interface succeeded"
    );
    assert!(
        format!("{}{}", again.stdout, again.stderr).contains(&iface),
        "error must name {iface}: {}",
        again.stderr
    );
}
