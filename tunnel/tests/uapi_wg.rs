//! The real `wg` tool (wireguard-tools) against edgewire's UAPI server, in the directory
//! `wg` looks in (/var/run/wireguard), with an in-memory device. Needs root; fails instead
//! of skipping when CI=true.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use edgewire_tunnel::key::{PresharedKey, PrivateKey};
use edgewire_tunnel::uapi::model::SetError;
use edgewire_tunnel::uapi::{
    AllowedIpChange, DeviceSnapshot, DeviceUpdate, MemoryDevice, PeerSnapshot, PeerUpdate,
    UapiDevice, UapiServer, DEFAULT_SOCKET_DIR,
};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ewuapi-wg-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn wg_available() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let found = Command::new("wg")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let root = nix::unistd::geteuid().is_root();
    if found && root {
        return true;
    }
    let why = if found {
        "it needs root to use /var/run/wireguard"
    } else {
        "`wg` (wireguard-tools) is not installed"
    };
    assert!(!ci, "CI=true but {why}");
    eprintln!("skipping: {why}");
    false
}

fn wg(args: &[&str]) -> std::process::Output {
    Command::new("wg")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("wg {args:?}: {e}"))
}

fn wg_ok(args: &[&str]) -> String {
    let out = wg(args);
    assert!(
        out.status.success(),
        "wg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("wg prints ASCII")
}

#[test]
fn uapi_real_wg_tool_round_trips() {
    if !wg_available() {
        return;
    }
    let iface = format!("ewu{}", std::process::id());
    let own = PrivateKey([0x50; 32]);
    let own_clamped = PrivateKey({
        let mut b = [0x50; 32];
        b[0] &= 248;
        b[31] = (b[31] & 127) | 64;
        b
    });
    let peer_a = PrivateKey([0x61; 32]).public_key();
    let peer_b = PrivateKey([0x62; 32]).public_key();
    let psk = PresharedKey([0x70; 32]);
    let endpoint_a: SocketAddr = "[fd00::1]:51820".parse().expect("addr");
    let device = Arc::new(MemoryDevice::new(DeviceSnapshot {
        private_key: Some(own_clamped),
        listen_port: 51820,
        fwmark: 0,
        peers: vec![PeerSnapshot {
            public_key: peer_a,
            preshared_key: None,
            endpoint: Some(endpoint_a),
            persistent_keepalive: 25,
            last_handshake: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
            rx_bytes: 200,
            tx_bytes: 100,
            allowed_ips: vec![
                "10.8.0.0/24".parse().expect("net"),
                "fd00::/64".parse().expect("net"),
            ],
            protocol_version: 1,
        }],
    }));
    let server =
        UapiServer::bind(Path::new(DEFAULT_SOCKET_DIR), &iface, device.clone()).expect("bind");
    let conf_dir = TempDir::new();

    // wg show dump: UNIX handshake time, counters, keepalive.
    let dump = wg_ok(&["show", &iface, "dump"]);
    assert_eq!(
        dump,
        format!(
            "{}\t{}\t51820\toff\n{}\t(none)\t[fd00::1]:51820\t10.8.0.0/24,fd00::/64\t1700000000\t200\t100\t25\n",
            own_clamped.to_base64(),
            own.public_key().to_base64(),
            peer_a.to_base64()
        )
    );
    assert!(wg_ok(&["show", "interfaces"])
        .split_whitespace()
        .any(|n| n == iface));

    // wg set: a new peer with everything `wg set` can say.
    let psk_file = conf_dir.0.join("psk");
    fs::write(&psk_file, format!("{}\n", psk.to_base64())).expect("psk file");
    wg_ok(&[
        "set",
        &iface,
        "fwmark",
        "0x20",
        "peer",
        &peer_b.to_base64(),
        "preshared-key",
        psk_file.to_str().expect("utf-8"),
        "endpoint",
        "198.18.0.9:51820",
        "persistent-keepalive",
        "21",
        "allowed-ips",
        "10.9.0.0/24,fd01::/64",
    ]);
    let mut expected_peer = PeerUpdate::new(peer_b);
    expected_peer.preshared_key = Some(Some(psk));
    expected_peer.endpoint = Some("198.18.0.9:51820".parse().expect("addr"));
    expected_peer.persistent_keepalive = Some(21);
    expected_peer.replace_allowed_ips = true;
    expected_peer.allowed_ips = vec![
        AllowedIpChange::Add("10.9.0.0/24".parse().expect("net")),
        AllowedIpChange::Add("fd01::/64".parse().expect("net")),
    ];
    assert_eq!(
        device.updates().last(),
        Some(&DeviceUpdate {
            fwmark: Some(0x20),
            peers: vec![expected_peer],
            ..DeviceUpdate::default()
        })
    );

    // wg showconf → wg setconf → wg showconf is a fixed point.
    let conf = wg_ok(&["showconf", &iface]);
    let expected_conf = format!(
        "[Interface]\nListenPort = 51820\nFwMark = 0x20\nPrivateKey = {}\n\n\
         [Peer]\nPublicKey = {}\nAllowedIPs = 10.8.0.0/24, fd00::/64\nEndpoint = [fd00::1]:51820\nPersistentKeepalive = 25\n\n\
         [Peer]\nPublicKey = {}\nPresharedKey = {}\nAllowedIPs = 10.9.0.0/24, fd01::/64\nEndpoint = 198.18.0.9:51820\nPersistentKeepalive = 21\n",
        own_clamped.to_base64(),
        peer_a.to_base64(),
        peer_b.to_base64(),
        psk.to_base64()
    );
    assert_eq!(conf, expected_conf);
    let conf_file = conf_dir.0.join("ew.conf");
    fs::write(&conf_file, &conf).expect("conf");
    wg_ok(&["setconf", &iface, conf_file.to_str().expect("utf-8")]);
    assert_eq!(wg_ok(&["showconf", &iface]), conf);

    // wg syncconf with peer B dropped from the file removes it and keeps A in place
    // (setconf above replaced all peers, so mark A's counters to see it survive).
    let mut marked = device.get();
    marked
        .peers
        .iter_mut()
        .filter(|p| p.public_key == peer_a)
        .for_each(|p| p.rx_bytes = 200);
    device.replace_state(marked);
    let without_b = conf
        .split("\n\n[Peer]\n")
        .take(2)
        .collect::<Vec<_>>()
        .join("\n\n[Peer]\n")
        + "\n";
    fs::write(&conf_file, &without_b).expect("conf");
    wg_ok(&["syncconf", &iface, conf_file.to_str().expect("utf-8")]);
    let state = device.get();
    assert_eq!(state.peers.len(), 1);
    assert_eq!(state.peers[0].public_key, peer_a);
    assert_eq!(
        state.peers[0].rx_bytes, 200,
        "peer A was updated in place, not recreated"
    );

    // A refusal reaches the user with the right errno text.
    device.refuse_next_set(SetError::port_in_use("port taken"));
    let out = wg(&["set", &iface, "listen-port", "51821"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Address already in use"), "{stderr}");

    // Removing the socket is how `wg-quick down` stops a userspace interface.
    fs::remove_file(server.path()).expect("unlink");
    assert!(!server.socket_present());
    server.shutdown();
    assert!(!Path::new(DEFAULT_SOCKET_DIR)
        .join(format!("{iface}.sock"))
        .exists());
}
