//! The tx pipeline: TUN batch → route + encrypt → UDP batch.
//!
//! One thread. Holds the core's read lock for one batch; sends the UDP batch whenever it
//! fills and once at the end, never waiting for a batch to fill (latency first).

use std::sync::Arc;
use std::time::Instant;

use super::{Device, DeviceExit, BATCH_BYTES, BATCH_PACKETS};
use crate::io::Batch;
use crate::proto::TxOutcome;

pub(super) fn run(device: Arc<Device>) {
    let mut from_tun = Batch::new(BATCH_PACKETS, BATCH_BYTES);
    let mut to_net = Batch::new(BATCH_PACKETS, BATCH_BYTES);
    while !device.stopping() {
        from_tun.clear();
        match device.tun.recv(&mut from_tun) {
            Ok(0) => {
                if !device.tun.is_alive() {
                    device.finish(DeviceExit::TunGone);
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                if device.stopping() {
                    break;
                }
                tracing::warn!("TUN read failed, stopping: {e}");
                device.finish(DeviceExit::TunGone);
                break;
            }
        }
        let now = Instant::now();
        let socket = device.socket();
        let core = device.core.read();
        to_net.clear();
        for i in 0..from_tun.len() {
            let packet = from_tun.packet(i);
            if core.encapsulate(now, packet, &mut to_net) == TxOutcome::Full {
                send_batch(&*socket, &to_net);
                to_net.clear();
                // An empty batch that is still "full" means the packet can never fit.
                let _ = core.encapsulate(now, packet, &mut to_net);
            }
        }
        drop(core);
        send_batch(&*socket, &to_net);
    }
}

pub(super) fn send_batch(socket: &dyn crate::io::UdpIo, batch: &Batch) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = socket.send(batch) {
        // Unreachable peers, full buffers: WireGuard is best-effort like the network below.
        tracing::debug!("UDP send failed: {e}");
    }
}
