//! UAPI text protocol: any byte stream on a connection gets well-formed `errno=N` replies,
//! never a panic; every accepted `set` leaves a state that, written back as a `set`,
//! parses and rebuilds the same state.
#![no_main]

use std::fmt::Write as _;

use edgewire_tunnel::uapi::{
    apply_update, parse_set, serve_connection, DeviceSnapshot, MemoryDevice, UapiDevice,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A whole connection: requests in sequence, answers well-formed.
    let device = MemoryDevice::default();
    let mut out = Vec::new();
    serve_connection(data, &mut out, &device).expect("in-memory I/O cannot fail");
    let text = std::str::from_utf8(&out).expect("answers are ASCII");
    assert!(text.is_empty() || text.ends_with("\n\n"), "unterminated answer: {text:?}");
    assert!(text.matches("errno=").count() <= data.len(), "more answers than input bytes");

    // One transaction body: accepted updates round-trip through the text form.
    let Ok(update) = parse_set(data) else { return };
    let mut state = DeviceSnapshot::default();
    apply_update(&mut state, &update);
    let written = as_set(&state);
    let again = parse_set(written.as_bytes())
        .unwrap_or_else(|e| panic!("written state does not parse ({e}):\n{written}"));
    let mut rebuilt = DeviceSnapshot::default();
    apply_update(&mut rebuilt, &again);
    assert_eq!(state, rebuilt, "round trip changed the state:\n{written}");
    let _ = device.get();
});

/// The `set` transaction that recreates `state` from nothing.
fn as_set(state: &DeviceSnapshot) -> String {
    let mut s = String::new();
    if let Some(k) = state.private_key {
        let _ = writeln!(s, "private_key={}", k.to_hex());
    }
    let _ = writeln!(s, "listen_port={}\nfwmark={}\nreplace_peers=true", state.listen_port, state.fwmark);
    for p in &state.peers {
        let _ = writeln!(s, "public_key={}", p.public_key.to_hex());
        if let Some(k) = p.preshared_key {
            let _ = writeln!(s, "preshared_key={}", k.to_hex());
        }
        if let Some(e) = p.endpoint {
            let _ = writeln!(s, "endpoint={e}");
        }
        let _ = writeln!(s, "persistent_keepalive_interval={}", p.persistent_keepalive);
        for net in &p.allowed_ips {
            let _ = writeln!(s, "allowed_ip={net}");
        }
    }
    s.push('\n');
    s
}
