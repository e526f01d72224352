//! TUN offload, pure part: the virtio-net header, Internet checksums, and splitting a
//! TSO/USO super-packet read from the TUN into MTU-sized packets (port of wireguard-go's
//! `tun/offload_linux.go` `gsoSplit`/`gsoNoneChecksum`). Coalescing on write is in
//! `offload_gro.rs`.
//!
//! Hot path, no syscalls, no allocation, no locks: the caller (the TUN reader thread) owns
//! the buffers. Input comes from the kernel but is still only read through checked slicing:
//! a malformed header yields [`SplitError`], never a panic.

use super::batch::{Batch, NO_ADDR};
use crate::wire::ip::{PROTO_TCP, PROTO_UDP};

/// Whether kernel offloads (TUN vnet_hdr/TSO, UDP GSO/GRO) may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// Use every offload the kernel supports (probed once, fallback logged).
    Auto,
    /// Force the plain fallbacks (one packet per TUN read/write, no UDP GSO/GRO).
    Off,
}

impl Offload {
    /// `EDGEWIRE_OFFLOAD=off` (or `0`, `false`, `no`) forces the fallbacks; anything else is
    /// [`Offload::Auto`].
    pub fn from_env() -> Self {
        Self::parse(std::env::var("EDGEWIRE_OFFLOAD").ok().as_deref())
    }

    /// The value of `EDGEWIRE_OFFLOAD` (unset = `None`) as a choice.
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if matches!(v.as_str(), "off" | "0" | "false" | "no") => Offload::Off,
            _ => Offload::Auto,
        }
    }
}

/// `struct virtio_net_hdr` (legacy, native endian: TUNSETVNETLE/BE are never used).
pub const VNET_HDR_LEN: usize = 10;
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// The largest packet a TUN read can return (IP length limit); reads need this much room.
pub const MAX_SUPER_PACKET: usize = 65535;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    pub fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

// ---- checksums -------------------------------------------------------------------------

/// Ones-complement sum of `data` (big-endian 16-bit words, odd tail padded) added to
/// `initial`, not folded.
///
/// The bulk is summed as native-endian 32-bit words into 64-bit accumulators, which need no
/// carry handling (a 64 KiB packet adds up to less than 2^46); the folded result is
/// byte-swapped once, as RFC 1071 §2(B) allows. Eight independent lanes let the compiler
/// keep several vector adds in flight: 1.4–1.6× the speed of one accumulator on a 1,408-byte
/// segment (docs/PERFORMANCE.md, "Checksums in eight lanes").
pub fn checksum_nofold(data: &[u8], initial: u64) -> u64 {
    let mut blocks = data.chunks_exact(32);
    let mut lanes = [0u64; 8];
    for block in &mut blocks {
        for (k, lane) in lanes.iter_mut().enumerate() {
            *lane += ne_word(&block[4 * k..4 * k + 4]);
        }
    }
    let mut wide: u64 = lanes.iter().sum();
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        wide += ne_word(w);
    }
    let native = checksum_fold(wide);
    let mut tail: u64 = u64::from(if cfg!(target_endian = "little") {
        native.swap_bytes()
    } else {
        native
    });
    let mut rest = words.remainder();
    while rest.len() >= 2 {
        tail += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        tail += u64::from(*last) << 8;
    }
    let (s, carry) = initial.overflowing_add(tail);
    s + u64::from(carry)
}

/// A native-endian 32-bit word (`w` is 4 bytes), widened for a 64-bit accumulator.
#[inline(always)]
fn ne_word(w: &[u8]) -> u64 {
    u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
}

/// Folds a 64-bit ones-complement sum to 16 bits (not inverted).
pub fn checksum_fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The pseudo-header sum for TCP/UDP over IPv4 (`src`/`dst` 4 bytes) or IPv6 (16 bytes).
pub fn pseudo_header_nofold(src: &[u8], dst: &[u8], proto: u8, len: u32) -> u64 {
    let acc = checksum_nofold(src, 0);
    let acc = checksum_nofold(dst, acc);
    acc + u64::from(proto) + u64::from(len)
}

/// Ones-complement checksum ready to store (inverted).
pub fn checksum(data: &[u8], initial: u64) -> u16 {
    !checksum_fold(checksum_nofold(data, initial))
}

/// Where the source and destination addresses of an IP packet are, by version.
fn ip_addrs(pkt: &[u8]) -> Option<(&[u8], &[u8])> {
    match pkt.first()? >> 4 {
        4 => Some((pkt.get(12..16)?, pkt.get(16..20)?)),
        6 => Some((pkt.get(8..24)?, pkt.get(24..40)?)),
        _ => None,
    }
}

/// `true` when the TCP/UDP checksum of `pkt` (transport header at `l4_off`) verifies.
pub fn transport_checksum_valid(pkt: &[u8], l4_off: usize, proto: u8) -> bool {
    let (Some((src, dst)), Some(l4)) = (ip_addrs(pkt), pkt.get(l4_off..)) else {
        return false;
    };
    let Ok(len) = u32::try_from(l4.len()) else {
        return false;
    };
    checksum_fold(checksum_nofold(
        l4,
        pseudo_header_nofold(src, dst, proto, len),
    )) == 0xffff
}

// ---- splitting on read -----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("TUN packet too short for its virtio header fields")]
    Truncated,
    #[error("TUN packet has an unsupported or inconsistent offload header: {0}")]
    BadHeader(&'static str),
}

/// How far a split got: the caller keeps the super-packet and resumes at `next_segment`
/// when the batch filled up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitProgress {
    pub emitted: usize,
    /// `None` = done; `Some(i)` = segment `i` onwards did not fit in the batch.
    pub next_segment: Option<usize>,
}

const TCP_FLAG_FIN: u8 = 0x01;
const TCP_FLAG_PSH: u8 = 0x08;
const TCP_FLAG_CWR: u8 = 0x80;

/// Most header bytes (IP + TCP/UDP) an in-place split handles.
pub const MAX_SPLIT_HEADER: usize = 256;

/// What the segments of one TSO/USO super-packet share.
#[derive(Debug, Clone, Copy)]
struct SegmentPlan {
    is_tcp: bool,
    v6: bool,
    /// Offset of the TCP/UDP header.
    l4: usize,
    /// IP + TCP/UDP header bytes.
    hdr_len: usize,
    gso: usize,
    segments: usize,
    payload_len: usize,
    first_seq: u32,
    first_id: u16,
}

impl SegmentPlan {
    /// `None` for a packet that is not a super-packet (GSO none).
    fn new(hdr: &VirtioNetHdr, pkt: &[u8]) -> Result<Option<SegmentPlan>, SplitError> {
        let gso_type = hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN;
        if gso_type == VIRTIO_NET_HDR_GSO_NONE {
            return Ok(None);
        }
        let version = pkt.first().ok_or(SplitError::Truncated)? >> 4;
        let (is_tcp, v6) = match (gso_type, version) {
            (VIRTIO_NET_HDR_GSO_TCPV4, 4) => (true, false),
            (VIRTIO_NET_HDR_GSO_TCPV6, 6) => (true, true),
            (VIRTIO_NET_HDR_GSO_UDP_L4, 4) => (false, false),
            (VIRTIO_NET_HDR_GSO_UDP_L4, 6) => (false, true),
            _ => {
                return Err(SplitError::BadHeader(
                    "GSO type does not match the IP version",
                ))
            }
        };
        let l4 = usize::from(hdr.csum_start);
        let ip_min = if v6 {
            40
        } else {
            usize::from(pkt.first().copied().unwrap_or(0) & 0x0f) * 4
        };
        if (!v6 && (ip_min < 20 || l4 != ip_min)) || (v6 && l4 < 40) {
            return Err(SplitError::BadHeader(
                "checksum start is not the transport header",
            ));
        }
        let l4_hdr_len = if is_tcp {
            let off = *pkt.get(l4 + 12).ok_or(SplitError::Truncated)?;
            usize::from(off >> 4) * 4
        } else {
            8
        };
        if l4_hdr_len < if is_tcp { 20 } else { 8 } {
            return Err(SplitError::BadHeader("TCP data offset below 5 words"));
        }
        let hdr_len = l4 + l4_hdr_len;
        if hdr_len > MAX_SPLIT_HEADER {
            return Err(SplitError::BadHeader("headers longer than 256 bytes"));
        }
        let gso = usize::from(hdr.gso_size);
        if gso == 0 {
            return Err(SplitError::BadHeader("GSO size 0"));
        }
        if pkt.len() < hdr_len {
            return Err(SplitError::Truncated);
        }
        let payload_len = pkt.len() - hdr_len;
        Ok(Some(SegmentPlan {
            is_tcp,
            v6,
            l4,
            hdr_len,
            gso,
            segments: payload_len.div_ceil(gso).max(1),
            payload_len,
            first_seq: if is_tcp { read_u32(pkt, l4 + 4) } else { 0 },
            first_id: if v6 { 0 } else { read_u16(pkt, 4) },
        }))
    }

    /// Bytes of payload in segment `i`.
    fn payload(&self, i: usize) -> std::ops::Range<usize> {
        let start = (i * self.gso).min(self.payload_len);
        start..(start + self.gso).min(self.payload_len)
    }

    /// Makes `o` (the super-packet's headers followed by segment `i`'s payload) a packet of
    /// its own: lengths, IPv4 ID and header checksum, TCP sequence number and flags
    /// (FIN/PSH only on the last, CWR only on the first), full transport checksum.
    fn finish(&self, o: &mut [u8], i: usize) -> Result<(), SplitError> {
        let (l4, total) = (self.l4, o.len());
        if self.v6 {
            write_u16(o, 4, (total - 40) as u16);
        } else {
            write_u16(o, 2, total as u16);
            write_u16(o, 4, self.first_id.wrapping_add(i as u16));
            write_u16(o, 10, 0);
            let c = checksum(&o[..l4], 0);
            write_u16(o, 10, c);
        }
        let csum_at = if self.is_tcp {
            write_u32(
                o,
                l4 + 4,
                self.first_seq.wrapping_add((i * self.gso) as u32),
            );
            let mut flags = o[l4 + 13];
            if i + 1 != self.segments {
                flags &= !(TCP_FLAG_FIN | TCP_FLAG_PSH);
            }
            if i > 0 {
                flags &= !TCP_FLAG_CWR;
            }
            o[l4 + 13] = flags;
            l4 + 16
        } else {
            write_u16(o, l4 + 4, (total - l4) as u16);
            l4 + 6
        };
        write_u16(o, csum_at, 0);
        let (src, dst) = ip_addrs(o).ok_or(SplitError::Truncated)?;
        let proto = if self.is_tcp { PROTO_TCP } else { PROTO_UDP };
        let l4_len = (total - l4) as u32;
        let mut c = checksum(&o[l4..], pseudo_header_nofold(src, dst, proto, l4_len));
        if !self.is_tcp && c == 0 {
            c = 0xffff;
        }
        write_u16(o, csum_at, c);
        Ok(())
    }
}

/// Splits one packet read from a vnet_hdr TUN (`pkt`, after the virtio header `hdr`) into
/// `out`, starting at segment `first_segment` (0 for a fresh packet).
///
/// - GSO none: the packet is copied as is, its checksum finished if the kernel left it
///   partial (`NEEDS_CSUM`).
/// - TCPv4/TCPv6/UDP_L4: every segment gets a copy of the headers with fixed lengths, IPv4
///   ID and header checksum, TCP sequence numbers and flags (FIN/PSH only on the last, CWR
///   only on the first), and a full transport checksum.
///
/// `pkt` is modified (the partial checksum field is cleared).
pub fn split_into(
    hdr: &VirtioNetHdr,
    pkt: &mut [u8],
    first_segment: usize,
    out: &mut Batch,
) -> Result<SplitProgress, SplitError> {
    let Some(plan) = SegmentPlan::new(hdr, pkt)? else {
        finish_unsplit(hdr, pkt)?;
        if first_segment > 0 {
            return Ok(SplitProgress {
                emitted: 0,
                next_segment: None,
            });
        }
        return Ok(if out.push(pkt, NO_ADDR) {
            SplitProgress {
                emitted: 1,
                next_segment: None,
            }
        } else {
            SplitProgress {
                emitted: 0,
                next_segment: Some(0),
            }
        });
    };
    let (headers, payload) = pkt.split_at(plan.hdr_len);
    let mut emitted = 0;
    for i in first_segment..plan.segments {
        let seg = &payload[plan.payload(i)];
        let total = plan.hdr_len + seg.len();
        let Some(room) = out.spare().filter(|r| r.len() >= total) else {
            return Ok(SplitProgress {
                emitted,
                next_segment: Some(i),
            });
        };
        let o = &mut room[..total];
        o[..plan.hdr_len].copy_from_slice(headers);
        o[plan.hdr_len..].copy_from_slice(seg);
        plan.finish(o, i)?;
        out.commit(total, NO_ADDR);
        emitted += 1;
    }
    Ok(SplitProgress {
        emitted,
        next_segment: None,
    })
}

/// Like [`split_into`], without copying: each segment is made a packet where it lies in
/// `pkt` and handed to `f`, which must be done with it before it returns. Segment `i`'s
/// headers are written over the last header-length bytes of segment `i - 1`'s payload,
/// which `f` has already consumed. Returns how many packets `f` saw.
pub fn split_in_place(
    hdr: &VirtioNetHdr,
    pkt: &mut [u8],
    f: &mut dyn FnMut(&[u8]),
) -> Result<usize, SplitError> {
    let Some(plan) = SegmentPlan::new(hdr, pkt)? else {
        finish_unsplit(hdr, pkt)?;
        f(pkt);
        return Ok(1);
    };
    let mut headers = [0u8; MAX_SPLIT_HEADER];
    let headers = &mut headers[..plan.hdr_len];
    headers.copy_from_slice(&pkt[..plan.hdr_len]);
    for i in 0..plan.segments {
        let payload = plan.payload(i);
        // Payload offsets are relative to the end of the headers: segment i's own headers
        // go right before its payload.
        let o = &mut pkt[payload.start..plan.hdr_len + payload.end];
        o[..plan.hdr_len].copy_from_slice(headers);
        plan.finish(o, i)?;
        f(o);
    }
    Ok(plan.segments)
}

/// A packet that is not a super-packet: its checksum finished if the kernel left it
/// partial (`NEEDS_CSUM`).
fn finish_unsplit(hdr: &VirtioNetHdr, pkt: &mut [u8]) -> Result<(), SplitError> {
    if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    finish_partial_checksum(
        pkt,
        usize::from(hdr.csum_start),
        usize::from(hdr.csum_offset),
    )
}

/// Completes a `CHECKSUM_PARTIAL` packet: the field at `start + offset` holds the pseudo-
/// header sum; the checksum covers everything from `start`.
fn finish_partial_checksum(pkt: &mut [u8], start: usize, offset: usize) -> Result<(), SplitError> {
    let at = start + offset;
    if at + 2 > pkt.len() {
        return Err(SplitError::BadHeader("checksum offset beyond the packet"));
    }
    let initial = u64::from(read_u16(pkt, at));
    write_u16(pkt, at, 0);
    let c = checksum(&pkt[start..], initial);
    write_u16(pkt, at, c);
    Ok(())
}

pub(crate) fn read_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn write_u16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

pub(crate) fn write_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real IPv4/TCP packet (10.0.0.1:40000 → 10.0.0.2:5201, ACK|PSH) with `payload`,
    /// checksums filled in.
    pub(crate) fn tcp4(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0, 0, 0x12, 0x34, 0x40, 0x00, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0,
            2, //
            0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 0, 0x00, 0x00, 0x10, 0x00, 0x50, flags, 0xff, 0xff, 0,
            0, 0, 0,
        ];
        write_u32(&mut p, 24, seq);
        write_u32(&mut p, 28, 0xabcd_0001);
        p.extend_from_slice(payload);
        let n = p.len() as u16;
        write_u16(&mut p, 2, n);
        let c = checksum(&p[..20], 0);
        write_u16(&mut p, 10, c);
        let c = checksum(
            &p[20..],
            pseudo_header_nofold(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, u32::from(n) - 20),
        );
        write_u16(&mut p, 36, c);
        p
    }

    /// IPv6/TCP fd00::1:40000 → fd00::2:5201 with a 12-byte timestamp option.
    pub(crate) fn tcp6(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[
            0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, flags, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
        write_u32(&mut p, 44, seq);
        write_u32(&mut p, 48, 0x0102_0304);
        p.extend_from_slice(payload);
        let l4 = (p.len() - 40) as u16;
        write_u16(&mut p, 4, l4);
        let c = checksum(&p[40..], pseudo_header_nofold(&src, &dst, 6, u32::from(l4)));
        write_u16(&mut p, 56, c);
        p
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    /// Turns a valid packet into what the kernel hands a TSO-enabled TUN: one super-packet
    /// with a partial (pseudo-header only) checksum.
    fn as_partial(mut p: Vec<u8>, l4: usize, csum_off: usize, proto: u8) -> Vec<u8> {
        let (src, dst) = ip_addrs(&p).map(|(s, d)| (s.to_vec(), d.to_vec())).unwrap();
        let len = (p.len() - l4) as u32;
        let partial = checksum_fold(pseudo_header_nofold(&src, &dst, proto, len));
        write_u16(&mut p, l4 + csum_off, partial);
        p
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum_fold(checksum_nofold(&data, 0)), 0xddf2);
        assert_eq!(checksum_fold(checksum_nofold(&data[..7], 0)), 0xddf2 - 0xf7);
        // A real IPv4 header (from a capture) verifies to 0xffff with its checksum in place.
        let ip = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum_fold(checksum_nofold(&ip, 0)), 0xffff);
    }

    /// The straightforward big-endian 16-bit sum, for comparison.
    fn reference_sum(data: &[u8], initial: u64) -> u16 {
        let mut acc = initial;
        for pair in data.chunks(2) {
            acc += u64::from(pair[0]) << 8 | u64::from(*pair.get(1).unwrap_or(&0));
        }
        checksum_fold(acc)
    }

    #[test]
    fn checksum_agrees_with_the_plain_sum_at_every_length_and_offset() {
        let mut x: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for start in 0..5 {
            for len in (0..200).chain([1419, 1420, 1500, 2995]) {
                let d = &data[start..start + len];
                for initial in [0, 1, 0xffff, 0x1_2345, u64::from(u32::MAX)] {
                    assert_eq!(
                        checksum_fold(checksum_nofold(d, initial)),
                        reference_sum(d, initial),
                        "start {start} len {len} initial {initial:#x}"
                    );
                }
            }
        }
        // All ones stay all ones (no carry lost), up to the largest IP packet.
        for n in [1501, 65_535] {
            let ff = vec![0xffu8; n];
            assert_eq!(
                checksum_fold(checksum_nofold(&ff, 0)),
                reference_sum(&ff, 0),
                "{n} bytes of 0xff"
            );
        }
    }

    #[test]
    fn offload_switch_values() {
        for off in ["off", "OFF", " 0", "false", "no"] {
            assert_eq!(Offload::parse(Some(off)), Offload::Off, "{off}");
        }
        for auto in [None, Some(""), Some("on"), Some("auto"), Some("1")] {
            assert_eq!(Offload::parse(auto), Offload::Auto, "{auto:?}");
        }
    }

    #[test]
    fn virtio_header_roundtrip() {
        let h = VirtioNetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 72,
            gso_size: 1388,
            csum_start: 40,
            csum_offset: 16,
        };
        assert_eq!(VirtioNetHdr::decode(&h.encode()), Some(h));
        assert_eq!(VirtioNetHdr::decode(&[0; 9]), None);
    }

    #[test]
    fn tso4_split_gives_valid_segments() {
        let data = payload(3000);
        let sup = as_partial(tcp4(1000, 0x18 | TCP_FLAG_FIN, &data), 20, 16, 6);
        let hdr = VirtioNetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 40,
            gso_size: 1400,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut out = Batch::new(8, 1 << 16);
        let mut pkt = sup.clone();
        let p = split_into(&hdr, &mut pkt, 0, &mut out).unwrap();
        assert_eq!(
            p,
            SplitProgress {
                emitted: 3,
                next_segment: None
            }
        );
        let mut got = Vec::new();
        for i in 0..3 {
            let s = out.packet(i);
            // The split must be byte-identical to packets built independently.
            let want_flags = if i == 2 { 0x18 | TCP_FLAG_FIN } else { 0x10 };
            let chunk = &data[i * 1400..((i + 1) * 1400).min(3000)];
            let mut want = tcp4(1000 + (i * 1400) as u32, want_flags, chunk);
            write_u16(&mut want, 4, 0x1234 + i as u16);
            write_u16(&mut want, 10, 0);
            let c = checksum(&want[..20], 0);
            write_u16(&mut want, 10, c);
            assert_eq!(s, &want[..], "segment {i}");
            assert_eq!(checksum_fold(checksum_nofold(&s[..20], 0)), 0xffff);
            assert!(transport_checksum_valid(s, 20, 6), "segment {i}");
            got.extend_from_slice(&s[40..]);
        }
        assert_eq!(got, data);
    }

    #[test]
    fn tso6_split_resumes_when_the_batch_fills() {
        let data = payload(4000);
        let sup = as_partial(tcp6(7, 0x18, &data), 40, 16, 6);
        let hdr = VirtioNetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 72,
            gso_size: 1000,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut pkt = sup.clone();
        let mut out = Batch::new(3, 1 << 16);
        let p = split_into(&hdr, &mut pkt, 0, &mut out).unwrap();
        assert_eq!(
            p,
            SplitProgress {
                emitted: 3,
                next_segment: Some(3)
            }
        );
        let mut out2 = Batch::new(3, 1 << 16);
        let p = split_into(&hdr, &mut pkt, 3, &mut out2).unwrap();
        assert_eq!(
            p,
            SplitProgress {
                emitted: 1,
                next_segment: None
            }
        );
        let segs: Vec<&[u8]> = out.iter().chain(out2.iter()).map(|(p, _)| p).collect();
        let mut got = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(read_u16(s, 4) as usize, s.len() - 40);
            assert_eq!(read_u32(s, 44), 7 + (i as u32) * 1000);
            assert_eq!(s[53], if i == 3 { 0x18 } else { 0x10 });
            assert!(transport_checksum_valid(s, 40, 6), "segment {i}");
            assert_eq!(
                &s[60..72],
                &[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9],
                "options copied"
            );
            got.extend_from_slice(&s[72..]);
        }
        assert_eq!(got, data);
    }

    #[test]
    fn uso_split_and_partial_checksum() {
        // IPv4/UDP 198.18.0.1:9 → 198.18.0.2:9, 2500 bytes, gso 1000.
        let data = payload(2500);
        let mut p = vec![
            0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2, 0, 9, 0, 9, 0,
            0, 0, 0,
        ];
        p.extend_from_slice(&data);
        let n = p.len() as u16;
        write_u16(&mut p, 2, n);
        write_u16(&mut p, 24, n - 20);
        let mut sup = as_partial(p.clone(), 20, 6, 17);
        let hdr = VirtioNetHdr {
            flags: 1,
            gso_type: 5,
            hdr_len: 28,
            gso_size: 1000,
            csum_start: 20,
            csum_offset: 6,
        };
        let mut out = Batch::new(8, 1 << 16);
        assert_eq!(split_into(&hdr, &mut sup, 0, &mut out).unwrap().emitted, 3);
        for (i, (s, _)) in out.iter().enumerate() {
            assert_eq!(usize::from(read_u16(s, 24)), s.len() - 20);
            assert_eq!(read_u16(s, 4), 1 + i as u16);
            assert!(transport_checksum_valid(s, 20, 17));
            assert_eq!(checksum_fold(checksum_nofold(&s[..20], 0)), 0xffff);
        }
        // GSO none + NEEDS_CSUM: the checksum is finished in place.
        let mut single = as_partial(p, 20, 6, 17);
        let hdr = VirtioNetHdr {
            flags: 1,
            csum_start: 20,
            csum_offset: 6,
            ..Default::default()
        };
        let mut out = Batch::new(8, 1 << 16);
        assert_eq!(
            split_into(&hdr, &mut single, 0, &mut out).unwrap().emitted,
            1
        );
        assert!(transport_checksum_valid(out.packet(0), 20, 17));
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let mut out = Batch::new(8, 1 << 16);
        let tso4 = VirtioNetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 40,
            gso_size: 100,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut v6 = tcp6(1, 0x10, &[1; 300]);
        assert!(
            split_into(&tso4, &mut v6, 0, &mut out).is_err(),
            "TCPv4 GSO on an IPv6 packet"
        );
        let mut short = tcp4(1, 0x10, &[]);
        short.truncate(30);
        assert_eq!(
            split_into(&tso4, &mut short, 0, &mut out),
            Err(SplitError::Truncated)
        );
        let mut empty: [u8; 0] = [];
        assert!(split_into(&tso4, &mut empty, 0, &mut out).is_err());
        let zero = VirtioNetHdr {
            gso_size: 0,
            ..tso4
        };
        assert!(split_into(&zero, &mut tcp4(1, 0x10, &[1; 300]), 0, &mut out).is_err());
        let far = VirtioNetHdr {
            flags: 1,
            csum_start: 60000,
            csum_offset: 16,
            ..Default::default()
        };
        assert!(split_into(&far, &mut tcp4(1, 0x10, &[1; 3]), 0, &mut out).is_err());
        assert!(out.is_empty());
        // The in-place split refuses the same inputs without calling back.
        let mut calls = 0;
        for (hdr, mut pkt) in [
            (zero, tcp4(1, 0x10, &[1; 300])),
            (far, tcp4(1, 0x10, &[1; 3])),
            (tso4, short),
            (tso4, tcp6(1, 0x10, &[1; 300])),
        ] {
            assert!(split_in_place(&hdr, &mut pkt, &mut |_| calls += 1).is_err());
        }
        assert_eq!(calls, 0);
    }

    /// Splitting in place gives exactly the packets the copying split gives.
    #[test]
    fn in_place_split_matches_the_copying_split() {
        let tso = |gso_type, l4: u16, gso_size| VirtioNetHdr {
            flags: 1,
            gso_type,
            hdr_len: 0,
            gso_size,
            csum_start: l4,
            csum_offset: if gso_type == 5 { 6 } else { 16 },
        };
        let mut udp = vec![
            0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2, 0, 9, 0, 9, 0,
            0, 0, 0,
        ];
        udp.extend_from_slice(&payload(2500));
        let n = udp.len() as u16;
        write_u16(&mut udp, 2, n);
        write_u16(&mut udp, 24, n - 20);
        let cases = [
            (
                "tso4",
                tso(1, 20, 1400),
                as_partial(tcp4(1000, 0x19, &payload(3000)), 20, 16, 6),
            ),
            (
                "tso4, 64 KiB at MSS 1380",
                tso(1, 20, 1380),
                as_partial(tcp4(5, 0x10, &payload(65_000)), 20, 16, 6),
            ),
            // MSS below the header length: headers overwrite more than one earlier segment.
            (
                "tso4, MSS 24",
                tso(1, 20, 24),
                as_partial(tcp4(9, 0x18, &payload(500)), 20, 16, 6),
            ),
            (
                "tso6",
                tso(4, 40, 1000),
                as_partial(tcp6(7, 0x18, &payload(4000)), 40, 16, 6),
            ),
            ("uso", tso(5, 20, 1000), as_partial(udp.clone(), 20, 6, 17)),
            (
                "exact multiple",
                tso(1, 20, 500),
                as_partial(tcp4(3, 0x10, &payload(1500)), 20, 16, 6),
            ),
            (
                "none, partial checksum",
                VirtioNetHdr {
                    flags: 1,
                    csum_start: 20,
                    csum_offset: 6,
                    ..Default::default()
                },
                as_partial(udp, 20, 6, 17),
            ),
            (
                "none",
                VirtioNetHdr::default(),
                tcp4(1, 0x10, &payload(100)),
            ),
        ];
        for (name, hdr, sup) in cases {
            let mut out = Batch::new(128, 1 << 18);
            let want = split_into(&hdr, &mut sup.clone(), 0, &mut out).unwrap();
            assert_eq!(want.next_segment, None, "{name}");
            let mut pkt = sup.clone();
            let mut got: Vec<Vec<u8>> = Vec::new();
            let n = split_in_place(&hdr, &mut pkt, &mut |p| got.push(p.to_vec())).unwrap();
            assert_eq!((n, got.len()), (want.emitted, want.emitted), "{name}");
            for (i, g) in got.iter().enumerate() {
                assert_eq!(&g[..], out.packet(i), "{name}: segment {i}");
            }
        }
    }
}
