//! The stand-in's HTTPS: a `/ping` server with a fixed self-signed certificate (like k3s's
//! own CA-signed serving cert, which clients cannot verify either), and the agent's client
//! that does not verify it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CERT_DER: &[u8] = include_bytes!("../testdata/cert.der");
const KEY_DER: &[u8] = include_bytes!("../testdata/key.pk8.der");
/// PEM of the same certificate, for the kubeconfig's `certificate-authority-data`.
pub const CERT_PEM: &str = include_str!("../testdata/cert.pem");

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Serves `GET /ping` → `pong` (anything else → 404) on `listener`, one thread per connection.
pub fn serve(listener: TcpListener) -> Result<(), String> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(CERT_DER.to_vec())],
            PrivateKeyDer::Pkcs8(KEY_DER.to_vec().into()),
        )
        .map_err(|e| format!("TLS certificate: {e}"))?;
    let config = Arc::new(config);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = handle(config, stream);
            });
        }
    });
    Ok(())
}

fn handle(config: Arc<rustls::ServerConfig>, tcp: TcpStream) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let first = String::from_utf8_lossy(&req)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let (status, body) = if first.starts_with("GET /ping ") {
        ("200 OK", "pong")
    } else {
        ("404 Not Found", "404 page not found\n")
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(resp.as_bytes())?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// `GET https://host:port/ping` without certificate verification; `Ok` iff the body is
/// `pong`. The agent side of the stand-in uses edgewire's own readiness probe: one client.
pub fn ping(host: &str, addr: SocketAddr) -> Result<(), String> {
    edgewire_launcher::probe::ping(addr, host, IO_TIMEOUT).map_err(|e| e.to_string())
}
