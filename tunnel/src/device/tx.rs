//! The tx stage: TUN packets (super-packets split in place) → route + encrypt → UDP batch.
//!
//! Whichever worker holds the stage's lock runs it, one batch at a time, so packets leave
//! in the order they were read (per-peer order needs nothing more). The UDP batch is sent
//! whenever it fills and once at the end: a batch never waits to be filled.

use std::time::Instant;

use super::{Device, DeviceExit, BATCH_BYTES, BATCH_PACKETS};
use crate::io::{Batch, UdpIo};
use crate::proto::TxOutcome;

pub(super) struct TxStage {
    /// Only for TUNs that cannot hand out packets in place (the in-memory fake).
    from_tun: Batch,
    to_net: Batch,
}

impl TxStage {
    pub fn new() -> Self {
        Self {
            from_tun: Batch::new(BATCH_PACKETS, BATCH_BYTES),
            to_net: Batch::new(BATCH_PACKETS, BATCH_BYTES),
        }
    }

    /// Encrypts and sends what the TUN has queued, without waiting; how many packets it read.
    ///
    /// Each packet is encrypted straight from the TUN's read buffer (super-packets are split
    /// in place there): boringtun's copy into the UDP batch is the only one in user space.
    pub fn run(&mut self, device: &Device) -> usize {
        let now = Instant::now();
        let socket = device.socket();
        let core = device.core.read();
        let Self { from_tun, to_net } = self;
        to_net.clear();
        let read = device
            .tun
            .try_recv_each(from_tun, BATCH_PACKETS, &mut |packet| {
                if core.encapsulate(now, packet, to_net) == TxOutcome::Full {
                    send_batch(&*socket, to_net);
                    to_net.clear();
                    // An empty batch that is still "full" means the packet can never fit.
                    let _ = core.encapsulate(now, packet, to_net);
                }
            });
        drop(core);
        send_batch(&*socket, to_net);
        match read {
            Ok(n) => n,
            Err(e) => {
                if !device.stopping() {
                    tracing::warn!("TUN read failed, stopping: {e}");
                    device.finish(DeviceExit::TunGone);
                }
                0
            }
        }
    }
}

pub(super) fn send_batch(socket: &dyn UdpIo, batch: &Batch) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = socket.send(batch) {
        // Unreachable peers, full buffers: WireGuard is best-effort like the network below.
        tracing::debug!("UDP send failed: {e}");
    }
}
