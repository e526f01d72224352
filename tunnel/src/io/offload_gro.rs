//! TUN offload, write side: plans which packets of a batch coalesce into one TCP (or, with
//! USO, UDP) super-packet (port of wireguard-go's `tun/offload_linux.go` `handleGRO`).
//!
//! Hot path, pure (no syscalls, no locks). [`GroTable`] is reused across batches: its vectors
//! grow to the largest batch once and are only cleared afterwards (no allocation in steady
//! state). The TUN writer then emits each [`Output`] with one `writev`:
//! `[virtio header + fixed-up headers]` from [`GroTable::header`], followed by the payloads
//! of the members straight out of the batch arena (no payload copy).
//!
//! Rules (as the kernel's TCP GRO and wireguard-go): same 4-tuple, same ACK number, same TCP
//! options, same IP TOS/TTL/DF (IPv6: traffic class, flow label, hop limit); the sequence
//! number continues the previous member; every member but the last has the first member's
//! payload size; SYN/FIN/RST/URG/ECE/CWR packets and pure ACKs are never coalesced; PSH ends
//! a super-packet; at most 64 segments and 64 KiB. UDP (only when the TUN accepted USO):
//! same 4-tuple and IP fields, equal payload sizes but the last. Members' transport
//! checksums are not verified: every packet here has just passed its Poly1305 tag, so it is
//! exactly what the peer's stack sent, and the kernel's own WireGuard marks decrypted packets
//! `CHECKSUM_UNNECESSARY` at every level for the same reason (`receive.c`,
//! `wg_packet_consume_data_done`). Verifying would be one more pass over every byte (2 % of
//! the CPU in a one-stream profile). A flow's packets that cannot be appended close its open super-packet, so
//! per-flow order is kept.

use super::batch::Batch;
use super::offload::{
    checksum, checksum_fold, pseudo_header_nofold, read_u16, read_u32, write_u16, VirtioNetHdr,
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4, VNET_HDR_LEN,
};
use crate::wire::ip::{PROTO_TCP, PROTO_UDP};

/// Room [`GroTable::header`] needs: virtio header + IPv6 (40) + TCP with options (60).
pub const MAX_GRO_HEADER: usize = VNET_HDR_LEN + 40 + 60;
/// Most segments in one coalesced packet.
pub const MAX_GRO_SEGMENTS: u16 = 64;

const NONE: u32 = u32::MAX;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const TCP_ECE: u8 = 0x40;
const TCP_CWR: u8 = 0x80;

/// One packet to write: a single batch entry, or several coalesced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Batch index of the first member (whose headers the super-packet carries).
    pub head: u32,
    last: u32,
    /// Members, 1 = write the packet as is.
    pub segments: u16,
    payload_total: u32,
    gso_size: u16,
    ip_hdr_len: u16,
    l4_hdr_len: u16,
    next_seq: u32,
    v6: bool,
    udp: bool,
    psh: bool,
    closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    v6: bool,
    udp: bool,
    src: [u8; 16],
    dst: [u8; 16],
    ports: [u8; 4],
}

/// What one TCP or UDP packet looks like, for the coalescing checks.
#[derive(Debug, Clone, Copy)]
struct L4Info {
    key: FlowKey,
    ip_hdr_len: usize,
    l4_hdr_len: usize,
    seq: u32,
    flags: u8,
    payload: usize,
    /// May start or join a super-packet at all.
    candidate: bool,
}

#[derive(Debug, Default)]
pub struct GroTable {
    flows: Vec<(FlowKey, u32)>,
    outputs: Vec<Output>,
    next: Vec<u32>,
}

impl GroTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Groups the packets of `batch` into outputs, coalescing TCP if `tcp` and UDP if `udp`
    /// (both false: every packet is its own output, the plain path).
    pub fn plan(&mut self, batch: &Batch, tcp: bool, udp: bool) {
        self.flows.clear();
        self.outputs.clear();
        self.next.clear();
        self.next.resize(batch.len(), NONE);
        for i in 0..batch.len() {
            let pkt = batch.packet(i);
            let info = if tcp || udp {
                l4_info(pkt).filter(|i| if i.key.udp { udp } else { tcp })
            } else {
                None
            };
            let Some(info) = info else {
                self.outputs.push(single(i as u32));
                continue;
            };
            let flow = self.flows.iter().rposition(|(k, _)| *k == info.key);
            if let Some(f) = flow {
                let o = self.flows[f].1 as usize;
                if self.try_append(o, batch, i, &info) {
                    continue;
                }
                self.outputs[o].closed = true;
            }
            let out = Output {
                head: i as u32,
                last: i as u32,
                segments: 1,
                payload_total: info.payload as u32,
                gso_size: info.payload as u16,
                ip_hdr_len: info.ip_hdr_len as u16,
                l4_hdr_len: info.l4_hdr_len as u16,
                next_seq: info.seq.wrapping_add(info.payload as u32),
                v6: info.key.v6,
                udp: info.key.udp,
                psh: info.flags & TCP_PSH != 0,
                closed: !info.candidate || info.flags & TCP_PSH != 0,
            };
            let idx = self.outputs.len() as u32;
            self.outputs.push(out);
            match flow {
                Some(f) => self.flows[f].1 = idx,
                None => self.flows.push((info.key, idx)),
            }
        }
    }

    fn try_append(&mut self, o: usize, batch: &Batch, i: usize, info: &L4Info) -> bool {
        let out = self.outputs[o];
        if out.closed || !info.candidate || out.segments >= MAX_GRO_SEGMENTS {
            return false;
        }
        if info.payload > usize::from(out.gso_size) || (!out.udp && info.seq != out.next_seq) {
            return false;
        }
        if info.ip_hdr_len != usize::from(out.ip_hdr_len)
            || info.l4_hdr_len != usize::from(out.l4_hdr_len)
        {
            return false;
        }
        let hdr_len = info.ip_hdr_len + info.l4_hdr_len;
        let total = hdr_len + out.payload_total as usize + info.payload;
        let limit = if out.v6 { 65535 + 40 } else { 65535 };
        if total > limit {
            return false;
        }
        let head = batch.packet(out.head as usize);
        let pkt = batch.packet(i);
        if !ip_headers_match(head, pkt, out.v6) {
            return false;
        }
        let l4 = info.ip_hdr_len;
        // TCP: same ACK number, window is allowed to differ; options must be identical.
        if !out.udp
            && (head.get(l4 + 8..l4 + 12) != pkt.get(l4 + 8..l4 + 12)
                || head.get(l4 + 20..hdr_len) != pkt.get(l4 + 20..hdr_len))
        {
            return false;
        }
        let out = &mut self.outputs[o];
        self.next[out.last as usize] = i as u32;
        out.last = i as u32;
        out.segments += 1;
        out.payload_total += info.payload as u32;
        out.next_seq = info.seq.wrapping_add(info.payload as u32);
        if info.flags & TCP_PSH != 0 {
            out.psh = true;
            out.closed = true;
        }
        if info.payload < usize::from(out.gso_size) {
            out.closed = true;
        }
        true
    }

    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// Batch indices of `out`'s members, head first.
    pub fn members(&self, out: &Output) -> Members<'_> {
        Members {
            next: &self.next,
            at: out.head,
        }
    }

    /// Writes the virtio header (and for a coalesced output the head's IP/TCP/UDP headers
    /// with lengths, PSH and the partial checksum fixed up) into `buf`; returns its length. The
    /// packet on the wire is `buf[..n]` followed by [`GroTable::payload`] of every member
    /// (or, for a single packet, the whole packet).
    pub fn header(&self, out: &Output, batch: &Batch, buf: &mut [u8; MAX_GRO_HEADER]) -> usize {
        if out.segments <= 1 {
            buf[..VNET_HDR_LEN].copy_from_slice(&VirtioNetHdr::default().encode());
            return VNET_HDR_LEN;
        }
        let l4 = usize::from(out.ip_hdr_len);
        let hdr_len = l4 + usize::from(out.l4_hdr_len);
        let head = batch.packet(out.head as usize);
        let Some(src) = head.get(..hdr_len) else {
            buf[..VNET_HDR_LEN].copy_from_slice(&VirtioNetHdr::default().encode());
            return VNET_HDR_LEN;
        };
        let vnet = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: match (out.udp, out.v6) {
                (true, _) => VIRTIO_NET_HDR_GSO_UDP_L4,
                (false, true) => VIRTIO_NET_HDR_GSO_TCPV6,
                (false, false) => VIRTIO_NET_HDR_GSO_TCPV4,
            },
            hdr_len: hdr_len as u16,
            gso_size: out.gso_size,
            csum_start: l4 as u16,
            csum_offset: if out.udp { 6 } else { 16 },
        };
        buf[..VNET_HDR_LEN].copy_from_slice(&vnet.encode());
        let h = &mut buf[VNET_HDR_LEN..VNET_HDR_LEN + hdr_len];
        h.copy_from_slice(src);
        let l4_len = usize::from(out.l4_hdr_len) + out.payload_total as usize;
        let (saddr, daddr): (&[u8], &[u8]) = if out.v6 {
            write_u16(h, 4, l4_len as u16);
            (&src[8..24], &src[24..40])
        } else {
            write_u16(h, 2, (l4 + l4_len) as u16);
            write_u16(h, 10, 0);
            let c = checksum(&h[..l4], 0);
            write_u16(h, 10, c);
            (&src[12..16], &src[16..20])
        };
        let (proto, csum_at) = if out.udp {
            write_u16(h, l4 + 4, l4_len as u16);
            (PROTO_UDP, l4 + 6)
        } else {
            if out.psh {
                h[l4 + 13] |= TCP_PSH;
            }
            (PROTO_TCP, l4 + 16)
        };
        // CHECKSUM_PARTIAL: the field holds the folded, non-inverted pseudo-header sum.
        let partial = checksum_fold(pseudo_header_nofold(saddr, daddr, proto, l4_len as u32));
        write_u16(h, csum_at, partial);
        VNET_HDR_LEN + hdr_len
    }

    /// The bytes of member `i` that follow [`GroTable::header`]: the payload for a
    /// coalesced output, the whole packet for a single one.
    pub fn payload<'b>(&self, out: &Output, batch: &'b Batch, i: usize) -> &'b [u8] {
        let pkt = batch.packet(i);
        if out.segments <= 1 {
            return pkt;
        }
        let hdr_len = usize::from(out.ip_hdr_len) + usize::from(out.l4_hdr_len);
        pkt.get(hdr_len..).unwrap_or(&[])
    }
}

#[derive(Debug)]
pub struct Members<'a> {
    next: &'a [u32],
    at: u32,
}

impl Iterator for Members<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.at == NONE {
            return None;
        }
        let i = self.at as usize;
        self.at = self.next.get(i).copied().unwrap_or(NONE);
        Some(i)
    }
}

fn single(i: u32) -> Output {
    Output {
        head: i,
        last: i,
        segments: 1,
        payload_total: 0,
        gso_size: 0,
        ip_hdr_len: 0,
        l4_hdr_len: 0,
        next_seq: 0,
        v6: false,
        udp: false,
        psh: false,
        closed: true,
    }
}

fn ip_headers_match(a: &[u8], b: &[u8], v6: bool) -> bool {
    if v6 {
        // Version, traffic class, flow label; hop limit.
        a.get(..4) == b.get(..4) && a.get(7) == b.get(7)
    } else {
        // TOS, DF/MF bits, TTL.
        a.get(1) == b.get(1)
            && a.get(6).map(|f| f & 0xe0) == b.get(6).map(|f| f & 0xe0)
            && a.get(8) == b.get(8)
    }
}

/// Parses an IPv4 (no options, not fragmented) or IPv6 (no extension headers) TCP or UDP
/// packet whose lengths are consistent; `None` for anything else.
fn l4_info(p: &[u8]) -> Option<L4Info> {
    let mut key = FlowKey {
        v6: false,
        udp: false,
        src: [0; 16],
        dst: [0; 16],
        ports: [0; 4],
    };
    let (ip_hdr_len, proto) = match p.first()? >> 4 {
        4 => {
            if p[0] & 0x0f != 5 || usize::from(read_u16(p, 2)) != p.len() {
                return None;
            }
            // MF set or a fragment offset: not a whole segment.
            if read_u16(p, 6) & 0x3fff != 0 {
                return None;
            }
            key.src[..4].copy_from_slice(p.get(12..16)?);
            key.dst[..4].copy_from_slice(p.get(16..20)?);
            (20, *p.get(9)?)
        }
        6 => {
            if usize::from(read_u16(p, 4)) + 40 != p.len() {
                return None;
            }
            key.v6 = true;
            key.src.copy_from_slice(p.get(8..24)?);
            key.dst.copy_from_slice(p.get(24..40)?);
            (40, *p.get(6)?)
        }
        _ => return None,
    };
    let l4 = p.get(ip_hdr_len..)?;
    key.ports.copy_from_slice(l4.get(..4)?);
    if proto == PROTO_UDP {
        key.udp = true;
        let payload = l4.len().checked_sub(8)?;
        if usize::from(read_u16(l4, 4)) != l4.len() {
            return None;
        }
        let candidate = payload > 0;
        return Some(L4Info {
            key,
            ip_hdr_len,
            l4_hdr_len: 8,
            seq: 0,
            flags: 0,
            payload,
            candidate,
        });
    }
    if proto != PROTO_TCP {
        return None;
    }
    let tcp_hdr_len = usize::from(*l4.get(12)? >> 4) * 4;
    if tcp_hdr_len < 20 || l4.len() < tcp_hdr_len {
        return None;
    }
    let flags = l4[13];
    let payload = l4.len() - tcp_hdr_len;
    let candidate = flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_URG | TCP_ECE | TCP_CWR) == 0
        && flags & TCP_ACK != 0
        && payload > 0
        && payload <= usize::from(u16::MAX);
    Some(L4Info {
        key,
        ip_hdr_len,
        l4_hdr_len: tcp_hdr_len,
        seq: read_u32(l4, 4),
        flags,
        payload,
        candidate,
    })
}

#[cfg(test)]
mod tests {
    use super::super::batch::NO_ADDR;
    use super::super::offload::tests::{tcp4, tcp6};
    use super::super::offload::{split_into, write_u16, VirtioNetHdr};
    use super::*;

    fn with_id(mut p: Vec<u8>, id: u16) -> Vec<u8> {
        write_u16(&mut p, 4, id);
        write_u16(&mut p, 10, 0);
        let c = checksum(&p[..20], 0);
        write_u16(&mut p, 10, c);
        p
    }

    fn batch_of(pkts: &[Vec<u8>]) -> Batch {
        let mut b = Batch::new(64, 1 << 18);
        for p in pkts {
            assert!(b.push(p, NO_ADDR));
        }
        b
    }

    /// The bytes one output puts on the TUN: header then members' payloads.
    fn wire(t: &GroTable, o: &Output, b: &Batch) -> Vec<u8> {
        let mut buf = [0u8; MAX_GRO_HEADER];
        let n = t.header(o, b, &mut buf);
        let mut w = buf[..n].to_vec();
        for i in t.members(o) {
            w.extend_from_slice(t.payload(o, b, i));
        }
        w
    }

    fn groups(t: &GroTable) -> Vec<Vec<usize>> {
        t.outputs().iter().map(|o| t.members(o).collect()).collect()
    }

    #[test]
    fn tcp4_coalesces_and_splits_back_to_the_originals() {
        let a = [7u8; 1400];
        let pkts = vec![
            with_id(tcp4(100, 0x10, &a), 1),
            with_id(tcp4(1500, 0x10, &a), 2),
            with_id(tcp4(2900, 0x18, &a[..200]), 3),
        ];
        let b = batch_of(&pkts);
        let mut t = GroTable::new();
        t.plan(&b, true, false);
        assert_eq!(groups(&t), vec![vec![0, 1, 2]]);
        let w = wire(&t, &t.outputs()[0], &b);
        let hdr = VirtioNetHdr::decode(&w).unwrap();
        assert_eq!(
            (hdr.gso_type, hdr.gso_size, hdr.hdr_len, hdr.csum_start),
            (1, 1400, 40, 20)
        );
        assert_eq!(w.len(), 10 + 40 + 3000);
        // What the kernel would do with it (segmentation) gives back the exact packets.
        let mut sup = w[10..].to_vec();
        let mut out = Batch::new(8, 1 << 16);
        assert_eq!(split_into(&hdr, &mut sup, 0, &mut out).unwrap().emitted, 3);
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!(out.packet(i), &p[..], "segment {i}");
        }
        // The plain path writes each packet alone behind a zero virtio header.
        t.plan(&b, false, false);
        assert_eq!(groups(&t), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(
            wire(&t, &t.outputs()[1], &b),
            [&[0u8; 10][..], &pkts[1]].concat()
        );
    }

    #[test]
    fn tcp6_coalesces_with_options() {
        let a = [9u8; 1000];
        let pkts = vec![
            tcp6(1, 0x10, &a),
            tcp6(1001, 0x10, &a),
            tcp6(2001, 0x10, &a),
        ];
        let b = batch_of(&pkts);
        let mut t = GroTable::new();
        t.plan(&b, true, false);
        assert_eq!(groups(&t), vec![vec![0, 1, 2]]);
        let w = wire(&t, &t.outputs()[0], &b);
        let hdr = VirtioNetHdr::decode(&w).unwrap();
        assert_eq!(
            (hdr.gso_type, hdr.gso_size, hdr.hdr_len, hdr.csum_start),
            (4, 1000, 72, 40)
        );
        let mut sup = w[10..].to_vec();
        let mut out = Batch::new(8, 1 << 16);
        split_into(&hdr, &mut sup, 0, &mut out).unwrap();
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!(out.packet(i), &p[..], "segment {i}");
        }
    }

    #[test]
    fn what_must_not_coalesce() {
        let a = [1u8; 500];
        let mut bad_csum = tcp4(1100, 0x10, &a);
        bad_csum[45] ^= 1;
        let mut other_ack = tcp4(600, 0x10, &a);
        write_u16(&mut other_ack, 28, 9);
        let c = {
            // Fix its checksum after changing the ACK number.
            write_u16(&mut other_ack, 36, 0);
            checksum(
                &other_ack[20..],
                pseudo_header_nofold(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, 520),
            )
        };
        write_u16(&mut other_ack, 36, c);
        type Case = (&'static str, Vec<Vec<u8>>, Vec<Vec<usize>>);
        let cases: Vec<Case> = vec![
            (
                "sequence gap",
                vec![tcp4(100, 0x10, &a), tcp4(700, 0x10, &a)],
                vec![vec![0], vec![1]],
            ),
            (
                "bigger after smaller",
                vec![tcp4(100, 0x10, &a[..100]), tcp4(200, 0x10, &a)],
                vec![vec![0], vec![1]],
            ),
            (
                "PSH head",
                vec![tcp4(100, 0x18, &a), tcp4(600, 0x10, &a)],
                vec![vec![0], vec![1]],
            ),
            (
                "SYN",
                vec![tcp4(100, 0x12, &a), tcp4(600, 0x10, &a)],
                vec![vec![0], vec![1]],
            ),
            (
                "pure ACK",
                vec![tcp4(100, 0x10, &[]), tcp4(100, 0x10, &a)],
                vec![vec![0], vec![1]],
            ),
            (
                "other ACK number",
                vec![tcp4(100, 0x10, &a), other_ack],
                vec![vec![0], vec![1]],
            ),
            (
                // Authenticated by Poly1305: checksums are not the tunnel's to judge.
                "bad checksum still coalesces",
                vec![
                    tcp4(100, 0x10, &a),
                    tcp4(600, 0x10, &a),
                    bad_csum,
                    tcp4(1600, 0x10, &a),
                ],
                vec![vec![0, 1, 2, 3]],
            ),
            (
                "not TCP",
                vec![vec![
                    0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                ]],
                vec![vec![0]],
            ),
            (
                "garbage",
                vec![vec![0xff; 3], vec![]],
                vec![vec![0], vec![1]],
            ),
        ];
        let mut t = GroTable::new();
        for (name, pkts, want) in cases {
            let b = batch_of(&pkts);
            t.plan(&b, true, false);
            assert_eq!(groups(&t), want, "{name}");
        }
    }

    /// IPv4/UDP 10.0.0.1:4000 → 10.0.0.2:53 with IP ID `id`, checksums set.
    fn udp4(id: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x0f, 0xa0, 0,
            53, 0, 0, 0, 0,
        ];
        p.extend_from_slice(payload);
        let n = p.len() as u16;
        write_u16(&mut p, 2, n);
        write_u16(&mut p, 24, n - 20);
        let c = checksum(
            &p[20..],
            pseudo_header_nofold(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, u32::from(n - 20)),
        );
        write_u16(&mut p, 26, c);
        with_id(p, id)
    }

    #[test]
    fn udp_coalesces_only_when_asked_and_splits_back() {
        let pkts = vec![
            udp4(1, &[1; 900]),
            udp4(2, &[2; 900]),
            udp4(3, &[3; 900]),
            udp4(4, &[4; 300]),
        ];
        let b = batch_of(&pkts);
        let mut t = GroTable::new();
        t.plan(&b, true, false);
        assert_eq!(groups(&t).len(), 4, "no USO: UDP stays single");
        t.plan(&b, false, true);
        assert_eq!(groups(&t), vec![vec![0, 1, 2, 3]]);
        let w = wire(&t, &t.outputs()[0], &b);
        let hdr = VirtioNetHdr::decode(&w).unwrap();
        assert_eq!(
            (hdr.gso_type, hdr.gso_size, hdr.hdr_len, hdr.csum_offset),
            (5, 900, 28, 6)
        );
        let mut sup = w[10..].to_vec();
        let mut out = Batch::new(8, 1 << 16);
        assert_eq!(split_into(&hdr, &mut sup, 0, &mut out).unwrap().emitted, 4);
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!(out.packet(i), &p[..], "datagram {i}");
        }
        // A bigger datagram after a smaller one ends the run; a bad checksum does not.
        let mut bad = udp4(7, &[7; 900]);
        bad[40] ^= 1;
        let b = batch_of(&[
            udp4(5, &[5; 300]),
            udp4(6, &[6; 900]),
            bad,
            udp4(8, &[8; 900]),
        ]);
        t.plan(&b, false, true);
        assert_eq!(groups(&t), vec![vec![0], vec![1, 2, 3]]);
    }

    #[test]
    fn interleaved_flows_and_limits() {
        let a = [3u8; 1000];
        let mut other = tcp4(5000, 0x10, &a);
        other[21] = 0x41; // source port 40001 → another flow
        write_u16(&mut other, 36, 0);
        let c = checksum(
            &other[20..],
            pseudo_header_nofold(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, 1020),
        );
        write_u16(&mut other, 36, c);
        let b = batch_of(&[
            tcp4(0, 0x10, &a),
            other.clone(),
            tcp4(1000, 0x10, &a),
            tcp4(2000, 0x10, &a),
        ]);
        let mut t = GroTable::new();
        t.plan(&b, true, false);
        assert_eq!(groups(&t), vec![vec![0, 2, 3], vec![1]]);
        // 66 × 1000 bytes: the 64-segment cap splits it.
        let mut b = Batch::new(128, 1 << 18);
        for i in 0..66 {
            b.push(&tcp4(i * 1000, 0x10, &a), NO_ADDR);
        }
        t.plan(&b, true, false);
        let sizes: Vec<u16> = t.outputs().iter().map(|o| o.segments).collect();
        assert_eq!(sizes, vec![64, 2]);
        // 50 × 1400 bytes: 40 + 46 × 1400 = 64440 fits, a 47th would pass 65535.
        let big = [5u8; 1400];
        b.clear();
        for i in 0..50 {
            b.push(&tcp4(i * 1400, 0x10, &big), NO_ADDR);
        }
        t.plan(&b, true, false);
        let sizes: Vec<u16> = t.outputs().iter().map(|o| o.segments).collect();
        assert_eq!(sizes, vec![46, 4]);
    }
}
