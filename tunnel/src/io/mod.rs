//! Batch-shaped I/O: the device only ever sees these traits.
//!
//! Every call moves many packets ([`Batch`]); implementations hide offloads (TUN
//! IFF_VNET_HDR/TSO, UDP GSO/GRO, recvmmsg/sendmmsg) behind the same plain data.
//! Receives block for at most a short poll interval and return `Ok(0)` on timeout, so the
//! device threads can notice shutdown without signals.

mod batch;
pub mod fake;
pub mod offload;
pub mod offload_gro;
mod poll;
#[cfg(target_os = "linux")]
pub mod tun_linux;
#[cfg(target_os = "linux")]
pub mod udp_linux;
mod waker;

pub use batch::{Batch, Entry, NO_ADDR};
pub use offload::Offload;
pub use poll::poll_readable;
#[cfg(target_os = "linux")]
pub use tun_linux::{LinuxTun, TunError};
#[cfg(target_os = "linux")]
pub use udp_linux::{LinuxUdp, LinuxUdpBinder};
pub use waker::Waker;

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

/// How long a blocking receive waits before returning `Ok(0)`.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The tunnel side: IP packets to and from the kernel (or a fake).
pub trait TunIo: Send + Sync {
    /// Appends received IP packets to `batch` (which the caller has cleared); returns how
    /// many. `Ok(0)` after [`POLL_INTERVAL`] without traffic.
    fn recv(&self, batch: &mut Batch) -> io::Result<usize>;
    /// Like [`TunIo::recv`] but never waits: `Ok(0)` when nothing is queued.
    fn try_recv(&self, batch: &mut Batch) -> io::Result<usize>;
    /// Like [`TunIo::try_recv`], but hands each packet to `f` instead of a batch, and stops
    /// reading once about `max` packets have been seen. A TUN that splits super-packets can
    /// then do it in place, without copying each segment into a batch first. The default
    /// goes through [`TunIo::try_recv`] with `scratch`.
    fn try_recv_each(
        &self,
        scratch: &mut Batch,
        max: usize,
        f: &mut dyn FnMut(&[u8]),
    ) -> io::Result<usize> {
        let _ = max;
        each_via_batch(scratch, f, |b| self.try_recv(b))
    }
    /// A descriptor that polls readable when [`TunIo::try_recv`] has something; `None` for
    /// fakes, which the device then checks every millisecond.
    fn poll_fd(&self) -> Option<RawFd> {
        None
    }
    /// Writes every packet of `batch` to the tunnel.
    fn send(&self, batch: &Batch) -> io::Result<()>;
    /// The tunnel MTU as currently configured.
    fn mtu(&self) -> usize;
    /// `false` once the underlying device is gone (the daemon should exit).
    fn is_alive(&self) -> bool {
        true
    }
}

/// The network side: WireGuard datagrams to and from peers.
/// Fills `scratch` with `recv` and hands its packets to `f`: [`TunIo::try_recv_each`] for a
/// TUN that reads into batches.
pub(crate) fn each_via_batch(
    scratch: &mut Batch,
    f: &mut dyn FnMut(&[u8]),
    recv: impl FnOnce(&mut Batch) -> io::Result<usize>,
) -> io::Result<usize> {
    scratch.clear();
    let n = recv(scratch)?;
    scratch.iter().for_each(|(p, _)| f(p));
    Ok(n)
}

pub trait UdpIo: Send + Sync {
    /// Appends received datagrams (with their source address) to `batch`.
    fn recv(&self, batch: &mut Batch) -> io::Result<usize>;
    /// Like [`UdpIo::recv`] but never waits: `Ok(0)` when nothing is queued.
    fn try_recv(&self, batch: &mut Batch) -> io::Result<usize>;
    /// See [`TunIo::poll_fd`].
    fn poll_fd(&self) -> Option<RawFd> {
        None
    }
    /// Sends every datagram of `batch` to the address stored with it.
    fn send(&self, batch: &Batch) -> io::Result<()>;
    /// The bound port (useful when bound to port 0).
    fn local_port(&self) -> u16;
    /// Changes the socket's firewall mark (SO_MARK); 0 clears it.
    fn set_fwmark(&self, _mark: u32) -> io::Result<()> {
        Ok(())
    }
}

/// Opens UDP sockets: the device rebinds when `listen_port` or `fwmark` changes.
pub trait UdpBinder: Send + Sync {
    fn bind(&self, port: u16, fwmark: u32) -> io::Result<Arc<dyn UdpIo>>;
}

/// Normalises an IPv4-mapped IPv6 address (from a dual-stack socket) to plain IPv4.
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}
