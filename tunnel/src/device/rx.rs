//! The rx stage: UDP batch → identify peer, decrypt → TUN batch (+ replies to UDP).
//!
//! Whichever worker holds the stage's lock runs it, one batch at a time. Follows socket
//! replacement (`listen_port` changes) between batches. A large TUN write ends with a yield
//! to whoever reads those packets ([`HANDOVER`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::tx::send_batch;
use super::{Device, DeviceExit, BATCH_BYTES, BATCH_PACKETS};
use crate::io::udp_linux::{RECV_BATCH_BYTES, RECV_BATCH_ENTRIES};
use crate::io::{Batch, UdpIo};
use crate::proto::RxOutcome;
use crate::wire::ip::PROTO_TCP;
use crate::wire::IpView;

/// A TUN write of at least this many datagrams (packets other than TCP) is followed by
/// `sched_yield`.
///
/// Delivering to the TUN wakes the packets' reader (an application's socket), and the
/// kernel tends to queue it on this very CPU (a "sync" wake-up), behind the worker. A worker
/// that went straight on with the rest of its batch (up to 1,024 datagrams) and the next
/// would fill the reader's socket buffer long before the reader ran, and the buffer drops
/// the rest: 64-byte UDP on 2 vCPUs, the reader (iperf3, default 208 KiB buffer) read 69-76 k
/// datagrams/s of about 200 k delivered. Yielding after each write of up to `BATCH_PACKETS`
/// (NAPI's budget idea) lets it read 136-145 k, with TCP as before (docs/PERFORMANCE.md,
/// "Handing over to the reader"). With nobody else runnable the call returns at once; a
/// ping's packets never reach the threshold. It only reaches a reader in the worker's own
/// scheduling group (session or cgroup): one in another group gains nothing, loses nothing.
const HANDOVER: usize = 32;

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
    if to_tun.len() >= HANDOVER && datagrams(to_tun) >= HANDOVER {
        std::thread::yield_now();
    }
    to_tun.clear();
    to_net.clear();
}

/// Packets in `batch` that a burst can lose: everything but TCP, whose window already keeps
/// a burst within what the reader's buffer holds. TCP gains nothing from a hand-over, so it
/// keeps the scheduling it was measured with (one of two A/Bs that yielded for TCP too had
/// four streams 5 % slower, the other no difference).
fn datagrams(batch: &Batch) -> usize {
    batch
        .iter()
        .filter(|(packet, _)| {
            IpView::new_checked(*packet).map_or(true, |ip| ip.protocol() != PROTO_TCP)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_the_packets_other_than_tcp() {
        let to = "10.0.0.1:1".parse().unwrap();
        let v4 = |proto: u8| {
            let mut p = [0u8; 28];
            p[0] = 0x45;
            p[9] = proto;
            p
        };
        let v6 = |next: u8| {
            let mut p = [0u8; 48];
            p[0] = 0x60;
            p[6] = next;
            p
        };
        let mut batch = Batch::new(16, 4096);
        for packet in [
            &v4(PROTO_TCP)[..],
            &v4(17),
            &v4(1),
            &v6(PROTO_TCP),
            &v6(17),
            &[0x45; 3],
        ] {
            assert!(batch.push(packet, to));
        }
        // UDP and ICMP over IPv4, UDP over IPv6, and what is not even an IP header.
        assert_eq!(datagrams(&batch), 4);
    }
}
