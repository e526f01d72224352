//! The rx stage: UDP batch → identify peer, decrypt → TUN batch (+ replies to UDP).
//!
//! Whichever worker holds the stage's lock runs it, one batch at a time. Follows socket
//! replacement (`listen_port` changes) between batches.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::tx::send_batch;
use super::{Device, DeviceExit, BATCH_BYTES, BATCH_PACKETS};
use crate::io::udp_linux::{RECV_BATCH_BYTES, RECV_BATCH_ENTRIES};
use crate::io::{Batch, UdpIo};
use crate::proto::RxOutcome;

pub(super) struct RxStage {
    from_net: Batch,
    to_tun: Batch,
    to_net: Batch,
    generation: u64,
    socket: Arc<dyn UdpIo>,
}

impl RxStage {
    /// For the device's first socket (generation 0).
    pub fn new(socket: Arc<dyn UdpIo>) -> Self {
        Self {
            // Sized for GRO: up to 16 coalesced super-datagrams split in place.
            from_net: Batch::new(RECV_BATCH_ENTRIES, RECV_BATCH_BYTES),
            to_tun: Batch::new(BATCH_PACKETS, BATCH_BYTES),
            to_net: Batch::new(BATCH_PACKETS / 4, BATCH_BYTES / 4),
            generation: 0,
            socket,
        }
    }

    /// The socket to poll: the current one after a `listen_port` change.
    pub fn socket(&mut self, device: &Device) -> &Arc<dyn UdpIo> {
        let current = device.udp_generation.load(Ordering::SeqCst);
        if current != self.generation {
            self.generation = current;
            self.socket = device.socket();
        }
        &self.socket
    }

    /// Decrypts and delivers what the socket has queued, without waiting; how many datagrams
    /// it read.
    pub fn run(&mut self, device: &Device) -> usize {
        let socket = self.socket(device).clone();
        self.from_net.clear();
        let n = match socket.try_recv(&mut self.from_net) {
            Ok(0) => return 0,
            Ok(n) => n,
            Err(e) => {
                // ICMP errors surface as ECONNREFUSED & co. on some kernels: not fatal.
                tracing::debug!("UDP receive failed: {e}");
                return 0;
            }
        };
        let now = Instant::now();
        let core = device.core.read();
        self.to_tun.clear();
        self.to_net.clear();
        for (datagram, src) in self.from_net.iter() {
            if core.decapsulate(now, src, datagram, &mut self.to_tun, &mut self.to_net)
                == RxOutcome::Full
            {
                flush(device, &*socket, &mut self.to_tun, &mut self.to_net);
                let _ = core.decapsulate(now, src, datagram, &mut self.to_tun, &mut self.to_net);
            }
        }
        drop(core);
        flush(device, &*socket, &mut self.to_tun, &mut self.to_net);
        n
    }
}

fn flush(device: &Device, socket: &dyn UdpIo, to_tun: &mut Batch, to_net: &mut Batch) {
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
