//! Reading one `set=1` transaction: bounded line reads, then wireguard-go's per-line rules
//! (`device/uapi.go`), producing a typed [`DeviceUpdate`] or the first error.
//!
//! Everything is checked before anything is applied. After the first bad line the rest of
//! the transaction is still read (not parsed) up to its blank line, within the same limits,
//! so the connection can carry the next request.

use std::io::{self, BufRead, ErrorKind};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use crate::key::{PresharedKey, PrivateKey, PublicKey};
use crate::route::IpNet;
use crate::uapi::model::{AllowedIpChange, DeviceUpdate, PeerUpdate, SetError};

/// Longest accepted line, without its `\n`. Real lines are under 100 bytes.
pub const MAX_LINE_BYTES: usize = 4096;
/// Most lines in one `set` transaction (about 13k peers of five lines each).
pub const MAX_SET_LINES: usize = 65_536;
/// Most bytes in one `set` transaction, newlines included.
pub const MAX_SET_BYTES: usize = 4 << 20;

// Bounded line reading

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// A whole line; the `\n` is consumed and not stored.
    Complete,
    /// End of stream before any byte.
    Eof,
    /// End of stream after some bytes but before `\n`.
    Truncated,
    /// `max` bytes stored and still no `\n`; the rest of the line is still unread.
    TooLong,
}

/// Read one line into `buf` (cleared first), storing at most `max` bytes.
/// Returns the kind and the number of bytes consumed from `reader`.
pub(crate) fn read_line<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<(LineKind, usize)> {
    buf.clear();
    let mut consumed = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            let kind = if consumed == 0 {
                LineKind::Eof
            } else {
                LineKind::Truncated
            };
            return Ok((kind, consumed));
        }
        let room = max - buf.len();
        match available.iter().position(|&b| b == b'\n') {
            Some(i) if i <= room => {
                buf.extend_from_slice(&available[..i]);
                reader.consume(i + 1);
                return Ok((LineKind::Complete, consumed + i + 1));
            }
            _ => {
                let take = available.len().min(room);
                buf.extend_from_slice(&available[..take]);
                reader.consume(take);
                consumed += take;
                if buf.len() == max {
                    return Ok((LineKind::TooLong, consumed));
                }
            }
        }
    }
}

/// Discard the rest of a line, reading at most `budget` bytes.
/// Returns the bytes consumed and whether the `\n` was reached.
fn skip_line<R: BufRead>(reader: &mut R, budget: usize) -> io::Result<(usize, bool)> {
    let mut consumed = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() || consumed >= budget {
            return Ok((consumed, false));
        }
        let window = available.len().min(budget - consumed);
        if let Some(i) = available[..window].iter().position(|&b| b == b'\n') {
            reader.consume(i + 1);
            return Ok((consumed + i + 1, true));
        }
        reader.consume(window);
        consumed += window;
    }
}

// ---------------------------------------------------------------------------------------
// The set transaction

pub(crate) struct SetRead {
    pub(crate) result: Result<DeviceUpdate, SetError>,
    /// The blank line that ends the transaction was read: the next request can follow.
    pub(crate) resynced: bool,
}

pub(crate) fn read_set<R: BufRead>(reader: &mut R) -> io::Result<SetRead> {
    let mut parser = SetParser::default();
    let mut error: Option<SetError> = None;
    let mut line = Vec::with_capacity(128);
    let (mut bytes, mut lines) = (0usize, 0usize);
    loop {
        let (kind, n) = read_line(reader, &mut line, MAX_LINE_BYTES)?;
        bytes += n;
        lines += 1;
        match kind {
            LineKind::Eof | LineKind::Truncated => {
                let e = error.unwrap_or_else(|| {
                    protocol_error("the set transaction ended before its blank line")
                });
                return Ok(SetRead {
                    result: Err(e),
                    resynced: false,
                });
            }
            LineKind::TooLong => {
                error.get_or_insert_with(|| {
                    too_long(format!(
                        "set line {lines} is longer than {MAX_LINE_BYTES} bytes"
                    ))
                });
                let (skipped, found_end) = skip_line(reader, MAX_SET_BYTES.saturating_sub(bytes))?;
                bytes += skipped;
                if !found_end {
                    return Ok(SetRead {
                        result: Err(error_or_too_long(error)),
                        resynced: false,
                    });
                }
            }
            LineKind::Complete if line.is_empty() => {
                let result = match error {
                    Some(e) => Err(e),
                    None => Ok(parser.finish()),
                };
                return Ok(SetRead {
                    result,
                    resynced: true,
                });
            }
            LineKind::Complete => {
                if error.is_none() {
                    if let Err(e) = parser.line(&line) {
                        error = Some(SetError {
                            errno: e.errno,
                            message: format!("set line {lines}: {}", e.message),
                        });
                    }
                }
            }
        }
        if bytes > MAX_SET_BYTES || lines > MAX_SET_LINES {
            let e = too_long(format!(
                "the set transaction exceeds {MAX_SET_LINES} lines or {MAX_SET_BYTES} bytes"
            ));
            return Ok(SetRead {
                result: Err(error.unwrap_or(e)),
                resynced: false,
            });
        }
    }
}

fn error_or_too_long(error: Option<SetError>) -> SetError {
    error.unwrap_or_else(|| too_long("the set transaction is too large"))
}

fn protocol_error(message: impl Into<String>) -> SetError {
    SetError {
        errno: libc::EPROTO,
        message: message.into(),
    }
}

fn too_long(message: impl Into<String>) -> SetError {
    SetError {
        errno: libc::EMSGSIZE,
        message: message.into(),
    }
}

/// Builds a [`DeviceUpdate`] line by line with wireguard-go's rules: device keys come
/// first; `public_key` starts a peer; every later key belongs to that peer.
#[derive(Default)]
struct SetParser {
    update: DeviceUpdate,
    /// After `remove=true` the rest of that peer's lines are checked but have no effect.
    removed: bool,
}

impl SetParser {
    fn finish(self) -> DeviceUpdate {
        self.update
    }

    fn line(&mut self, raw: &[u8]) -> Result<(), SetError> {
        // wireguard-go reads lines with bufio.ScanLines, which drops a trailing '\r'.
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Some(eq) = raw.iter().position(|&b| b == b'=') else {
            return Err(protocol_error("line has no '='"));
        };
        if let Some(bad) = raw.iter().find(|&&b| !b.is_ascii_graphic()) {
            return Err(SetError::invalid(format!(
                "line contains the byte {bad:#04x}"
            )));
        }
        // Only printable ASCII remains, so these conversions cannot fail.
        let key =
            std::str::from_utf8(&raw[..eq]).map_err(|_| SetError::invalid("key is not ASCII"))?;
        let value = std::str::from_utf8(&raw[eq + 1..])
            .map_err(|_| SetError::invalid("value is not ASCII"))?;

        if key == "public_key" {
            let public_key = PublicKey::from_hex(value)
                .map_err(|_| SetError::invalid("public_key is not 64 hex digits"))?;
            self.update.peers.push(PeerUpdate::new(public_key));
            self.removed = false;
            return Ok(());
        }
        let Some(last) = self.update.peers.last_mut() else {
            return device_line(&mut self.update, key, value);
        };
        if self.removed {
            // Validate, then drop: wireguard-go applies these lines to a placeholder peer.
            let mut scratch = PeerUpdate::new(last.public_key);
            return peer_line(&mut scratch, key, value);
        }
        peer_line(last, key, value)?;
        if last.remove {
            *last = PeerUpdate {
                remove: true,
                ..PeerUpdate::new(last.public_key)
            };
            self.removed = true;
        }
        Ok(())
    }
}

fn device_line(update: &mut DeviceUpdate, key: &str, value: &str) -> Result<(), SetError> {
    match key {
        "private_key" => {
            let k = PrivateKey::from_hex(value)
                .map_err(|_| SetError::invalid("private_key is not 64 hex digits"))?;
            update.private_key = Some((!k.is_zero()).then_some(k));
        }
        "listen_port" => update.listen_port = Some(parse_uint(key, value, u16::MAX.into())? as u16),
        "fwmark" => update.fwmark = Some(parse_uint(key, value, u32::MAX.into())? as u32),
        "replace_peers" => update.replace_peers = parse_true(key, value)?,
        _ => {
            return Err(SetError::invalid(format!(
                "invalid UAPI device key {:?}",
                shorten(key)
            )))
        }
    }
    Ok(())
}

fn peer_line(peer: &mut PeerUpdate, key: &str, value: &str) -> Result<(), SetError> {
    match key {
        "remove" => peer.remove = parse_true(key, value)?,
        "update_only" => peer.update_only = parse_true(key, value)?,
        "preshared_key" => {
            let k = PresharedKey::from_hex(value)
                .map_err(|_| SetError::invalid("preshared_key is not 64 hex digits"))?;
            peer.preshared_key = Some((!k.is_zero()).then_some(k));
        }
        "endpoint" => peer.endpoint = Some(parse_endpoint(value)?),
        "persistent_keepalive_interval" => {
            peer.persistent_keepalive = Some(parse_uint(key, value, u16::MAX.into())? as u16);
        }
        "replace_allowed_ips" => {
            parse_true(key, value)?;
            // Everything added to this peer so far in the transaction goes too.
            peer.replace_allowed_ips = true;
            peer.allowed_ips.clear();
        }
        "allowed_ip" => {
            let change = match value.strip_prefix('-') {
                Some(rest) => AllowedIpChange::Remove(parse_prefix(rest)?),
                None => AllowedIpChange::Add(parse_prefix(value)?),
            };
            peer.allowed_ips.push(change);
        }
        "protocol_version" => {
            let version = parse_uint(key, value, u64::from(u32::MAX))?;
            if version != 1 {
                return Err(SetError {
                    errno: libc::EPFNOSUPPORT,
                    message: format!("protocol_version {version} is not supported (only 1)"),
                });
            }
            peer.protocol_version = Some(1);
        }
        _ => {
            return Err(SetError::invalid(format!(
                "invalid UAPI peer key {:?}",
                shorten(key)
            )))
        }
    }
    Ok(())
}

/// Decimal digits only (no sign, no spaces), at most `max`; leading zeros allowed, as
/// Go's `strconv.ParseUint(value, 10, bits)` does.
fn parse_uint(key: &str, value: &str, max: u64) -> Result<u64, SetError> {
    let invalid = || {
        SetError::invalid(format!(
            "{key}: {:?} is not a number from 0 to {max}",
            shorten(value)
        ))
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let digits = value.trim_start_matches('0');
    if digits.len() > 20 {
        return Err(invalid());
    }
    let n = if digits.is_empty() {
        0
    } else {
        digits.parse::<u64>().map_err(|_| invalid())?
    };
    if n > max {
        return Err(invalid());
    }
    Ok(n)
}

fn parse_true(key: &str, value: &str) -> Result<bool, SetError> {
    if value == "true" {
        Ok(true)
    } else {
        Err(SetError::invalid(format!(
            "{key}: only the value \"true\" is allowed, got {:?}",
            shorten(value)
        )))
    }
}

/// `a.b.c.d:port` or `[v6]:port`, with an optional `%scope` (number or interface name).
fn parse_endpoint(value: &str) -> Result<SocketAddr, SetError> {
    let invalid = || {
        SetError::invalid(format!(
            "endpoint {:?} is not IP:port or [IPv6]:port",
            shorten(value)
        ))
    };
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // `wg` prints link-local scopes by interface name (`[fe80::1%eth0]:51820`).
    let (bracketed, port) = value.rsplit_once(':').ok_or_else(invalid)?;
    let inner = bracketed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(invalid)?;
    let (ip, zone) = inner.split_once('%').ok_or_else(invalid)?;
    let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| invalid())?;
    let port = parse_uint("endpoint port", port, u16::MAX.into()).map_err(|_| invalid())? as u16;
    let scope = nix::net::if_::if_nametoindex(zone).map_err(|_| {
        SetError::invalid(format!(
            "endpoint {:?}: no interface named {:?}",
            shorten(value),
            shorten(zone)
        ))
    })?;
    Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)))
}

/// `addr/len` as `netip.ParsePrefix` accepts it; host bits are cleared, as the kernel and
/// wireguard-go store it.
fn parse_prefix(value: &str) -> Result<IpNet, SetError> {
    let invalid = || {
        SetError::invalid(format!(
            "allowed_ip {:?} is not ADDRESS/LENGTH",
            shorten(value)
        ))
    };
    let (addr, len) = value.split_once('/').ok_or_else(invalid)?;
    let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = parse_uint("allowed_ip prefix length", len, max).map_err(|_| invalid())?;
    let net = IpNet::new(addr, len as u8).map_err(|_| invalid())?;
    Ok(net.network())
}

/// Values quoted in error messages are cut, so a 4 KiB line does not flood the log.
fn shorten(value: &str) -> &str {
    let end = value.char_indices().nth(64).map_or(value.len(), |(i, _)| i);
    &value[..end]
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    use crate::uapi::vectors::*;
    fn parse(body: &str) -> Result<DeviceUpdate, SetError> {
        let mut reader = body.as_bytes();
        read_set(&mut reader)
            .expect("in-memory reads cannot fail")
            .result
    }

    #[test]
    fn set_requests_become_typed_updates() {
        let peer = |f: &dyn Fn(&mut PeerUpdate)| {
            let mut p = PeerUpdate::new(pk_a());
            f(&mut p);
            p
        };
        let cases: Vec<(String, DeviceUpdate)> = vec![
            (
                format!("private_key={SK}\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n\n"),
                DeviceUpdate {
                    private_key: Some(Some(PrivateKey([0x11; 32]))),
                    listen_port: Some(51820),
                    fwmark: Some(0),
                    replace_peers: true,
                    peers: vec![],
                },
            ),
            (format!("private_key={ZERO}\nfwmark=4294967295\n\n"), DeviceUpdate {
                private_key: Some(None),
                fwmark: Some(u32::MAX),
                ..DeviceUpdate::default()
            }),
            (
                format!(
                    "public_key={PK_A}\npreshared_key={PSK}\nendpoint=[fd00::1]:51820\n\
                     persistent_keepalive_interval=25\nreplace_allowed_ips=true\n\
                     allowed_ip=10.8.0.0/24\nallowed_ip=fd00::/64\nallowed_ip=-10.9.0.0/16\n\
                     protocol_version=1\n\n"
                ),
                DeviceUpdate {
                    peers: vec![peer(&|p| {
                        p.preshared_key = Some(Some(PresharedKey([0x44; 32])));
                        p.endpoint = Some(addr("[fd00::1]:51820"));
                        p.persistent_keepalive = Some(25);
                        p.replace_allowed_ips = true;
                        p.allowed_ips = vec![
                            AllowedIpChange::Add(net("10.8.0.0/24")),
                            AllowedIpChange::Add(net("fd00::/64")),
                            AllowedIpChange::Remove(net("10.9.0.0/16")),
                        ];
                        p.protocol_version = Some(1);
                    })],
                    ..DeviceUpdate::default()
                },
            ),
            // replace_allowed_ips drops what this transaction added before it; host bits cleared.
            (
                format!("public_key={PK_A}\nallowed_ip=10.1.0.0/16\nreplace_allowed_ips=true\nallowed_ip=10.8.0.5/24\n\n"),
                DeviceUpdate {
                    peers: vec![peer(&|p| {
                        p.replace_allowed_ips = true;
                        p.allowed_ips = vec![AllowedIpChange::Add(net("10.8.0.0/24"))];
                    })],
                    ..DeviceUpdate::default()
                },
            ),
            // remove: earlier and later lines of that peer have no effect; the next peer does.
            (
                format!(
                    "public_key={PK_A}\nendpoint=1.2.3.4:5\nremove=true\nallowed_ip=10.0.0.0/8\n\
                     public_key={PK_B}\nupdate_only=true\npreshared_key={ZERO}\nendpoint=198.18.0.1:51820\n\n"
                ),
                DeviceUpdate {
                    peers: vec![
                        peer(&|p| p.remove = true),
                        PeerUpdate {
                            update_only: true,
                            preshared_key: Some(None),
                            endpoint: Some(addr("198.18.0.1:51820")),
                            ..PeerUpdate::new(pk_b())
                        },
                    ],
                    ..DeviceUpdate::default()
                },
            ),
            // CRLF line ends (bufio.ScanLines accepts them), leading zeros, scoped IPv6.
            (
                format!("listen_port=0051820\r\npublic_key={PK_A}\r\nendpoint=[fe80::1%2]:1\r\n\n"),
                DeviceUpdate {
                    listen_port: Some(51820),
                    peers: vec![peer(&|p| p.endpoint = Some(addr("[fe80::1%2]:1")))],
                    ..DeviceUpdate::default()
                },
            ),
            (format!("public_key={PK_A}\npublic_key={PK_A}\n\n"), DeviceUpdate {
                peers: vec![PeerUpdate::new(pk_a()), PeerUpdate::new(pk_a())],
                ..DeviceUpdate::default()
            }),
            ("\n".to_owned(), DeviceUpdate::default()),
        ];
        for (body, expected) in cases {
            assert_eq!(parse(&body), Ok(expected), "for {body:?}");
        }
    }

    #[test]
    fn loopback_interface_name_resolves_as_endpoint_scope() {
        let update = parse(&format!(
            "public_key={PK_A}\nendpoint=[fe80::1%lo]:51820\n\n"
        ))
        .expect("parses");
        let Some(SocketAddr::V6(a)) = update.peers[0].endpoint else {
            panic!("no v6 endpoint")
        };
        assert_ne!(a.scope_id(), 0);
        assert_eq!(
            parse(&format!(
                "public_key={PK_A}\nendpoint=[fe80::1%nosuchif0]:1\n\n"
            ))
            .map_err(|e| e.errno),
            Err(libc::EINVAL)
        );
    }
}
