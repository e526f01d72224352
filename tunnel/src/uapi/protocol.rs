//! The UAPI text protocol over any `BufRead`/`Write`, independent of sockets.
//!
//! A connection carries any number of requests, each answered with `errno=N` and a blank
//! line, as wireguard-go does (`device/uapi.go`):
//! - `get=1\n\n` → `key=value` lines (see [`write_get`]), then `errno=0\n\n`;
//! - `set=1\n` + `key=value` lines + `\n` → `errno=N\n\n`.
//!
//! Errno values on the wire are negative (`errno=-22`), which is what `wg` expects: it
//! negates the number back into `errno` before printing "Unable to modify interface: …".
//!
//! A `set` transaction is read and parsed completely before [`UapiDevice::set`] sees it, so
//! a bad line anywhere changes nothing. After a bad line the rest of the transaction is read
//! and discarded up to its blank line, so the client gets a clean reply and the connection
//! stays usable. Input is bounded: [`MAX_LINE_BYTES`] per line, [`MAX_SET_LINES`] lines and
//! [`MAX_SET_BYTES`] bytes per transaction; past the transaction limits the reply is sent
//! and the connection closed. Nothing here panics or allocates in proportion to bad input.

use std::io::{self, BufRead, Write};
use std::time::UNIX_EPOCH;

use crate::uapi::model::{DeviceSnapshot, DeviceUpdate, SetError, UapiDevice};
use crate::uapi::set::{read_line, read_set, LineKind, SetRead};
pub use crate::uapi::set::{MAX_LINE_BYTES, MAX_SET_BYTES, MAX_SET_LINES};

/// Longest accepted request line (`get=1` / `set=1`).
const MAX_OP_BYTES: usize = 64;

/// Errno values as they appear on the wire (negative, as wireguard-go sends them).
pub mod errno {
    /// Reading the request or writing the answer failed.
    pub const IO: i32 = -libc::EIO;
    /// The byte stream is not the protocol: a line without `=`, an unknown request,
    /// a transaction cut off before its blank line.
    pub const PROTOCOL: i32 = -libc::EPROTO;
    /// An unknown key or an invalid value.
    pub const INVALID: i32 = -libc::EINVAL;
    /// A line longer than [`super::MAX_LINE_BYTES`] or a transaction over its limits.
    pub const TOO_LONG: i32 = -libc::EMSGSIZE;
    /// `protocol_version` other than 1 (the kernel module's answer).
    pub const PROTOCOL_VERSION: i32 = -libc::EPFNOSUPPORT;
}

/// Serve requests from `reader` until it ends, answering on `writer`.
///
/// Returns `Ok(())` when the client closes the connection or after answering a request
/// that leaves the stream unusable (unknown request, truncated or oversized transaction);
/// `Err` only for I/O errors (including read timeouts of the underlying socket).
pub fn serve_connection<R: BufRead, W: Write>(
    mut reader: R,
    mut writer: W,
    device: &dyn UapiDevice,
) -> io::Result<()> {
    let mut line = Vec::with_capacity(MAX_OP_BYTES);
    loop {
        let (kind, _) = read_line(&mut reader, &mut line, MAX_OP_BYTES)?;
        match kind {
            LineKind::Eof => return Ok(()),
            LineKind::Truncated => {
                tracing::debug!("UAPI: connection closed in the middle of a request line");
                return reply_and_close(&mut writer, errno::PROTOCOL);
            }
            LineKind::TooLong => {
                tracing::debug!("UAPI: request line longer than {MAX_OP_BYTES} bytes");
                return reply_and_close(&mut writer, errno::TOO_LONG);
            }
            LineKind::Complete => {}
        }
        match line.as_slice() {
            b"get=1" => {
                let (kind, _) = read_line(&mut reader, &mut line, MAX_LINE_BYTES)?;
                match kind {
                    LineKind::Complete if line.is_empty() => {
                        let snapshot = device.get();
                        let mut text = Vec::with_capacity(256 + 512 * snapshot.peers.len());
                        write_get(&snapshot, &mut text)?;
                        writer.write_all(&text)?;
                        writer.flush()?;
                    }
                    LineKind::Complete => {
                        tracing::debug!("UAPI: get=1 not followed by a blank line");
                        write_errno(&mut writer, errno::INVALID)?;
                    }
                    LineKind::Eof | LineKind::Truncated => {
                        return reply_and_close(&mut writer, errno::PROTOCOL)
                    }
                    LineKind::TooLong => return reply_and_close(&mut writer, errno::TOO_LONG),
                }
            }
            b"set=1" => {
                let SetRead { result, resynced } = read_set(&mut reader)?;
                let code = match result.and_then(|update| device.set(update)) {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::warn!("UAPI set refused: {}", e.message);
                        wire_errno(&e)
                    }
                };
                if !resynced {
                    return reply_and_close(&mut writer, code);
                }
                write_errno(&mut writer, code)?;
            }
            other => {
                tracing::debug!("UAPI: unknown request {:?}", String::from_utf8_lossy(other));
                return reply_and_close(&mut writer, errno::PROTOCOL);
            }
        }
    }
}

/// Read one `set` transaction (the lines after `set=1`, up to and including the blank
/// line) and parse it completely. Nothing is applied; pass the result to
/// [`UapiDevice::set`]. Errors carry the positive errno (the wire shows it negated).
pub fn parse_set<R: BufRead>(mut reader: R) -> Result<DeviceUpdate, SetError> {
    match read_set(&mut reader) {
        Ok(SetRead { result, .. }) => result,
        Err(e) => Err(SetError::io(format!(
            "reading the UAPI set transaction: {e}"
        ))),
    }
}

/// Write the complete answer to `get=1`: wireguard-go's keys in its order, then
/// `errno=0` and a blank line.
///
/// Device: `private_key` (omitted when unset), `listen_port` (omitted when 0), `fwmark`
/// (omitted when 0). Per peer: `public_key`, `preshared_key` (all zeros when none),
/// `protocol_version`, `endpoint` (when known; IPv6 as `[addr]:port`),
/// `last_handshake_time_sec`/`_nsec` (UNIX time, 0 when never), `tx_bytes`, `rx_bytes`,
/// `persistent_keepalive_interval`, one `allowed_ip` per prefix.
pub fn write_get<W: Write>(snapshot: &DeviceSnapshot, writer: &mut W) -> io::Result<()> {
    let mut out = String::with_capacity(256 + 512 * snapshot.peers.len());
    if let Some(key) = snapshot.private_key.filter(|k| !k.is_zero()) {
        push_line(&mut out, "private_key", &key.to_hex());
    }
    if snapshot.listen_port != 0 {
        push_line(&mut out, "listen_port", &snapshot.listen_port.to_string());
    }
    if snapshot.fwmark != 0 {
        push_line(&mut out, "fwmark", &snapshot.fwmark.to_string());
    }
    for peer in &snapshot.peers {
        push_line(&mut out, "public_key", &peer.public_key.to_hex());
        let psk = peer.preshared_key.unwrap_or_default();
        push_line(&mut out, "preshared_key", &psk.to_hex());
        push_line(
            &mut out,
            "protocol_version",
            &peer.protocol_version.max(1).to_string(),
        );
        if let Some(endpoint) = peer.endpoint {
            // `SocketAddr`'s Display is `a.b.c.d:port` or `[v6%scope]:port`, as `wg` parses.
            push_line(&mut out, "endpoint", &endpoint.to_string());
        }
        let (secs, nanos) = peer
            .last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()));
        push_line(&mut out, "last_handshake_time_sec", &secs.to_string());
        push_line(&mut out, "last_handshake_time_nsec", &nanos.to_string());
        push_line(&mut out, "tx_bytes", &peer.tx_bytes.to_string());
        push_line(&mut out, "rx_bytes", &peer.rx_bytes.to_string());
        push_line(
            &mut out,
            "persistent_keepalive_interval",
            &peer.persistent_keepalive.to_string(),
        );
        for net in &peer.allowed_ips {
            push_line(&mut out, "allowed_ip", &net.to_string());
        }
    }
    out.push_str("errno=0\n\n");
    writer.write_all(out.as_bytes())
}

fn push_line(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push('=');
    out.push_str(value);
    out.push('\n');
}

/// The wire value for a refused `set`: negative, never 0.
fn wire_errno(e: &SetError) -> i32 {
    match e.errno.checked_abs() {
        Some(0) | None => errno::IO,
        Some(n) => -n,
    }
}

fn write_errno<W: Write>(writer: &mut W, code: i32) -> io::Result<()> {
    writer.write_all(format!("errno={code}\n\n").as_bytes())?;
    writer.flush()
}

/// Answer, then end the connection; a client that already left is not an error.
fn reply_and_close<W: Write>(writer: &mut W, code: i32) -> io::Result<()> {
    if let Err(e) = write_errno(writer, code) {
        tracing::debug!("UAPI: could not send errno={code} before closing: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::key::{PresharedKey, PrivateKey};
    use crate::uapi::memory::MemoryDevice;
    use crate::uapi::model::PeerSnapshot;

    use crate::uapi::vectors::*;

    /// Run a whole connection over in-memory bytes.
    fn converse(input: &[u8], device: &MemoryDevice) -> String {
        let mut out = Vec::new();
        serve_connection(input, &mut out, device).expect("in-memory I/O cannot fail");
        String::from_utf8(out).expect("replies are ASCII")
    }

    #[test]
    fn bad_input_gets_errno_and_changes_nothing() {
        let long = "a".repeat(MAX_LINE_BYTES + 1);
        let peer = |line: &str| format!("public_key={PK_A}\n{line}\n");
        let cases: Vec<(&str, String, i32)> = vec![
            (
                "bad hex key",
                format!("private_key={}\n", SK.replace('1', "g")),
                -22,
            ),
            ("short key", "private_key=1111\n".into(), -22),
            ("long key", format!("private_key={SK}11\n"), -22),
            ("bad public key", "public_key=xyz\n".into(), -22),
            ("psk wrong length", peer("preshared_key=44"), -22),
            ("port too big", "listen_port=65536\n".into(), -22),
            ("negative port", "listen_port=-1\n".into(), -22),
            ("empty port", "listen_port=\n".into(), -22),
            ("port with space", "listen_port= 1\n".into(), -22),
            ("fwmark too big", "fwmark=4294967296\n".into(), -22),
            ("replace_peers=false", "replace_peers=false\n".into(), -22),
            ("endpoint without port", peer("endpoint=1.2.3.4"), -22),
            (
                "v6 endpoint without brackets",
                peer("endpoint=fd00::1:51820"),
                -22,
            ),
            ("hostname endpoint", peer("endpoint=example.com:51820"), -22),
            ("endpoint port too big", peer("endpoint=1.2.3.4:65536"), -22),
            ("cidr too long", peer("allowed_ip=10.0.0.0/33"), -22),
            ("v6 cidr too long", peer("allowed_ip=fd00::/129"), -22),
            ("cidr without length", peer("allowed_ip=10.0.0.0"), -22),
            ("short address", peer("allowed_ip=10.0.0/8"), -22),
            ("double minus", peer("allowed_ip=--10.0.0.0/8"), -22),
            (
                "keepalive too big",
                peer("persistent_keepalive_interval=65536"),
                -22,
            ),
            ("remove=false", peer("remove=false"), -22),
            ("unknown device key", "bogus=1\n".into(), -22),
            ("unknown peer key", peer("bogus=1"), -22),
            ("value without key", "=1\n".into(), -22),
            (
                "peer key before public_key",
                "endpoint=1.2.3.4:1\n".into(),
                -22,
            ),
            ("device key after public_key", peer("listen_port=1"), -22),
            ("protocol_version=2", peer("protocol_version=2"), -96),
            ("protocol_version=x", peer("protocol_version=x"), -22),
            ("line without =", "private_key\n".into(), -71),
            ("NUL in value", "listen_port=5\0\n".into(), -22),
            ("NUL only", "\0\0\0\n".into(), -71),
            ("non-ASCII", "listen_port=5\u{e9}\n".into(), -22),
            ("over-long line", format!("{long}=1\n"), -90),
            (
                "over-long value",
                format!("public_key={PK_A}\nallowed_ip={long}\n"),
                -90,
            ),
            (
                "bad line after a good one",
                format!("listen_port=1\npublic_key={PK_A}\nendpoint=x\n"),
                -22,
            ),
        ];
        for (what, body, code) in cases {
            let device = MemoryDevice::default();
            // A good request after the bad one shows the connection is still served.
            let input = format!("set=1\n{body}\nget=1\n\n");
            let reply = converse(input.as_bytes(), &device);
            assert_eq!(reply, format!("errno={code}\n\nerrno=0\n\n"), "{what}");
            assert!(
                device.updates().is_empty(),
                "{what}: nothing may be applied"
            );
        }
    }

    #[test]
    fn truncated_transaction_is_refused_and_not_applied() {
        for input in [
            format!("set=1\nlisten_port=1\npublic_key={PK_A}\n"),
            "set=1\nlisten_port=1".to_owned(),
            "set=1\n".to_owned(),
        ] {
            let device = MemoryDevice::default();
            assert_eq!(
                converse(input.as_bytes(), &device),
                "errno=-71\n\n",
                "{input:?}"
            );
            assert!(device.updates().is_empty());
        }
    }

    #[test]
    fn oversized_transactions_are_cut_off() {
        // Too many lines: answered, then the connection is closed (the get is not served).
        let mut input = b"set=1\n".to_vec();
        for _ in 0..=MAX_SET_LINES {
            input.extend_from_slice(b"fwmark=1\n");
        }
        input.extend_from_slice(b"\nget=1\n\n");
        let device = MemoryDevice::default();
        assert_eq!(converse(&input, &device), "errno=-90\n\n");
        assert!(device.updates().is_empty());

        // One endless line: read in bounded steps, never stored whole.
        let mut input = b"set=1\nlisten_port=".to_vec();
        input.resize(MAX_SET_BYTES * 3, b'7');
        assert_eq!(converse(&input, &device), "errno=-90\n\n");
        assert!(device.updates().is_empty());
    }

    #[test]
    fn requests_are_served_in_sequence_and_refusals_pass_through() {
        let device = MemoryDevice::default();
        let input = format!(
            "set=1\nlisten_port=51820\npublic_key={PK_A}\nallowed_ip=10.8.0.0/24\n\n\
             set=1\nlisten_port=1\n\nget=1\n\n"
        );
        device.refuse_next_set(SetError::port_in_use("port 51820 is taken"));
        let reply = converse(input.as_bytes(), &device);
        assert_eq!(reply, "errno=-98\n\nerrno=0\n\nlisten_port=1\nerrno=0\n\n");
        assert_eq!(
            device.updates(),
            vec![DeviceUpdate {
                listen_port: Some(1),
                ..DeviceUpdate::default()
            }]
        );
    }

    #[test]
    fn bad_requests() {
        let device = MemoryDevice::default();
        // Unknown request: errno, then the connection is closed (wireguard-go just closes).
        assert_eq!(converse(b"hello\nget=1\n\n", &device), "errno=-71\n\n");
        assert_eq!(converse(b"\nget=1\n\n", &device), "errno=-71\n\n");
        assert_eq!(converse(b"set=2\n\n", &device), "errno=-71\n\n");
        assert_eq!(converse(&[b'x'; 1000], &device), "errno=-90\n\n");
        // get=1 must be followed by a blank line.
        assert_eq!(
            converse(b"get=1\nx\nget=1\n\n", &device),
            "errno=-22\n\nerrno=0\n\n"
        );
        assert_eq!(converse(b"get=1\n", &device), "errno=-71\n\n");
        assert_eq!(converse(b"", &device), "");
        assert!(device.updates().is_empty());
    }

    #[test]
    fn read_errors_end_the_connection() {
        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(ErrorKind::TimedOut, "slow client"))
            }
        }
        let device = MemoryDevice::default();
        let reader = io::BufReader::new(io::Read::chain(&b"set=1\nlisten_port=1\n"[..], Failing));
        let err = serve_connection(reader, Vec::new(), &device).expect_err("timeout surfaces");
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(device.updates().is_empty());
        assert_eq!(
            parse_set(io::BufReader::new(Failing)).map_err(|e| e.errno),
            Err(libc::EIO)
        );
    }

    #[test]
    fn get_matches_wireguard_go_text() {
        let snapshot = DeviceSnapshot {
            private_key: Some(PrivateKey([0x11; 32])),
            listen_port: 51820,
            fwmark: 0,
            peers: vec![
                PeerSnapshot {
                    public_key: pk_a(),
                    preshared_key: None,
                    endpoint: Some(addr("[fd00::1]:51820")),
                    persistent_keepalive: 25,
                    last_handshake: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)),
                    rx_bytes: 200,
                    tx_bytes: 100,
                    allowed_ips: vec![net("10.8.0.0/24"), net("fd00::/64")],
                    protocol_version: 1,
                },
                PeerSnapshot {
                    public_key: pk_b(),
                    preshared_key: Some(PresharedKey([0x44; 32])),
                    endpoint: None,
                    persistent_keepalive: 0,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    allowed_ips: vec![],
                    protocol_version: 1,
                },
            ],
        };
        let pk_b_hex = PK_B.to_ascii_lowercase();
        let expected = format!(
            "private_key={SK}\nlisten_port=51820\n\
             public_key={PK_A}\npreshared_key={ZERO}\nprotocol_version=1\nendpoint=[fd00::1]:51820\n\
             last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=123456789\n\
             tx_bytes=100\nrx_bytes=200\npersistent_keepalive_interval=25\n\
             allowed_ip=10.8.0.0/24\nallowed_ip=fd00::/64\n\
             public_key={pk_b_hex}\npreshared_key={PSK}\nprotocol_version=1\n\
             last_handshake_time_sec=0\nlast_handshake_time_nsec=0\n\
             tx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n\
             errno=0\n\n"
        );
        let device = MemoryDevice::new(snapshot);
        assert_eq!(converse(b"get=1\n\n", &device), expected);

        // An empty device: only the trailer; fwmark appears when set.
        let device = MemoryDevice::new(DeviceSnapshot {
            fwmark: 51820,
            ..DeviceSnapshot::default()
        });
        assert_eq!(
            converse(b"get=1\n\nget=1\n\n", &device),
            "fwmark=51820\nerrno=0\n\n".repeat(2)
        );
    }

    #[test]
    fn set_then_get_round_trips() {
        let device = MemoryDevice::default();
        let set = format!(
            "set=1\nprivate_key={SK}\nlisten_port=51820\nfwmark=7\nreplace_peers=true\n\
             public_key={PK_A}\npreshared_key={PSK}\nendpoint=198.18.0.2:51820\n\
             persistent_keepalive_interval=21\nreplace_allowed_ips=true\nallowed_ip=10.8.0.0/24\n\n"
        );
        assert_eq!(converse(set.as_bytes(), &device), "errno=0\n\n");
        // Stored clamped, as wireguard-go answered the same set with this key.
        let clamped = "1011111111111111111111111111111111111111111111111111111111111151";
        let reply = converse(b"get=1\n\n", &device);
        assert_eq!(
            reply,
            format!(
                "private_key={clamped}\nlisten_port=51820\nfwmark=7\npublic_key={PK_A}\npreshared_key={PSK}\n\
                 protocol_version=1\nendpoint=198.18.0.2:51820\nlast_handshake_time_sec=0\n\
                 last_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=21\n\
                 allowed_ip=10.8.0.0/24\nerrno=0\n\n"
            )
        );
    }
}
