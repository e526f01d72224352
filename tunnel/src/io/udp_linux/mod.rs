//! Linux UDP for WireGuard datagrams: one dual-stack socket (IPv6 with V6ONLY off; IPv4
//! only when IPv6 is unavailable), `recvmmsg`/`sendmmsg` batches, UDP GSO (`UDP_SEGMENT`)
//! on send and UDP GRO (`UDP_GRO`) on receive, 7 MiB socket buffers (the FORCE variants as
//! root), `SO_MARK` for the fwmark. Features are probed when the socket is opened; what is
//! missing is logged once and its fallback used; [`Offload::Off`] forces the fallbacks.
//!
//! Stages, threads, locks:
//! - `recv` (the device's UDP reader thread): one `recvmmsg` (`MSG_WAITFORONE`, the socket's
//!   `SO_RCVTIMEO` = [`POLL_INTERVAL`]) straight into up to 64 slots of the batch arena →
//!   per message the source address is normalised ([`canonical_addr`]) and a GRO
//!   super-datagram becomes one entry per segment pointing into its slot (no copy).
//!   Lock: `rx` (the reusable mmsghdr/iovec/address/cmsg arrays).
//! - `send` (the device's UDP writer): consecutive entries with the same destination and
//!   size (the last of a run may be shorter) become one GSO message whose iovecs point at
//!   the entries in the arena (no copy, entries need not be contiguous) → one `sendmmsg`
//!   for the whole batch, resumed after partial sends; a failing message is skipped, not
//!   the batch. Lock: `tx`.
//!
//! Why not quinn-udp (0.6.3), the preferred crate: measured side by side (release, private
//! namespace, loopback, 128 datagrams per batch, best of 3 × 1 s, datagrams/s sent):
//!
//! | case               | here, GSO | quinn-udp, GSO | here, no GSO | quinn-udp, no GSO |
//! |--------------------|-----------|----------------|--------------|-------------------|
//! | 1 peer, 1452 B     | 3.89 M    | 3.63 M         | 0.97 M       | 0.79 M            |
//! | 1 peer, 64 B       | 4.43 M    | 4.78 M         | 1.38 M       | 1.03 M            |
//! | 64 peers, 1452 B   | 0.96 M    | 0.86 M         | 1.02 M       | 0.83 M            |
//! | 64 peers, 64 B     | 1.02 M    | 0.90 M         | 1.49 M       | 1.29 M            |
//!
//! Receive with GRO was the same (2.4–4.8 M/s both, noisy). quinn-udp sends one `sendmsg`
//! per `Transmit` — one syscall per datagram without GSO or towards many peers, where
//! `sendmmsg` here takes the whole batch (15–35 % more datagrams/s above; on loopback the
//! per-datagram delivery cost dominates and hides part of the saving); a GSO `Transmit` needs its segments contiguous in one slice,
//! which our arena does not guarantee (head/tail room), while iovecs per entry do; its
//! `recvmmsg` passes no `MSG_WAITFORONE`, so with a blocking socket it waits to fill the
//! batch (latency) and otherwise needs a `poll` per batch; it needs Rust 1.88 (the
//! workspace says 1.85). Equal within noise with GSO to one peer, ahead elsewhere, and a
//! better fit: written here.
#![allow(unsafe_code)]

mod sys;

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};

use super::batch::Entry;
use super::{Batch, Offload, UdpBinder, UdpIo, POLL_INTERVAL};
use sys::{
    cmsg_space, decode_addr, encode_addr, getsockopt_int, read_gro_size, setsockopt_int,
    write_cmsg_u16, MsgBufs, RawAddr,
};

/// Messages per `recvmmsg`/`sendmmsg` call.
pub const MAX_MMSG: usize = 64;
/// Most datagrams the kernel coalesces (GRO) or segments (GSO) per message.
pub const MAX_SEGMENTS: usize = 64;
/// Bytes a receive slot needs when GRO is on (one coalesced super-datagram).
pub const GRO_SLOT: usize = 65535;
/// A receive batch that never truncates GRO or runs out of entries:
/// `Batch::new(RECV_BATCH_ENTRIES, RECV_BATCH_BYTES)`.
pub const RECV_BATCH_ENTRIES: usize = 16 * MAX_SEGMENTS;
pub const RECV_BATCH_BYTES: usize = 16 * GRO_SLOT;
const GSO_MAX_BYTES: usize = 65507;
const SOCKET_BUFFER: usize = 7 << 20;
/// Smallest receive slot without GRO: a jumbo-frame datagram.
const PLAIN_SLOT: usize = 9216;

/// Counters since the socket was opened (relaxed; for logs and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    pub send_calls: u64,
    /// Messages handed to the kernel (a GSO message counts once).
    pub messages_out: u64,
    pub datagrams_out: u64,
    pub recv_calls: u64,
    /// Messages received (a GRO super-datagram counts once).
    pub messages_in: u64,
    pub datagrams_in: u64,
    /// Received datagrams lost: larger than the receive slot (truncated).
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    send_calls: AtomicU64,
    messages_out: AtomicU64,
    datagrams_out: AtomicU64,
    recv_calls: AtomicU64,
    messages_in: AtomicU64,
    datagrams_in: AtomicU64,
    dropped: AtomicU64,
}

/// A GRO super-datagram received into [`RxState::scratch`], not yet all delivered.
struct PendingRx {
    len: usize,
    stride: usize,
    addr: SocketAddr,
    off: usize,
}

struct RxState {
    bufs: MsgBufs,
    /// Only for batches too small for one receive slot.
    scratch: Box<[u8]>,
    pending: Option<PendingRx>,
}

pub struct LinuxUdp {
    sock: Socket,
    dual_stack: bool,
    port: u16,
    gso: AtomicBool,
    gro: bool,
    rx: Mutex<RxState>,
    tx: Mutex<MsgBufs>,
    counters: Counters,
}

static NO_GSO: Once = Once::new();
static NO_GRO: Once = Once::new();
static NO_V6: Once = Once::new();
static GSO_EIO: Once = Once::new();
static TRUNCATED: Once = Once::new();

fn open_socket(port: u16, allow_v6: bool) -> io::Result<(Socket, bool)> {
    let v6 = if !allow_v6 {
        Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
    } else {
        Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
    };
    let v6 = v6.and_then(|s| {
        s.set_only_v6(false)?;
        s.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port).into())?;
        Ok(s)
    });
    match v6 {
        Ok(s) => Ok((s, true)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
            ) =>
        {
            NO_V6.call_once(|| {
                tracing::warn!("UDP: IPv6 unavailable ({e}); listening on IPv4 only")
            });
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port).into())?;
            Ok((s, false))
        }
        Err(e) => Err(e),
    }
}

impl LinuxUdp {
    /// Binds `port` (0 = any) on all addresses, IPv4 and IPv6; `fwmark` 0 = none.
    pub fn bind(port: u16, fwmark: u32, offload: Offload) -> io::Result<LinuxUdp> {
        Self::bind_with(port, fwmark, offload, true)
    }

    fn bind_with(port: u16, fwmark: u32, offload: Offload, allow_v6: bool) -> io::Result<LinuxUdp> {
        let ctx =
            |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
        let (sock, dual_stack) =
            open_socket(port, allow_v6).map_err(ctx(format!("binding UDP port {port}")))?;
        if fwmark != 0 {
            sock.set_mark(fwmark).map_err(ctx(format!(
                "setting fwmark {fwmark:#x} on UDP port {port}"
            )))?;
        }
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if setsockopt_int(&sock, libc::SOL_SOCKET, force, SOCKET_BUFFER as libc::c_int).is_err()
            {
                let _ =
                    setsockopt_int(&sock, libc::SOL_SOCKET, plain, SOCKET_BUFFER as libc::c_int);
            }
        }
        sock.set_read_timeout(Some(POLL_INTERVAL))?;
        sock.set_write_timeout(Some(Duration::from_secs(1)))?;
        let port = sock.local_addr()?.as_socket().map_or(port, |a| a.port());

        let auto = offload == Offload::Auto;
        let gso = auto && getsockopt_int(&sock, libc::SOL_UDP, libc::UDP_SEGMENT).is_ok();
        if auto && !gso {
            NO_GSO.call_once(|| {
                tracing::warn!("UDP: kernel lacks GSO (UDP_SEGMENT); one datagram per message")
            });
        }
        let gro = auto && setsockopt_int(&sock, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        if auto && !gro {
            NO_GRO.call_once(|| {
                tracing::warn!("UDP: kernel lacks GRO (UDP_GRO); one datagram per message")
            });
        }
        let udp = LinuxUdp {
            sock,
            dual_stack,
            port,
            gso: AtomicBool::new(gso),
            gro,
            rx: Mutex::new(RxState {
                bufs: MsgBufs::new(),
                scratch: vec![0; GRO_SLOT].into_boxed_slice(),
                pending: None,
            }),
            tx: Mutex::new(MsgBufs::new()),
            counters: Counters::default(),
        };
        tracing::debug!(port, "{}", udp.offload_status());
        Ok(udp)
    }

    /// What is active, for logs and `edgewire bench`.
    pub fn offload_status(&self) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "udp: {}, sendmmsg/recvmmsg, GSO {}, GRO {}",
            if self.dual_stack {
                "dual-stack"
            } else {
                "IPv4 only"
            },
            on(self.gso.load(Ordering::Relaxed)),
            on(self.gro)
        )
    }

    pub fn stats(&self) -> UdpStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UdpStats {
            send_calls: l(&c.send_calls),
            messages_out: l(&c.messages_out),
            datagrams_out: l(&c.datagrams_out),
            recv_calls: l(&c.recv_calls),
            messages_in: l(&c.messages_in),
            datagrams_in: l(&c.datagrams_in),
            dropped: l(&c.dropped),
        }
    }

    /// Lays out messages for `entries[from..]` into `bufs` (at most 1024, the kernel's
    /// limit per call); returns the message count, the entry after the last one planned,
    /// and an error for entries that cannot be sent at all.
    fn plan_send(
        &self,
        bufs: &mut MsgBufs,
        batch: &Batch,
        from: usize,
        gso: bool,
    ) -> (usize, usize, Option<io::Error>) {
        let entries = &batch.entries()[from..];
        bufs.reserve(entries.len().min(1024), entries.len());
        let cmsg_space = cmsg_space(mem::size_of::<u16>());
        let mut skipped = None;
        let (mut m, mut i) = (0, 0);
        while i < entries.len() && m < 1024 {
            let first = entries[i];
            let Some((name, namelen)) = encode_addr(first.addr, self.dual_stack) else {
                skipped = Some(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("cannot send to {} from an IPv4-only socket", first.addr),
                ));
                i += 1;
                continue;
            };
            let mut j = i + 1;
            if gso && first.len > 0 {
                let mut total = first.len;
                while j < entries.len() && j - i < MAX_SEGMENTS {
                    let e = entries[j];
                    if e.addr != first.addr
                        || e.len > first.len
                        || e.len == 0
                        || total + e.len > GSO_MAX_BYTES
                    {
                        break;
                    }
                    total += e.len;
                    j += 1;
                    if e.len < first.len {
                        break;
                    }
                }
            }
            for (k, e) in entries[i..j].iter().enumerate() {
                let p = batch.packet(from + i + k);
                debug_assert_eq!(p.len(), e.len);
                bufs.iovs[i + k] = libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                };
            }
            bufs.names[m] = name;
            bufs.first_entry[m] = from + i;
            let hdr = &mut bufs.hdrs[m];
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = (&mut bufs.names[m] as *mut RawAddr).cast();
            hdr.msg_hdr.msg_namelen = namelen;
            hdr.msg_hdr.msg_iov = &mut bufs.iovs[i];
            hdr.msg_hdr.msg_iovlen = j - i;
            hdr.msg_hdr.msg_flags = 0;
            if j - i > 1 {
                let c = &mut bufs.cmsgs[m];
                *c = [0; 8];
                write_cmsg_u16(c, libc::SOL_UDP, libc::UDP_SEGMENT, first.len as u16);
                hdr.msg_hdr.msg_control = c.as_mut_ptr().cast();
                hdr.msg_hdr.msg_controllen = cmsg_space;
            } else {
                hdr.msg_hdr.msg_control = std::ptr::null_mut();
                hdr.msg_hdr.msg_controllen = 0;
            }
            m += 1;
            i = j;
        }
        (m, from + i, skipped)
    }

    /// Sends `batch.entries()[from..]`; returns the first error after trying them all.
    /// `allow_gso == false` sends every datagram as its own message.
    fn send_from(
        &self,
        bufs: &mut MsgBufs,
        batch: &Batch,
        mut from: usize,
        allow_gso: bool,
    ) -> io::Result<()> {
        let mut first_err: Option<io::Error> = None;
        let c = &self.counters;
        while from < batch.len() {
            let gso = allow_gso && self.gso.load(Ordering::Relaxed);
            let (m, next_from, skipped) = self.plan_send(bufs, batch, from, gso);
            if let Some(e) = skipped {
                first_err.get_or_insert(e);
            }
            let mut sent = 0;
            while sent < m {
                // SAFETY: hdrs[sent..m] were filled by plan_send in this call; their pointers
                // reference `bufs` (locked by the caller) and `batch`, both alive here.
                let rc = unsafe {
                    libc::sendmmsg(
                        self.sock.as_raw_fd(),
                        bufs.hdrs[sent..m].as_mut_ptr(),
                        (m - sent) as libc::c_uint,
                        0,
                    )
                };
                c.send_calls.fetch_add(1, Ordering::Relaxed);
                if rc > 0 {
                    let rc = rc as usize;
                    for h in &bufs.hdrs[sent..sent + rc] {
                        c.datagrams_out
                            .fetch_add(h.msg_hdr.msg_iovlen as u64, Ordering::Relaxed);
                    }
                    c.messages_out.fetch_add(rc as u64, Ordering::Relaxed);
                    sent += rc;
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(code @ (libc::EIO | libc::EINVAL | libc::EMSGSIZE))
                        if bufs.hdrs[sent].msg_hdr.msg_iovlen > 1 =>
                    {
                        // EIO: the route's device cannot checksum-offload, GSO off for good.
                        // EINVAL/EMSGSIZE: this path refuses the segment size (above its
                        // MTU): the rest of this batch goes unsegmented (the kernel fragments).
                        if code == libc::EIO {
                            GSO_EIO.call_once(|| {
                                tracing::warn!("UDP: GSO send failed with EIO; GSO disabled")
                            });
                            self.gso.store(false, Ordering::Relaxed);
                        }
                        let resume = bufs.first_entry[sent];
                        return match self.send_from(bufs, batch, resume, false) {
                            Err(e2) => Err(first_err.unwrap_or(e2)),
                            Ok(()) => first_err.map_or(Ok(()), Err),
                        };
                    }
                    Some(libc::EAGAIN) => {
                        // The send timeout expired with a full socket buffer: drop the rest.
                        return Err(first_err.unwrap_or(e));
                    }
                    _ => {
                        let to = batch.addr(bufs.first_entry[sent]);
                        first_err.get_or_insert(io::Error::new(
                            e.kind(),
                            format!("sending to {to}: {e}"),
                        ));
                        sent += 1;
                    }
                }
            }
            from = next_from;
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl LinuxUdp {
    /// Points message `s` of `bufs` at `buf` (one receive slot).
    fn set_rx_slot(bufs: &mut MsgBufs, s: usize, buf: &mut [u8]) {
        bufs.iovs[s] = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let h = &mut bufs.hdrs[s];
        h.msg_len = 0;
        h.msg_hdr.msg_name = (&mut bufs.names[s] as *mut RawAddr).cast();
        h.msg_hdr.msg_namelen = mem::size_of::<RawAddr>() as libc::socklen_t;
        h.msg_hdr.msg_iov = &mut bufs.iovs[s];
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_control = bufs.cmsgs[s].as_mut_ptr().cast();
        h.msg_hdr.msg_controllen = mem::size_of::<[u64; 8]>();
        h.msg_hdr.msg_flags = 0;
    }

    /// One `recvmmsg` into the `n` slots prepared in `bufs`; `Ok(0)` on timeout.
    fn recvmmsg(&self, bufs: &mut MsgBufs, n: usize, flags: libc::c_int) -> io::Result<usize> {
        loop {
            // SAFETY: hdrs[..n] were just pointed at our names/cmsgs (locked) and at
            // disjoint receive buffers that stay alive and unaliased for the call.
            let rc = unsafe {
                libc::recvmmsg(
                    self.sock.as_raw_fd(),
                    bufs.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    flags,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                let c = &self.counters;
                c.recv_calls.fetch_add(1, Ordering::Relaxed);
                c.messages_in.fetch_add(rc as u64, Ordering::Relaxed);
                return Ok(rc as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// Length, segment size, and source of received message `s`; `None` (counted) for a
    /// truncated or empty one.
    fn rx_message(
        &self,
        bufs: &MsgBufs,
        s: usize,
        slot: usize,
    ) -> Option<(usize, usize, SocketAddr)> {
        let h = &bufs.hdrs[s];
        let len = h.msg_len as usize;
        let gro = read_gro_size(&h.msg_hdr);
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > slot {
            self.counters
                .dropped
                .fetch_add(gro.map_or(1, |g| len.div_ceil(g)) as u64, Ordering::Relaxed);
            TRUNCATED.call_once(|| {
                tracing::warn!(slot, "UDP datagram larger than the receive slot: dropped")
            });
            return None;
        }
        let addr = decode_addr(&bufs.names[s])?;
        (len > 0).then_some((len, gro.unwrap_or(len), addr))
    }

    /// Copies what fits of the super-datagram held in `rx.scratch` into `batch`.
    fn drain_pending(rx: &mut RxState, batch: &mut Batch) -> usize {
        let Some(p) = rx.pending.as_mut() else {
            return 0;
        };
        let mut n = 0;
        while p.off < p.len {
            let end = (p.off + p.stride).min(p.len);
            if !batch.push(&rx.scratch[p.off..end], p.addr) {
                return n;
            }
            p.off = end;
            n += 1;
        }
        rx.pending = None;
        n
    }
}

impl LinuxUdp {
    /// Receive slots are carved from the batch's free arena (its head/tail room is
    /// ignored: datagrams and GRO segments land back to back in their slot); clear the
    /// batch between calls. An empty batch with too little room for one slot is served
    /// through an internal 64 KiB buffer and copied, over several calls if needed: nothing
    /// is lost. A partly filled batch without room for a slot returns `Ok(0)` at once.
    fn recv_batch(&self, batch: &mut Batch, flags: libc::c_int) -> io::Result<usize> {
        let max_entries = batch.max_entries();
        let mut guard = self.rx.lock();
        let rx = &mut *guard;
        if rx.pending.is_some() {
            let n = Self::drain_pending(rx, batch);
            self.counters
                .datagrams_in
                .fetch_add(n as u64, Ordering::Relaxed);
            return Ok(n);
        }
        let bufs = &mut rx.bufs;
        let (arena, used, entries) = batch.raw_parts();
        let entries_free = max_entries.saturating_sub(entries.len());
        let arena_free = arena.len().saturating_sub(*used);
        let (nslots, slot) = if self.gro {
            (
                MAX_MMSG
                    .min(entries_free / MAX_SEGMENTS)
                    .min(arena_free / GRO_SLOT),
                GRO_SLOT,
            )
        } else {
            let want = MAX_MMSG.min(entries_free).max(1);
            let slot = (arena_free / want).clamp(PLAIN_SLOT, GRO_SLOT);
            (want.min(arena_free / slot), slot)
        };
        if nslots == 0 {
            if !entries.is_empty() || entries_free == 0 {
                return Ok(0);
            }
            // Too small for even one slot: receive one message into the scratch buffer.
            bufs.reserve(1, 1);
            Self::set_rx_slot(bufs, 0, &mut rx.scratch);
            if self.recvmmsg(bufs, 1, flags)? == 0 {
                return Ok(0);
            }
            if let Some((len, stride, addr)) = self.rx_message(bufs, 0, rx.scratch.len()) {
                rx.pending = Some(PendingRx {
                    len,
                    stride,
                    addr,
                    off: 0,
                });
            }
            let n = Self::drain_pending(rx, batch);
            self.counters
                .datagrams_in
                .fetch_add(n as u64, Ordering::Relaxed);
            return Ok(n);
        }
        bufs.reserve(nslots, nslots);
        let base = *used;
        for (s, buf) in arena[base..base + nslots * slot]
            .chunks_exact_mut(slot)
            .enumerate()
        {
            Self::set_rx_slot(bufs, s, buf);
        }
        let got = self.recvmmsg(bufs, nslots, flags)?;
        let before = entries.len();
        let mut end = base;
        for s in 0..got {
            let Some((len, stride, addr)) = self.rx_message(bufs, s, slot) else {
                continue;
            };
            let start = base + s * slot;
            let mut off = 0;
            // nslots ≤ entries_free / 64 with GRO (a slot holds ≤ 64 segments), so this
            // never runs out of entries.
            while off < len && entries.len() < max_entries {
                entries.push(Entry {
                    offset: start + off,
                    len: stride.min(len - off),
                    addr,
                });
                off += stride;
            }
            end = start + len;
        }
        *used = end;
        let n = entries.len() - before;
        self.counters
            .datagrams_in
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl UdpIo for LinuxUdp {
    fn recv(&self, batch: &mut Batch) -> io::Result<usize> {
        self.recv_batch(batch, libc::MSG_WAITFORONE)
    }

    fn try_recv(&self, batch: &mut Batch) -> io::Result<usize> {
        self.recv_batch(batch, libc::MSG_WAITFORONE | libc::MSG_DONTWAIT)
    }

    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.sock.as_raw_fd())
    }

    fn send(&self, batch: &Batch) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut bufs = self.tx.lock();
        self.send_from(&mut bufs, batch, 0, true)
    }

    fn local_port(&self) -> u16 {
        self.port
    }
}

/// Opens [`LinuxUdp`] sockets for the device.
#[derive(Debug, Clone, Copy)]
pub struct LinuxUdpBinder {
    offload: Offload,
}

impl LinuxUdpBinder {
    pub fn new(offload: Offload) -> Self {
        Self { offload }
    }
}

impl Default for LinuxUdpBinder {
    /// Offloads unless `EDGEWIRE_OFFLOAD=off`.
    fn default() -> Self {
        Self::new(Offload::from_env())
    }
}

impl UdpBinder for LinuxUdpBinder {
    fn bind(&self, port: u16, fwmark: u32) -> io::Result<Arc<dyn UdpIo>> {
        Ok(Arc::new(LinuxUdp::bind(port, fwmark, self.offload)?))
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Instant;

    use super::*;
    use crate::netlink::testns::{in_netns, run};

    fn payload(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|k| (i * 31 + k) as u8).collect()
    }

    /// Receives until `want` datagrams arrived (or 3 s passed), clearing `batch` between
    /// calls as the device does; returns them in arrival order.
    fn recv_all(u: &LinuxUdp, want: usize, batch: &mut Batch) -> Vec<(Vec<u8>, SocketAddr)> {
        let t = Instant::now();
        let mut got = Vec::new();
        while got.len() < want && t.elapsed() < Duration::from_secs(3) {
            batch.clear();
            u.recv(batch).unwrap();
            got.extend(batch.iter().map(|(p, a)| (p.to_vec(), a)));
        }
        got
    }

    const MODES: [Offload; 2] = [Offload::Auto, Offload::Off];

    #[test]
    fn batches_cross_loopback_v4_and_v6() {
        in_netns("udp-batch", |_| {
            for mode in MODES {
                let a = LinuxUdp::bind(0, 0, mode).unwrap();
                let b = LinuxUdp::bind(0, 0, mode).unwrap();
                assert!(
                    a.offload_status().contains("dual-stack"),
                    "{}",
                    a.offload_status()
                );
                let to4: SocketAddr = format!("127.0.0.1:{}", b.local_port()).parse().unwrap();
                let to6: SocketAddr = format!("[::1]:{}", b.local_port()).parse().unwrap();
                let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", b.local_port())
                    .parse()
                    .unwrap();
                let mut out = Batch::new(256, 1 << 20);
                // Runs of equal sizes (GSO material), odd sizes, three destinations.
                for i in 0..120 {
                    let (to, len) = match i {
                        0..=49 => (to4, 1452),
                        50..=59 => (to6, 148 + i),
                        60..=99 => (to6, 1000),
                        _ => (mapped, 32),
                    };
                    assert!(out.push(&payload(i, len), to));
                }
                a.send(&out).unwrap();
                let mut inb = Batch::new(RECV_BATCH_ENTRIES, RECV_BATCH_BYTES);
                let mut got = recv_all(&b, 120, &mut inb);
                assert_eq!(got.len(), 120, "{mode:?} {:?} {:?}", a.stats(), b.stats());
                // Order within one source socket is kept by loopback.
                let a4: SocketAddr = format!("127.0.0.1:{}", a.local_port()).parse().unwrap();
                let a6: SocketAddr = format!("[::1]:{}", a.local_port()).parse().unwrap();
                let mut want: Vec<(Vec<u8>, SocketAddr)> = out
                    .iter()
                    .map(|(p, d)| (p.to_vec(), if d == to6 { a6 } else { a4 }))
                    .collect();
                got.sort();
                want.sort();
                assert!(got == want, "{mode:?}: contents or source addresses differ");
                let (sa, sb) = (a.stats(), b.stats());
                assert_eq!(sa.datagrams_out, 120);
                assert!(sa.send_calls <= 2, "one sendmmsg per batch: {sa:?}");
                if mode == Offload::Auto {
                    assert!(sa.messages_out < 20, "GSO runs: {sa:?}");
                    assert!(sb.messages_in < 120, "GRO coalesced: {sb:?}");
                } else {
                    assert_eq!(sa.messages_out, 120, "{sa:?}");
                    assert_eq!(sb.messages_in, 120, "{sb:?}");
                }
                assert_eq!(sb.dropped, 0);
            }
        });
    }

    #[test]
    fn gso_segments_are_real_datagrams_and_gro_splits_them() {
        in_netns("udp-gso", |_| {
            // A plain socket sees what the wire carries: GSO must produce the exact datagrams.
            let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
            plain
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let to = plain.local_addr().unwrap();
            let a = LinuxUdp::bind(0, 0, Offload::Auto).unwrap();
            let mut out = Batch::new(64, 1 << 17);
            let lens = [1200usize; 40]
                .iter()
                .copied()
                .chain([700])
                .collect::<Vec<_>>();
            for (i, len) in lens.iter().enumerate() {
                out.push(&payload(i, *len), to);
            }
            a.send(&out).unwrap();
            assert_eq!(
                a.stats().messages_out,
                1,
                "41 datagrams, one GSO message: {:?}",
                a.stats()
            );
            let mut buf = [0u8; 2048];
            for (i, len) in lens.iter().enumerate() {
                let (n, _) = plain.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &payload(i, *len)[..], "datagram {i}");
            }
            // Between two LinuxUdp with GRO: one super-datagram, split into 41 entries.
            let b = LinuxUdp::bind(0, 0, Offload::Auto).unwrap();
            let to_b: SocketAddr = format!("127.0.0.1:{}", b.local_port()).parse().unwrap();
            let mut out2 = Batch::new(64, 1 << 17);
            for (i, len) in lens.iter().enumerate() {
                out2.push(&payload(i, *len), to_b);
            }
            a.send(&out2).unwrap();
            let mut inb = Batch::new(RECV_BATCH_ENTRIES, RECV_BATCH_BYTES);
            let got = recv_all(&b, 41, &mut inb);
            assert_eq!(b.stats().messages_in, 1, "{:?}", b.stats());
            assert_eq!(got.len(), 41);
            for (i, len) in lens.iter().enumerate() {
                assert_eq!(
                    got[i],
                    (
                        payload(i, *len),
                        format!("127.0.0.1:{}", a.local_port()).parse().unwrap()
                    )
                );
            }
            // GSO sender, receiver without GRO: the kernel segments for it.
            let c = LinuxUdp::bind(0, 0, Offload::Off).unwrap();
            let to_c: SocketAddr = format!("127.0.0.1:{}", c.local_port()).parse().unwrap();
            let mut out3 = Batch::new(64, 1 << 17);
            for (i, len) in lens.iter().enumerate() {
                out3.push(&payload(i, *len), to_c);
            }
            a.send(&out3).unwrap();
            let mut inc = Batch::new(64, 1 << 17);
            let got = recv_all(&c, 41, &mut inc);
            assert_eq!((got.len(), c.stats().messages_in), (41, 41));
            assert_eq!(got[40].0, payload(40, 700));
        });
    }

    #[test]
    fn small_batches_timeouts_marks_and_errors() {
        in_netns("udp-misc", |_| {
            let a = LinuxUdp::bind(0, 0x5eed, Offload::Auto).unwrap();
            assert_eq!(
                getsockopt_int(&a.sock, libc::SOL_SOCKET, libc::SO_MARK).unwrap(),
                0x5eed
            );
            // recv returns Ok(0) after the poll interval.
            let mut small = Batch::new(4, 4096);
            let t = Instant::now();
            assert_eq!(a.recv(&mut small).unwrap(), 0);
            assert!(t.elapsed() >= POLL_INTERVAL / 2 && t.elapsed() < POLL_INTERVAL * 5);
            // A batch too small for a GRO slot: received through the scratch buffer over
            // several calls, nothing lost.
            let b = LinuxUdp::bind(0, 0, Offload::Auto).unwrap();
            let to: SocketAddr = format!("127.0.0.1:{}", b.local_port()).parse().unwrap();
            let mut out = Batch::new(16, 1 << 15);
            for i in 0..10 {
                out.push(&payload(i, 500), to);
            }
            a.send(&out).unwrap();
            let got = recv_all(&b, 10, &mut small);
            assert_eq!(got.len(), 10);
            for (i, (p, _)) in got.iter().enumerate() {
                assert_eq!(p, &payload(i, 500));
            }
            assert_eq!(b.stats().dropped, 0, "{:?}", b.stats());
            // The port is taken: the error names it.
            let e = LinuxUdp::bind(a.local_port(), 0, Offload::Auto)
                .err()
                .expect("port in use");
            assert!(
                e.to_string()
                    .contains(&format!("UDP port {}", a.local_port())),
                "{e}"
            );
            // IPv4-only fallback: IPv4 works, an IPv6 destination is an error, others still go.
            let v4 = LinuxUdp::bind_with(0, 0, Offload::Auto, false).unwrap();
            assert!(v4.offload_status().contains("IPv4 only"));
            let c = LinuxUdp::bind(0, 0, Offload::Off).unwrap();
            let mut out = Batch::new(4, 4096);
            out.push(b"v6", format!("[::1]:{}", c.local_port()).parse().unwrap());
            out.push(
                b"v4",
                format!("127.0.0.1:{}", c.local_port()).parse().unwrap(),
            );
            let e = v4.send(&out).unwrap_err();
            assert!(e.to_string().contains("IPv4-only"), "{e}");
            let mut inc = Batch::new(4, 4096);
            assert_eq!(recv_all(&c, 1, &mut inc)[0].0, b"v4");
            // An unreachable destination fails alone; the rest of the batch is sent.
            let mut out = Batch::new(4, 4096);
            out.push(b"x", "198.18.200.1:9".parse().unwrap());
            out.push(
                b"y",
                format!("127.0.0.1:{}", c.local_port()).parse().unwrap(),
            );
            let e = a.send(&out).unwrap_err();
            assert!(e.to_string().contains("198.18.200.1:9"), "{e}");
            assert_eq!(recv_all(&c, 1, &mut inc)[0].0, b"y");
        });
    }

    #[test]
    fn gso_above_the_path_mtu_falls_back_to_fragments() {
        in_netns("udp-gso-mtu", |tag| {
            let dev = format!("ewg{tag}");
            run(&format!(
                "ip link add {dev} mtu 1280 type veth peer name {dev}p"
            ));
            run(&format!("ip link set {dev}p up"));
            run(&format!("ip link set {dev} up"));
            run(&format!("ip addr add 198.18.5.1/24 dev {dev}"));
            let a = LinuxUdp::bind(0, 0, Offload::Auto).unwrap();
            let mut out = Batch::new(16, 1 << 15);
            for i in 0..10 {
                out.push(&payload(i, 1400), "198.18.5.2:9".parse().unwrap());
            }
            a.send(&out).unwrap();
            let st = a.stats();
            assert_eq!(
                (st.datagrams_out, st.messages_out),
                (10, 10),
                "unsegmented after the refusal: {st:?}"
            );
            assert!(
                a.offload_status().contains("GSO on"),
                "EMSGSIZE must not disable GSO for good"
            );
        });
    }

    #[test]
    fn binder_opens_working_sockets() {
        in_netns("udp-binder", |_| {
            let binder = LinuxUdpBinder::new(Offload::Off);
            let s = binder.bind(0, 0).unwrap();
            assert_ne!(s.local_port(), 0);
            assert!(binder.bind(s.local_port(), 0).is_err());
        });
    }
}
