//! The rx pipeline: UDP batch → identify peer, decrypt → TUN batch (+ replies to UDP).
//!
//! One thread. Holds the core's read lock for one batch. Follows socket replacement
//! (`listen_port` changes) between batches.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::tx::send_batch;
use super::{Device, DeviceExit, BATCH_BYTES, BATCH_PACKETS};
use crate::io::udp_linux::{RECV_BATCH_BYTES, RECV_BATCH_ENTRIES};
use crate::io::Batch;
use crate::proto::RxOutcome;

pub(super) fn run(device: Arc<Device>) {
    // Sized for GRO: up to 16 coalesced super-datagrams split in place.
    let mut from_net = Batch::new(RECV_BATCH_ENTRIES, RECV_BATCH_BYTES);
    let mut to_tun = Batch::new(BATCH_PACKETS, BATCH_BYTES);
    let mut to_net = Batch::new(BATCH_PACKETS / 4, BATCH_BYTES / 4);
    let mut generation = device.udp_generation.load(Ordering::SeqCst);
    let mut socket = device.socket();
    while !device.stopping() {
        let current = device.udp_generation.load(Ordering::SeqCst);
        if current != generation {
            generation = current;
            socket = device.socket();
        }
        from_net.clear();
        match socket.recv(&mut from_net) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) => {
                if device.stopping() {
                    break;
                }
                // ICMP errors surface as ECONNREFUSED & co. on some kernels: not fatal.
                tracing::debug!("UDP receive failed: {e}");
                continue;
            }
        }
        let now = Instant::now();
        let core = device.core.read();
        to_tun.clear();
        to_net.clear();
        for (datagram, src) in from_net.iter() {
            if core.decapsulate(now, src, datagram, &mut to_tun, &mut to_net) == RxOutcome::Full {
                flush(&device, &*socket, &mut to_tun, &mut to_net);
                let _ = core.decapsulate(now, src, datagram, &mut to_tun, &mut to_net);
            }
        }
        drop(core);
        flush(&device, &*socket, &mut to_tun, &mut to_net);
    }
}

fn flush(device: &Device, socket: &dyn crate::io::UdpIo, to_tun: &mut Batch, to_net: &mut Batch) {
    if !to_tun.is_empty() {
        if let Err(e) = device.tun.send(to_tun) {
            if !device.tun.is_alive() {
                device.finish(DeviceExit::TunGone);
            }
            tracing::debug!("TUN write failed: {e}");
        }
    }
    send_batch(socket, to_net);
    to_tun.clear();
    to_net.clear();
}
