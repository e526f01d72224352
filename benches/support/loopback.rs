//! Two cores in one process joined by real UDP sockets on 127.0.0.1, no TUN: a sender thread
//! encrypts with core A and sends, a receiver thread receives and decrypts with core B.
//! Both ends speak through edgewire's `io::UdpIo` trait, over one of:
//! - [`Transport::Plain`]: a std `UdpSocket`, one `send_to`/`recv_from` per packet (the
//!   classic userspace WireGuard loop, boringtun-cli's shape);
//! - [`Transport::Batched`]: `io::LinuxUdp`, `sendmmsg`/`recvmmsg` batches of 64, with UDP
//!   GSO/GRO when the offload switch allows.
//!
//! Flow control: the sender keeps at most a window of packets in flight, below the socket
//! receive buffer, so loopback never drops and every packet is counted.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use edgewire_tunnel::io::offload::Offload;
use edgewire_tunnel::io::udp_linux::{RECV_BATCH_BYTES, RECV_BATCH_ENTRIES};
use edgewire_tunnel::io::{canonical_addr, Batch, LinuxUdp, UdpIo};
use edgewire_tunnel::proto::{Core, RxOutcome};

use super::{batch, established_pair, ipv4, A_IP, B_IP};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    Batched(Offload),
}

/// A std socket behind the `UdpIo` trait: one syscall per datagram.
struct PlainUdp(UdpSocket);

impl UdpIo for PlainUdp {
    fn try_recv(&self, batch: &mut Batch) -> io::Result<usize> {
        self.0.set_nonblocking(true)?;
        let got = self.recv(batch);
        self.0.set_nonblocking(false)?;
        got
    }

    fn recv(&self, batch: &mut Batch) -> io::Result<usize> {
        let Some(room) = batch.spare() else {
            return Ok(0);
        };
        match self.0.recv_from(room) {
            Ok((n, src)) => {
                batch.commit(n, canonical_addr(src));
                Ok(1)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    fn send(&self, batch: &Batch) -> io::Result<()> {
        for (d, to) in batch.iter() {
            self.0.send_to(d, to)?;
        }
        Ok(())
    }

    fn local_port(&self) -> u16 {
        self.0.local_addr().map_or(0, |a| a.port())
    }
}

fn open(transport: Transport) -> io::Result<(Arc<dyn UdpIo>, u64)> {
    Ok(match transport {
        Transport::Plain => {
            let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            // 48 × ~2.3 KiB of kernel truesize stays below the default 208 KiB buffer.
            (Arc::new(PlainUdp(s)), 48)
        }
        // 7 MiB buffers (forced as root): 512 full-size datagrams in flight fit easily.
        Transport::Batched(offload) => (Arc::new(LinuxUdp::bind(0, 0, offload)?), 512),
    })
}

/// The running pair; `now` is read once per batch on both sides, as the device does.
pub struct LoopbackPair {
    cmd: Option<mpsc::Sender<u64>>,
    done: mpsc::Receiver<()>,
    target: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl LoopbackPair {
    /// Binds two sockets, handshakes in memory, and starts both threads.
    pub fn start(packet_len: usize, transport: Transport) -> io::Result<Self> {
        let (udp_a, window) = open(transport)?;
        let (udp_b, _) = open(transport)?;
        let local = |port| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        let (a_addr, b_addr) = (local(udp_a.local_port()), local(udp_b.local_port()));
        let (a, b) = established_pair(a_addr, b_addr);
        let (cmd_tx, cmd_rx) = mpsc::channel::<u64>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let target = Arc::new(AtomicU64::new(u64::MAX));
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let packet = ipv4(A_IP, B_IP, packet_len);

        let sender = {
            let received = received.clone();
            std::thread::Builder::new()
                .name("bench-tx".into())
                .spawn(move || send_loop(&a, &*udp_a, window, &packet, &cmd_rx, &received))?
        };
        let receiver = {
            let (received, target, stop) = (received.clone(), target.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-rx".into())
                .spawn(move || receive_loop(&b, &*udp_b, &received, &target, &stop, &done_tx))?
        };
        Ok(Self {
            cmd: Some(cmd_tx),
            done: done_rx,
            target,
            received,
            stop,
            threads: vec![sender, receiver],
        })
    }

    /// Sends `n` packets through the pair; returns the time until B decrypted the last one.
    pub fn run(&self, n: u64) -> Duration {
        let start_count = self.received.load(Ordering::Acquire);
        self.target.store(start_count + n, Ordering::Release);
        let t0 = Instant::now();
        if let Some(cmd) = &self.cmd {
            if cmd.send(n).is_err() {
                panic!("loopback pair: the sender thread is gone");
            }
        }
        if self.done.recv_timeout(Duration::from_secs(30)).is_err() {
            panic!(
                "loopback pair: only {} of {n} packets arrived within 30 s (datagrams lost?)",
                self.received.load(Ordering::Acquire) - start_count
            );
        }
        t0.elapsed()
    }
}

impl Drop for LoopbackPair {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cmd = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn send_loop(
    a: &Core,
    udp: &dyn UdpIo,
    window: u64,
    packet: &[u8],
    cmd: &mpsc::Receiver<u64>,
    received: &AtomicU64,
) {
    let mut out = batch();
    let mut sent = received.load(Ordering::Acquire);
    while let Ok(n) = cmd.recv() {
        let mut left = n;
        while left > 0 {
            let mut room = window - (sent - received.load(Ordering::Acquire));
            while room == 0 {
                std::thread::yield_now();
                room = window - (sent - received.load(Ordering::Acquire));
            }
            let k = left.min(room).min(out.max_entries() as u64);
            let now = Instant::now();
            out.clear();
            for _ in 0..k {
                a.encapsulate(now, packet, &mut out);
            }
            if let Err(e) = udp.send(&out) {
                panic!("loopback pair: send: {e}");
            }
            sent += k;
            left -= k;
        }
    }
}

fn receive_loop(
    b: &Core,
    udp: &dyn UdpIo,
    received: &AtomicU64,
    target: &AtomicU64,
    stop: &AtomicBool,
    done: &mpsc::Sender<()>,
) {
    let mut from_net = Batch::new(RECV_BATCH_ENTRIES, RECV_BATCH_BYTES);
    let (mut tun, mut net) = (batch(), batch());
    let mut count = 0u64;
    while !stop.load(Ordering::Acquire) {
        from_net.clear();
        match udp.recv(&mut from_net) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) => panic!("loopback pair: receive: {e}"),
        }
        let now = Instant::now();
        for (d, src) in from_net.iter() {
            tun.clear();
            net.clear();
            if b.decapsulate(now, src, d, &mut tun, &mut net) == RxOutcome::Delivered {
                count += 1;
            }
        }
        received.store(count, Ordering::Release);
        if count >= target.load(Ordering::Acquire) {
            target.store(u64::MAX, Ordering::Release);
            let _ = done.send(());
        }
    }
}
