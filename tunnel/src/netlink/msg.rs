//! Raw rtnetlink: message encoding, one request/reply exchange over a NETLINK_ROUTE socket,
//! and attribute parsing. No unsafe: the socket is a `socket2::Socket` (an unconnected
//! netlink socket sends to the kernel), replies are parsed through checked slicing.

use std::io::{self, Read};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;

pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_ACK: u16 = 0x04;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_DUMP: u16 = 0x300;

pub const IFLA_IFNAME: u16 = 3;
pub const IFLA_MTU: u16 = 4;
pub const IFA_ADDRESS: u16 = 1;
pub const IFA_LOCAL: u16 = 2;
pub const RTA_DST: u16 = 1;
pub const RTA_OIF: u16 = 4;
pub const RTA_METRICS: u16 = 8;
pub const RTA_MULTIPATH: u16 = 9;
pub const RTA_TABLE: u16 = 15;
pub const RTAX_MTU: u16 = 2;

pub const RT_TABLE_MAIN: u32 = 254;
pub const RTPROT_BOOT: u8 = 3;
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_LINK: u8 = 253;
pub const RT_SCOPE_NOWHERE: u8 = 255;
pub const RTN_UNICAST: u8 = 1;

const NLMSG_HDRLEN: usize = 16;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds one request: header, fixed family struct, attributes.
#[derive(Debug)]
pub struct Request {
    buf: Vec<u8>,
}

impl Request {
    pub fn new(msg_type: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: kernel assigns
        Self { buf }
    }

    /// `struct ifinfomsg`.
    pub fn ifinfo(mut self, index: u32, flags: u32, change: u32) -> Self {
        self.buf.extend_from_slice(&[0, 0, 0, 0]); // family, pad, type
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
        self
    }

    /// `struct ifaddrmsg`.
    pub fn ifaddr(mut self, family: u8, prefix: u8, index: u32) -> Self {
        self.buf
            .extend_from_slice(&[family, prefix, 0, RT_SCOPE_UNIVERSE]);
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self
    }

    /// `struct rtmsg`.
    pub fn rtmsg(
        mut self,
        family: u8,
        dst_len: u8,
        table: u8,
        protocol: u8,
        scope: u8,
        kind: u8,
    ) -> Self {
        self.buf
            .extend_from_slice(&[family, dst_len, 0, 0, table, protocol, scope, kind]);
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self
    }

    pub fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub fn attr_u32(self, kind: u16, v: u32) -> Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(self, kind: u16, s: &str) -> Self {
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        self.attr(kind, &b)
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One reply message: its type and the payload after the netlink header.
#[derive(Debug, Clone)]
pub struct Reply {
    pub msg_type: u16,
    pub payload: Vec<u8>,
}

/// Sends `req` and collects the replies: until the ACK (error 0) for non-dump requests,
/// until NLMSG_DONE for dumps. A negative error code becomes `Err(errno)`.
pub fn exchange(req: Request) -> io::Result<Vec<Reply>> {
    let sock = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(libc::NETLINK_ROUTE)),
    )?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let msg = req.finish();
    let dump = u16::from_ne_bytes([msg[6], msg[7]]) & NLM_F_DUMP == NLM_F_DUMP;
    let acked = u16::from_ne_bytes([msg[6], msg[7]]) & NLM_F_ACK != 0;
    sock.send(&msg)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = (&sock).read(&mut buf)?;
        let mut rest = &buf[..n];
        while rest.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let msg_type = u16::from_ne_bytes([rest[4], rest[5]]);
            if len < NLMSG_HDRLEN || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated netlink message",
                ));
            }
            let payload = &rest[NLMSG_HDRLEN..len];
            match msg_type {
                NLMSG_ERROR => {
                    let code = payload
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    return Ok(out);
                }
                NLMSG_DONE => return Ok(out),
                _ => out.push(Reply {
                    msg_type,
                    payload: payload.to_vec(),
                }),
            }
            rest = rest.get(align4(len)..).unwrap_or(&[]);
        }
        if !dump && !acked && !out.is_empty() {
            return Ok(out);
        }
    }
}

/// Iterates `(type, data)` over netlink attributes (nested flag bits masked off).
pub fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let data = &b[4..len];
        b = b.get(align4(len)..).unwrap_or(&[]);
        Some((kind, data))
    })
}

pub fn attr_u32(data: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout_matches_iproute2() {
        // What `ip link set dev lo mtu 1500` sends, minus sequence/flags details.
        let m = Request::new(RTM_NEWLINK, NLM_F_ACK)
            .ifinfo(1, 0, 0)
            .attr_u32(IFLA_MTU, 1500)
            .finish();
        assert_eq!(m.len(), 16 + 16 + 8);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWLINK);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(&m[32..36], &[8, 0, 4, 0]);
        // Strings are NUL-terminated and padded to 4 bytes.
        let m = Request::new(RTM_GETLINK, 0)
            .ifinfo(0, 0, 0)
            .attr_str(IFLA_IFNAME, "wg0")
            .finish();
        assert_eq!(&m[32..], &[8, 0, 3, 0, b'w', b'g', b'0', 0]);
    }

    #[test]
    fn attribute_parsing_is_bounded() {
        let data = [8, 0, 4, 0, 0xdc, 5, 0, 0, 5, 0, 1, 0, 9, 0, 0, 0, 200, 0];
        let v: Vec<(u16, &[u8])> = attrs(&data).collect();
        assert_eq!(v, vec![(4, &[0xdc, 5, 0, 0][..]), (1, &[9][..])]);
        assert_eq!(attr_u32(v[0].1), Some(1500));
        assert_eq!(attr_u32(v[1].1), None);
        assert_eq!(attrs(&[3, 0, 1, 0]).count(), 0, "length below the header");
    }
}
