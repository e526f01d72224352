//! IPv4/IPv6 header view: just what routing needs (version, addresses, length), and the
//! transport protocol.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::WireError;

const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;

/// IP protocol numbers (IPv4's protocol, IPv6's next header).
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// A packet that starts with a complete IPv4 or IPv6 header.
#[derive(Debug, Clone, Copy)]
pub struct IpView<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> IpView<T> {
    /// Checks the version nibble and that the fixed header fits; the payload may be cut
    /// short (the kernel never hands us that, but peers might).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        let first = *b.first().ok_or(WireError::Truncated)?;
        match first >> 4 {
            4 if b.len() >= IPV4_MIN_HEADER => {
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < IPV4_MIN_HEADER || ihl > b.len() {
                    return Err(WireError::BadLength);
                }
                Ok(Self { buf })
            }
            6 if b.len() >= IPV6_HEADER => Ok(Self { buf }),
            4 | 6 => Err(WireError::Truncated),
            _ => Err(WireError::UnknownType),
        }
    }

    pub fn version(&self) -> u8 {
        self.buf.as_ref()[0] >> 4
    }

    pub fn source(&self) -> IpAddr {
        let b = self.buf.as_ref();
        if self.version() == 4 {
            IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]))
        } else {
            IpAddr::V6(Ipv6Addr::from(array16(&b[8..24])))
        }
    }

    pub fn destination(&self) -> IpAddr {
        let b = self.buf.as_ref();
        if self.version() == 4 {
            IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19]))
        } else {
            IpAddr::V6(Ipv6Addr::from(array16(&b[24..40])))
        }
    }

    /// The transport protocol: IPv4's protocol field, IPv6's next header (an extension
    /// header's number where one comes first).
    pub fn protocol(&self) -> u8 {
        let b = self.buf.as_ref();
        if self.version() == 4 {
            b[9]
        } else {
            b[6]
        }
    }

    /// The length the header claims for the whole packet.
    pub fn total_len(&self) -> usize {
        let b = self.buf.as_ref();
        if self.version() == 4 {
            usize::from(u16::from_be_bytes([b[2], b[3]]))
        } else {
            IPV6_HEADER + usize::from(u16::from_be_bytes([b[4], b[5]]))
        }
    }
}

fn array16(s: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(s);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    // ping 10.8.0.2 from 10.8.0.1 (ICMP echo, 84 bytes), header + a little payload.
    const V4: [u8; 24] = [
        0x45, 0x00, 0x00, 0x54, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x0a, 0x5d, 10, 8, 0, 1, 10, 8,
        0, 2, 0x08, 0x00, 0xf7, 0xff,
    ];

    #[test]
    fn ipv4_fields() {
        let v = IpView::new_checked(&V4[..]).unwrap();
        assert_eq!(v.version(), 4);
        assert_eq!(v.source(), IpAddr::from([10, 8, 0, 1]));
        assert_eq!(v.destination(), IpAddr::from([10, 8, 0, 2]));
        assert_eq!(v.total_len(), 84);
        assert_eq!(v.protocol(), 1);
    }

    #[test]
    fn ipv6_fields() {
        let mut p = [0u8; 48];
        p[0] = 0x60;
        p[5] = 8;
        p[6] = PROTO_TCP;
        p[8..24].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        let v = IpView::new_checked(&p[..]).unwrap();
        assert_eq!(v.destination(), "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(v.total_len(), 48);
        assert_eq!(v.protocol(), PROTO_TCP);
    }

    #[test]
    fn impossible_lengths() {
        assert_eq!(
            IpView::new_checked(&[][..]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            IpView::new_checked(&V4[..19]).unwrap_err(),
            WireError::Truncated
        );
        let mut bad_ihl = V4;
        bad_ihl[0] = 0x4f; // IHL 60 > 24 bytes
        assert_eq!(
            IpView::new_checked(&bad_ihl[..]).unwrap_err(),
            WireError::BadLength
        );
        bad_ihl[0] = 0x44; // IHL 16 < 20
        assert_eq!(
            IpView::new_checked(&bad_ihl[..]).unwrap_err(),
            WireError::BadLength
        );
        assert_eq!(
            IpView::new_checked(&[0x60; 39][..]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            IpView::new_checked(&[0x50; 40][..]).unwrap_err(),
            WireError::UnknownType
        );
    }
}
