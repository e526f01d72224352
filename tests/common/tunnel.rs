//! Two namespaces joined by a veth ([`Pair`]) and one WireGuard implementation running in a
//! namespace ([`Tunnel`]): `edgewire up NAME.conf`, `edgewire tun -f` + `wg setconf`, or
//! `wireguard-go -f` + `wg setconf`. A `Tunnel` borrows its namespace, so the borrow checker
//! guarantees daemons are stopped before their namespace is deleted.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::cmd::{Child, Cmd, Output};
use super::netns::{Netns, VethPair};
use super::wg::{self, Dump, IfaceConf, KeyPair, PeerConf};
use super::{edgewire_bin, wait, TempDir};

/// The environment switch of issue 3: `Off` forces every fallback path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// Whatever the kernel supports (the variable is removed from the child's environment).
    On,
    /// `EDGEWIRE_OFFLOAD=off`.
    Off,
}

impl Offload {
    pub const BOTH: [Offload; 2] = [Offload::On, Offload::Off];

    pub fn apply(self, cmd: Cmd) -> Cmd {
        match self {
            Offload::On => cmd.env_remove("EDGEWIRE_OFFLOAD"),
            Offload::Off => cmd.env("EDGEWIRE_OFFLOAD", "off"),
        }
    }
}

/// Which implementation runs an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// `edgewire up DIR/IFACE.conf` in the foreground (addresses, MTU, routes by edgewire).
    EdgewireUp(Offload),
    /// `edgewire tun -f IFACE`, configured with `wg setconf` + `ip`.
    EdgewireTun(Offload),
    /// Debian's `wireguard-go -f IFACE`, configured with `wg setconf` + `ip`.
    WireguardGo,
}

/// Namespace `a` (the hub side) and `b` (the gateway side) joined by a veth, plus a temp dir
/// for configs. Fields drop in order: veth, namespaces, dir.
pub struct Pair {
    pub veth: VethPair,
    pub a: Netns,
    pub b: Netns,
    pub dir: TempDir,
}

impl Pair {
    pub fn new(tag: &str) -> Pair {
        let a = Netns::new(&format!("{tag}a"));
        let b = Netns::new(&format!("{tag}b"));
        let veth = VethPair::new(&a, &b);
        Pair {
            veth,
            a,
            b,
            dir: TempDir::new(tag),
        }
    }
}

/// Who has the other side's Endpoint (and so must send the first handshake).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    Gateway,
    Hub,
}

pub const HUB_IP: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
pub const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 2);
pub const PORT: u16 = 51820;

/// Keys and configs for the guide's hub (10.8.0.1/24, ListenPort 51820, in `pair.a`) and
/// gateway (10.8.0.2/24, in `pair.b`), both peers with AllowedIPs 10.8.0.0/24.
pub struct Shapes {
    pub hub_keys: KeyPair,
    pub gw_keys: KeyPair,
    pub hub: IfaceConf,
    pub gw: IfaceConf,
}

impl Shapes {
    /// The guide exactly: the gateway has Endpoint = hub:51820, both PersistentKeepAlive = 21.
    pub fn guide(pair: &Pair) -> Shapes {
        Shapes::new(pair, Initiator::Gateway, Some(21))
    }

    /// Only `initiator` knows an Endpoint (the other side also listens on 51820), so the
    /// first handshake must come from it.
    pub fn new(pair: &Pair, initiator: Initiator, keepalive: Option<u16>) -> Shapes {
        let (hub_keys, gw_keys) = (wg::genkey(), wg::genkey());
        let net = "10.8.0.0/24".to_string();
        let hub = IfaceConf {
            private_key: hub_keys.private.clone(),
            listen_port: Some(PORT),
            addresses: vec![format!("{HUB_IP}/24")],
            mtu: None,
            peers: vec![PeerConf {
                public_key: gw_keys.public.clone(),
                endpoint: (initiator == Initiator::Hub)
                    .then(|| format!("{}:{PORT}", pair.veth.b_ip)),
                allowed_ips: vec![net.clone()],
                keepalive,
                ..PeerConf::default()
            }],
        };
        let gw = IfaceConf {
            private_key: gw_keys.private.clone(),
            listen_port: (initiator == Initiator::Hub).then_some(PORT),
            addresses: vec![format!("{GW_IP}/24")],
            mtu: None,
            peers: vec![PeerConf {
                public_key: hub_keys.public.clone(),
                endpoint: (initiator == Initiator::Gateway)
                    .then(|| format!("{}:{PORT}", pair.veth.a_ip)),
                allowed_ips: vec![net],
                keepalive,
                ..PeerConf::default()
            }],
        };
        Shapes {
            hub_keys,
            gw_keys,
            hub,
            gw,
        }
    }
}

/// The guide's hub (in `pair.a`) and gateway (in `pair.b`) both run by `edgewire up`, with
/// interface names drawn from `tag`.
pub fn guide_up<'a>(
    pair: &'a Pair,
    s: &Shapes,
    tag: &str,
    offload: Offload,
) -> (Tunnel<'a>, Tunnel<'a>) {
    let (hub_if, gw_if) = (
        wg::iface_name(&format!("{tag}h")),
        wg::iface_name(&format!("{tag}g")),
    );
    let hub = Tunnel::start(
        &pair.a,
        &pair.dir,
        Impl::EdgewireUp(offload),
        &hub_if,
        &s.hub,
    );
    let gw = Tunnel::start(&pair.b, &pair.dir, Impl::EdgewireUp(offload), &gw_if, &s.gw);
    (hub, gw)
}

/// One running interface in a namespace.
pub struct Tunnel<'a> {
    pub ns: &'a Netns,
    pub iface: String,
    pub imp: Impl,
    pub conf: IfaceConf,
    /// The file handed to `edgewire up` (wg-quick format) or `wg setconf` (wg format).
    pub conf_path: PathBuf,
    pub daemon: Child,
}

impl<'a> Tunnel<'a> {
    /// Starts `imp` as `iface` in `ns` with `conf` and waits until it is configured and up
    /// (socket present, address on the link). Panics with the daemon's log otherwise.
    pub fn start(
        ns: &'a Netns,
        dir: &TempDir,
        imp: Impl,
        iface: &str,
        conf: &IfaceConf,
    ) -> Tunnel<'a> {
        let socket = wg::socket_path(iface);
        let imp = match imp {
            Impl::EdgewireUp(_) | Impl::EdgewireTun(_) if super::reference_mode() => {
                Impl::WireguardGo
            }
            other => other,
        };
        let (daemon, conf_path) = match imp {
            Impl::EdgewireUp(off) => {
                let path = dir.write(&format!("{iface}.conf"), &conf.wg_quick());
                let cmd = off.apply(ns.cmd(&[edgewire_bin(), "up"]).arg(&path));
                (cmd.spawn(), path)
            }
            Impl::EdgewireTun(off) => {
                let cmd = off.apply(ns.cmd(&[edgewire_bin(), "tun", "-f", iface]));
                (cmd.spawn(), dir.write(&format!("{iface}.wg"), &conf.wg()))
            }
            Impl::WireguardGo => {
                let cmd = ns
                    .cmd(&["wireguard-go", "-f", iface])
                    .env("LOG_LEVEL", "verbose")
                    .env("WG_PROCESS_FOREGROUND", "1");
                (cmd.spawn(), dir.write(&format!("{iface}.wg"), &conf.wg()))
            }
        };
        let mut t = Tunnel {
            ns,
            iface: iface.to_string(),
            imp,
            conf: conf.clone(),
            conf_path,
            daemon,
        };
        t.daemon.remove_on_drop(socket.clone());
        t.wait_socket(Duration::from_secs(15));
        match imp {
            Impl::EdgewireUp(_) => {
                let addr = conf
                    .addresses
                    .first()
                    .map(|a| a.split('/').next().unwrap_or(a).to_string());
                let what = format!("`edgewire up` to configure {iface} in {}", ns.name());
                let daemon = &mut t.daemon;
                wait::wait_until(&what, Duration::from_secs(15), || {
                    daemon.assert_running(&what);
                    let has_addr = match &addr {
                        Some(a) => ns.addrs(iface).contains(&format!(" {a}/")),
                        None => true,
                    };
                    has_addr && is_up(ns, iface)
                });
            }
            Impl::EdgewireTun(_) | Impl::WireguardGo => {
                configure_with_wg(ns, iface, conf, &t.conf_path)
            }
        }
        t
    }

    /// Waits for /var/run/wireguard/IFACE.sock (panics early if the daemon exits).
    pub fn wait_socket(&mut self, timeout: Duration) {
        let socket = wg::socket_path(&self.iface);
        let what = format!(
            "UAPI socket {} of `{}`",
            socket.display(),
            self.daemon.name()
        );
        let daemon = &mut self.daemon;
        wait::wait_until(&what, timeout, || {
            daemon.assert_running(&what);
            socket.exists()
        });
    }

    pub fn socket(&self) -> PathBuf {
        wg::socket_path(&self.iface)
    }

    /// `wg ARGS…` against this interface's namespace (the caller names the interface).
    pub fn wg(&self, args: &[&str]) -> Output {
        self.ns.cmd(&["wg"]).args(args).run()
    }

    pub fn dump(&self) -> Dump {
        wg::dump(self.ns, &self.iface)
    }

    pub fn latest_handshake(&self, peer: &str) -> u64 {
        wg::latest_handshake(self.ns, &self.iface, peer)
    }

    /// Waits until `wg show IFACE latest-handshakes` is non-zero for `peer`; returns it.
    pub fn wait_handshake(&mut self, peer: &str, timeout: Duration) -> u64 {
        let what = format!(
            "a handshake with {peer} on {} in {}",
            self.iface,
            self.ns.name()
        );
        let (ns, iface) = (self.ns, self.iface.clone());
        let daemon = &mut self.daemon;
        wait::wait_for(&what, timeout, || {
            daemon.assert_running(&what);
            let t = wg::latest_handshake(ns, &iface, peer);
            (t != 0).then_some(t)
        })
    }

    pub fn link_exists(&self) -> bool {
        self.ns.link_exists(&self.iface)
    }

    /// Sends `sig`, waits for the exit (panics after `timeout`, with the log).
    pub fn stop(&mut self, sig: Signal, timeout: Duration) -> ExitStatus {
        self.daemon.stop(sig, timeout)
    }
}

fn is_up(ns: &Netns, iface: &str) -> bool {
    let out = ns.run(&["ip", "link", "show", "dev", iface]);
    out.success() && (out.stdout.contains(",UP") || out.stdout.contains("<UP"))
}

/// What wg-quick does for a userspace interface, minus DNS/hooks: `wg setconf`, addresses,
/// MTU (default 1420), link up, a route per allowed IP not already covered (`ip route show
/// match`, wg-quick's own test).
pub fn configure_with_wg(ns: &Netns, iface: &str, conf: &IfaceConf, wg_path: &std::path::Path) {
    let path = wg_path.to_string_lossy().into_owned();
    ns.ok(&["wg", "setconf", iface, &path]);
    for a in &conf.addresses {
        ns.ok(&["ip", "address", "add", a, "dev", iface]);
    }
    let mtu = conf.mtu.unwrap_or(1420).to_string();
    ns.ok(&["ip", "link", "set", "dev", iface, "mtu", &mtu, "up"]);
    for p in &conf.peers {
        for cidr in &p.allowed_ips {
            let fam = if cidr.contains(':') { "-6" } else { "-4" };
            let shown = ns
                .run(&["ip", fam, "route", "show", "dev", iface, "match", cidr])
                .stdout;
            if shown.trim().is_empty() {
                ns.ok(&["ip", fam, "route", "add", cidr, "dev", iface]);
            }
        }
    }
}
