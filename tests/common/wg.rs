//! WireGuard-side helpers: keys via `wg`, configs in both file formats, interface names,
//! `wg show IFACE dump` parsing. Always name the interface: `wg show` without one would list
//! every test's socket in the shared /var/run/wireguard.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::cmd::Cmd;
use super::netns::Netns;
use super::{base36, next_id};

pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// A unique interface name: `ew` + tag (≤ 3 chars) + PID and counter in base 36 (≤ 15 bytes).
pub fn iface_name(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(3)
        .collect();
    let name = format!(
        "ew{tag}{}{}",
        base36(u64::from(std::process::id())),
        base36(u64::from(next_id()))
    );
    assert!(
        name.len() <= 15,
        "interface name {name} longer than 15 bytes"
    );
    name
}

pub fn socket_path(iface: &str) -> PathBuf {
    PathBuf::from(SOCKET_DIR).join(format!("{iface}.sock"))
}

#[derive(Clone, Debug)]
pub struct KeyPair {
    pub private: String,
    pub public: String,
}

/// `wg genkey` + `wg pubkey`.
pub fn genkey() -> KeyPair {
    let private = Cmd::argv(&["wg", "genkey"]).ok().trim().to_string();
    let public = pubkey(&private);
    KeyPair { private, public }
}

pub fn pubkey(private: &str) -> String {
    Cmd::argv(&["wg", "pubkey"])
        .stdin(format!("{private}\n"))
        .ok()
        .trim()
        .to_string()
}

pub fn genpsk() -> String {
    Cmd::argv(&["wg", "genpsk"]).ok().trim().to_string()
}

#[derive(Clone, Debug, Default)]
pub struct PeerConf {
    pub public_key: String,
    pub preshared_key: Option<String>,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    pub keepalive: Option<u16>,
}

#[derive(Clone, Debug, Default)]
pub struct IfaceConf {
    pub private_key: String,
    pub listen_port: Option<u16>,
    /// wg-quick only (`Address = …`); the wg(8) form leaves it out.
    pub addresses: Vec<String>,
    pub mtu: Option<u16>,
    pub peers: Vec<PeerConf>,
}

impl IfaceConf {
    /// wg-quick format, written the way the guide writes it (`PersistentKeepAlive`).
    pub fn wg_quick(&self) -> String {
        self.render(true)
    }

    /// wg(8) format for `wg setconf` / `wg syncconf` (no Address/MTU).
    pub fn wg(&self) -> String {
        self.render(false)
    }

    fn render(&self, quick: bool) -> String {
        let mut s = String::from("[Interface]\n");
        s.push_str(&format!("PrivateKey = {}\n", self.private_key));
        if let Some(p) = self.listen_port {
            s.push_str(&format!("ListenPort = {p}\n"));
        }
        if quick {
            if !self.addresses.is_empty() {
                s.push_str(&format!("Address = {}\n", self.addresses.join(", ")));
            }
            if let Some(m) = self.mtu {
                s.push_str(&format!("MTU = {m}\n"));
            }
        }
        for p in &self.peers {
            s.push_str("\n[Peer]\n");
            s.push_str(&format!("PublicKey = {}\n", p.public_key));
            if let Some(k) = &p.preshared_key {
                s.push_str(&format!("PresharedKey = {k}\n"));
            }
            if !p.allowed_ips.is_empty() {
                s.push_str(&format!("AllowedIPs = {}\n", p.allowed_ips.join(", ")));
            }
            if let Some(e) = &p.endpoint {
                s.push_str(&format!("Endpoint = {e}\n"));
            }
            if let Some(k) = p.keepalive {
                let key = if quick {
                    "PersistentKeepAlive"
                } else {
                    "PersistentKeepalive"
                };
                s.push_str(&format!("{key} = {k}\n"));
            }
        }
        s
    }
}

/// The `[Interface]` line of `wg show IFACE dump`.
#[derive(Clone, Debug)]
pub struct DumpIface {
    pub private_key: String,
    pub public_key: String,
    pub listen_port: u16,
    pub fwmark: String,
}

/// One peer line of `wg show IFACE dump`.
#[derive(Clone, Debug)]
pub struct DumpPeer {
    pub public_key: String,
    pub preshared_key: String,
    pub endpoint: String,
    pub allowed_ips: String,
    pub latest_handshake: u64,
    pub rx: u64,
    pub tx: u64,
    pub keepalive: String,
}

#[derive(Clone, Debug)]
pub struct Dump {
    pub iface: DumpIface,
    pub peers: Vec<DumpPeer>,
}

impl Dump {
    pub fn parse(text: &str) -> Result<Dump, String> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let first = lines.next().ok_or("empty dump")?;
        let f: Vec<&str> = first.split('\t').collect();
        if f.len() != 4 {
            return Err(format!(
                "interface line has {} fields, want 4: {first:?}",
                f.len()
            ));
        }
        let iface = DumpIface {
            private_key: f[0].into(),
            public_key: f[1].into(),
            listen_port: f[2]
                .parse()
                .map_err(|e| format!("listen port {:?}: {e}", f[2]))?,
            fwmark: f[3].into(),
        };
        let mut peers = Vec::new();
        for l in lines {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() != 8 {
                return Err(format!("peer line has {} fields, want 8: {l:?}", f.len()));
            }
            let num = |i: usize| -> Result<u64, String> {
                f[i].parse()
                    .map_err(|e| format!("field {i} {:?}: {e}", f[i]))
            };
            peers.push(DumpPeer {
                public_key: f[0].into(),
                preshared_key: f[1].into(),
                endpoint: f[2].into(),
                allowed_ips: f[3].into(),
                latest_handshake: num(4)?,
                rx: num(5)?,
                tx: num(6)?,
                keepalive: f[7].into(),
            });
        }
        Ok(Dump { iface, peers })
    }

    pub fn peer(&self, public_key: &str) -> Option<&DumpPeer> {
        self.peers.iter().find(|p| p.public_key == public_key)
    }
}

/// `wg show IFACE dump` inside `ns`, parsed; `None` if `wg` fails (no such interface yet).
pub fn try_dump(ns: &Netns, iface: &str) -> Option<Dump> {
    let out = ns
        .cmd(&["wg", "show", iface, "dump"])
        .timeout(Duration::from_secs(10))
        .run();
    if !out.success() {
        return None;
    }
    match Dump::parse(&out.stdout) {
        Ok(d) => Some(d),
        Err(e) => panic!("parsing `wg show {iface} dump`: {e}\n{}", out.stdout),
    }
}

pub fn dump(ns: &Netns, iface: &str) -> Dump {
    let out = ns.cmd(&["wg", "show", iface, "dump"]).run().check();
    Dump::parse(&out.stdout)
        .unwrap_or_else(|e| panic!("parsing `wg show {iface} dump`: {e}\n{}", out.stdout))
}

/// `wg show IFACE latest-handshakes` for one peer (0 = never).
pub fn latest_handshake(ns: &Netns, iface: &str, peer: &str) -> u64 {
    let out = ns.cmd(&["wg", "show", iface, "latest-handshakes"]).run();
    if !out.success() {
        return 0;
    }
    out.stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .find(|(k, _)| *k == peer)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
