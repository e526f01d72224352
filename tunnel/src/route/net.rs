//! An IP prefix such as `10.8.0.0/24` or `fd00::/64`, parsed strictly.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address with a prefix length. Host bits may be set (wg-quick's `Address = 10.8.0.1/24`);
/// [`IpNet::network`] clears them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    #[error("'{0}' is not an IP address")]
    Address(String),
    #[error("'{0}' has an invalid prefix length (IPv4 allows 0-32, IPv6 0-128)")]
    Prefix(String),
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, IpNetError> {
        if prefix > max_prefix(&addr) {
            return Err(IpNetError::Prefix(format!("{addr}/{prefix}")));
        }
        Ok(Self { addr, prefix })
    }

    /// A single host: /32 or /128.
    pub fn host(addr: IpAddr) -> Self {
        Self {
            prefix: max_prefix(&addr),
            addr,
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The same prefix with host bits cleared (`10.8.0.1/24` → `10.8.0.0/24`).
    pub fn network(&self) -> Self {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Self {
            addr,
            prefix: self.prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network().addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                IpNet {
                    addr: ip,
                    prefix: self.prefix,
                }
                .network()
                .addr
                    == self.network().addr
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    /// `addr/prefix`, or a bare address meaning a single host (as `wg` accepts).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| IpNetError::Address(s.to_owned()))?;
        let prefix = match prefix_text {
            None => max_prefix(&addr),
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .map_err(|_| IpNetError::Prefix(s.to_owned()))?,
            Some(_) => return Err(IpNetError::Prefix(s.to_owned())),
        };
        IpNet::new(addr, prefix).map_err(|_| IpNetError::Prefix(s.to_owned()))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let n: IpNet = "10.8.0.1/24".parse().unwrap();
        assert_eq!(n.to_string(), "10.8.0.1/24");
        assert_eq!(n.network().to_string(), "10.8.0.0/24");
        assert!(n.contains("10.8.0.77".parse().unwrap()));
        assert!(!n.contains("10.8.1.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        assert_eq!("fd00::1".parse::<IpNet>().unwrap().prefix(), 128);
        assert_eq!("0.0.0.0/0".parse::<IpNet>().unwrap().network().prefix(), 0);
        assert!("::/0"
            .parse::<IpNet>()
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "10.8.0.0/33",
            "10.8.0/24",
            "fd00::/129",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "x/8",
            "1.2.3.4/+8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
