//! The rx stage: UDP batch → identify peer, decrypt → TUN batch (+ replies to UDP).
//!
//! Whichever worker holds the stage's lock runs it, one batch at a time. Follows socket
//! replacement (`listen_port` changes) between batches.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::tx::send_batch;
use super::{Device, DeviceExit, BATCH_BYTES, BATCH_PACKETS};
use crate::io::udp_linux::RECV_BATCH_BYTES;
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
            // At most `BATCH_PACKETS` datagrams per run: two GRO super-datagrams split in
            // place, or 64 plain ones (the arena has room for 64 jumbo-sized slots). A run
            // is what the TUN's reader gets in one go before it has a chance to read
            // (`worker.rs`, "hand over"), so it must fit a default socket buffer.
            from_net: Batch::new(BATCH_PACKETS, RECV_BATCH_BYTES),
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::io::udp_linux::LinuxUdp;
    use crate::io::Offload;
    use crate::netlink::testns::in_netns;

    /// The stage's receive batch is the budget of one run: a queue of 300 small datagrams
    /// (GSO-sent, so GRO coalesces them) takes several runs of at most `BATCH_PACKETS`, and
    /// arrives whole and in order.
    #[test]
    fn a_run_reads_at_most_one_budget_and_nothing_is_lost() {
        in_netns("rx-budget", |_| {
            for mode in [Offload::Auto, Offload::Off] {
                let a = LinuxUdp::bind(0, 0, mode).unwrap();
                let b: Arc<dyn UdpIo> = Arc::new(LinuxUdp::bind(0, 0, mode).unwrap());
                let to: SocketAddr = format!("127.0.0.1:{}", b.local_port()).parse().unwrap();
                let mut out = Batch::new(100, 1 << 16);
                for chunk in 0..3u16 {
                    out.clear();
                    for i in 0..100u16 {
                        assert!(out.push(&(chunk * 100 + i).to_be_bytes().repeat(32), to));
                    }
                    a.send(&out).unwrap();
                }
                let mut stage = RxStage::new(b.clone());
                let (mut got, mut runs) = (Vec::new(), Vec::new());
                let t = Instant::now();
                while got.len() < 300 && t.elapsed() < Duration::from_secs(3) {
                    stage.from_net.clear();
                    let n = b.try_recv(&mut stage.from_net).unwrap();
                    if n > 0 {
                        runs.push(n);
                    }
                    got.extend(stage.from_net.iter().map(|(p, _)| [p[0], p[1]]));
                }
                let want: Vec<[u8; 2]> = (0..300u16).map(u16::to_be_bytes).collect();
                assert!(
                    got == want,
                    "{mode:?}: {} datagrams, runs {runs:?}",
                    got.len()
                );
                assert!(
                    runs.iter().all(|&n| n <= BATCH_PACKETS) && runs.len() >= 3,
                    "{mode:?}: runs {runs:?}"
                );
            }
        });
    }
}
