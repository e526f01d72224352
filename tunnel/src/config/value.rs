//! Single values of a wg-quick file: ports, MTU, endpoints, host names, tables, marks.
//!
//! Each function takes the trimmed value text and returns the typed value or the
//! [`ConfigErrorKind`] that the parser attaches a `file:line` to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use super::error::{shown, ConfigErrorKind};
use super::model::Endpoint;
use crate::route::{IpNet, IpNetError};

/// Smallest MTU wg-quick accepts (IPv4's minimum datagram); IPv6 needs [`MIN_MTU_IPV6`].
pub const MIN_MTU: u32 = 576;
pub const MIN_MTU_IPV6: u32 = 1280;
pub const MAX_MTU: u32 = 65535;

/// An unsigned decimal made only of ASCII digits (no sign, no spaces), at most `max`.
fn decimal(v: &str, max: u64) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().filter(|n| *n <= max)
}

fn bad_value(key: &'static str, v: &str, expected: &'static str) -> ConfigErrorKind {
    ConfigErrorKind::BadValue {
        key,
        value: shown(v),
        expected,
    }
}

/// `ListenPort`: 0-65535 (0 picks a random port).
pub fn listen_port(v: &str) -> Result<u16, ConfigErrorKind> {
    decimal(v, u64::from(u16::MAX))
        .map(|n| n as u16)
        .ok_or_else(|| ConfigErrorKind::BadPort {
            key: "ListenPort",
            value: shown(v),
            range: "0-65535",
        })
}

/// `MTU`: 576-65535. The IPv6 minimum is checked once all addresses are known.
pub fn mtu(v: &str) -> Result<u32, ConfigErrorKind> {
    let bad = |reason: String| ConfigErrorKind::BadMtu {
        value: shown(v),
        reason,
    };
    let n = decimal(v, u64::MAX).ok_or_else(|| bad("not a number".into()))?;
    if n < u64::from(MIN_MTU) || n > u64::from(MAX_MTU) {
        return Err(bad(format!("must be between {MIN_MTU} and {MAX_MTU}")));
    }
    Ok(n as u32)
}

/// `PersistentKeepalive`: `off` or 0-65535 seconds.
pub fn keepalive(v: &str) -> Result<Option<u16>, ConfigErrorKind> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    decimal(v, u64::from(u16::MAX))
        .map(|n| Some(n as u16))
        .ok_or_else(|| bad_value("PersistentKeepalive", v, "`off` or 0-65535 seconds"))
}

/// `FwMark`: `off`, a decimal or a `0x` hexadecimal 32-bit number.
pub fn fwmark(v: &str) -> Result<Option<u32>, ConfigErrorKind> {
    const EXPECTED: &str = "`off`, or a 32-bit number in decimal or 0x hexadecimal";
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex)
            if !hex.is_empty() && hex.len() <= 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            u32::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None => decimal(v, u64::from(u32::MAX)).map(|n| n as u32),
    };
    n.map(Some).ok_or_else(|| bad_value("FwMark", v, EXPECTED))
}

/// `Table`: `off`, `auto`, a number 1..2^32-1, or a name from `/etc/iproute2/rt_tables`.
/// Returned in the form the model stores (see `InterfaceConfig::table`).
pub fn table(v: &str) -> Result<String, ConfigErrorKind> {
    const EXPECTED: &str =
        "`off`, `auto`, a table number 1-4294967295 or a table name of [A-Za-z0-9_-]";
    if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("auto") {
        return Ok(v.to_ascii_lowercase());
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return match decimal(v, u64::from(u32::MAX)) {
            Some(n) if n > 0 => Ok(n.to_string()),
            _ => Err(bad_value("Table", v, EXPECTED)),
        };
    }
    if v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Ok(v.to_owned());
    }
    Err(bad_value("Table", v, EXPECTED))
}

/// `SaveConfig`: `true` or `false` (any case, as wg-quick's `read_bool`).
pub fn boolean(key: &'static str, v: &str) -> Result<bool, ConfigErrorKind> {
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(bad_value(key, v, "`true` or `false`"))
    }
}

/// One entry of `Address` or `AllowedIPs`: `addr/prefix`, or a bare address (one host).
pub fn ip_net(key: &'static str, v: &str) -> Result<IpNet, ConfigErrorKind> {
    IpNet::from_str(v).map_err(|e| ConfigErrorKind::BadCidr {
        key,
        value: shown(v),
        reason: match e {
            IpNetError::Address(_) => "not an IP address",
            IpNetError::Prefix(_) => {
                "the prefix length must be a number, 0-32 for IPv4 and 0-128 for IPv6"
            }
        },
    })
}

/// What one `DNS` entry is. wg-quick treats anything that is not an IP address as a
/// search domain; entries that look like a mistyped address are refused instead.
pub enum DnsEntry {
    Server(IpAddr),
    Search(String),
}

pub fn dns_entry(v: &str) -> Result<DnsEntry, ConfigErrorKind> {
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(DnsEntry::Server(ip));
    }
    if v.contains(':') || v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad_value(
            "DNS",
            v,
            "an IPv4 or IPv6 address, or a search domain",
        ));
    }
    host_name(v).map_err(|_| bad_value("DNS", v, "an IPv4 or IPv6 address, or a search domain"))?;
    Ok(DnsEntry::Search(v.to_owned()))
}

/// Checks a DNS host name (RFC 1123 labels: letters, digits, inner hyphens; at most 63
/// characters a label and 253 in all; one trailing dot allowed).
pub fn host_name(h: &str) -> Result<(), &'static str> {
    let name = h.strip_suffix('.').unwrap_or(h);
    if name.is_empty() || name.len() > 253 {
        return Err("a host name has 1 to 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("a host name cannot have an empty label (`..`)");
        }
        if label.len() > 63 {
            return Err("a host name label has at most 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("a host name has only letters, digits, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a host name label cannot start or end with '-'");
        }
    }
    // `1.2.3.256` or `10.1` are mistyped addresses, not names (the last label of a real
    // name is never all digits).
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not a valid IPv4 address");
    }
    Ok(())
}

fn endpoint_port(whole: &str, p: &str) -> Result<u16, ConfigErrorKind> {
    match decimal(p, u64::from(u16::MAX)) {
        Some(n) if n > 0 => Ok(n as u16),
        _ => Err(ConfigErrorKind::BadPort {
            key: "Endpoint",
            value: shown(whole),
            range: "1-65535",
        }),
    }
}

/// `Endpoint`: `1.2.3.4:51820`, `[fd00::1]:51820` or `host.example:51820`. Host names are
/// checked for form only; [`Endpoint::resolve`] looks them up when the tunnel starts.
pub fn endpoint(v: &str) -> Result<Endpoint, ConfigErrorKind> {
    let bad = |reason: &str| ConfigErrorKind::BadEndpoint {
        value: shown(v),
        reason: reason.to_owned(),
    };
    if let Some(rest) = v.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("expected `[IPv6 address]:port`"))?;
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| bad("the part in brackets is not an IPv6 address"))?;
        let port = endpoint_port(v, port)?;
        return Ok(Endpoint::Addr(SocketAddr::new(IpAddr::V6(ip), port)));
    }
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| bad("no port (expected HOST:PORT or [IPv6]:PORT)"))?;
    if host.contains(':') {
        return Err(bad("an IPv6 address must be in brackets: [address]:port"));
    }
    if host.is_empty() {
        return Err(bad("no host before the port"));
    }
    let port = endpoint_port(v, port)?;
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Endpoint::Addr(SocketAddr::new(IpAddr::V4(ip), port)));
    }
    host_name(host).map_err(bad)?;
    Ok(Endpoint::Host(host.to_owned(), port))
}

impl FromStr for Endpoint {
    type Err = ConfigErrorKind;

    /// The same rules as the `Endpoint =` line of a wg-quick file.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        endpoint(s.trim())
    }
}
