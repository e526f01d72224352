//! One module per command; `anyhow` lives here and nowhere else.

pub mod bench;
pub mod demo;
pub mod floor;
pub mod inbound;
pub mod k3s;
pub mod keys;
pub mod netns;
pub mod signals;
pub mod steal;
pub mod traffic;
pub mod tun;
pub mod tunnels;
pub mod up;

/// Logs go to stderr; `RUST_LOG` overrides the default `info`.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Tells systemd (Type=notify) that we are ready, if it is listening.
pub fn notify_ready(status: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let msg = format!("READY=1\nSTATUS={status}\n");
        let sock = match std::os::unix::net::UnixDatagram::unbound() {
            Ok(s) => s,
            Err(_) => return,
        };
        let bytes = path.as_encoded_bytes();
        let _ = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
                .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
        } else {
            sock.send_to(msg.as_bytes(), &path)
        };
    }
}
