//! Arbitrary datagrams at the UDP port and arbitrary packets from the TUN, through the real
//! protocol core (checked views, peer lookup, boringtun): nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use edgewire_tunnel::io::Batch;
use edgewire_tunnel::key::PrivateKey;
use edgewire_tunnel::proto::Core;
use edgewire_tunnel::route::IpNet;
use edgewire_tunnel::uapi::{AllowedIpChange, DeviceUpdate, PeerUpdate};
use edgewire_tunnel::wire::{IpView, WgView};
use libfuzzer_sys::fuzz_target;

fn core() -> &'static Core {
    static CORE: OnceLock<Core> = OnceLock::new();
    CORE.get_or_init(|| {
        let mut core = Core::new();
        let peer = PrivateKey::generate().public_key();
        let mut p = PeerUpdate::new(peer);
        p.endpoint = Some("127.0.0.1:51820".parse().unwrap());
        p.allowed_ips = vec![AllowedIpChange::Add("10.8.0.0/24".parse::<IpNet>().unwrap())];
        core.apply(DeviceUpdate {
            private_key: Some(Some(PrivateKey::generate())),
            peers: vec![p],
            ..Default::default()
        })
        .unwrap();
        core
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = WgView::new_checked(data).map(|v| v.receiver_index());
    let _ = IpView::new_checked(data)
        .map(|v| (v.source(), v.destination(), v.total_len(), v.protocol()));
    let core = core();
    let now = Instant::now();
    let (mut to_tun, mut to_net) = (Batch::new(8, 16 * 1024), Batch::new(8, 16 * 1024));
    let src: SocketAddr = "198.18.0.9:40000".parse().unwrap();
    core.decapsulate(now, src, data, &mut to_tun, &mut to_net);
    core.encapsulate(now, data, &mut to_net);
});
