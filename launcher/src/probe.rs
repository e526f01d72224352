//! Is the hub's k3s there? `GET https://HUB:6443/ping` must answer `pong`.
//!
//! TLS: rustls on ring, with certificate verification switched off for this one request.
//! k3s serves /ping with a certificate from its own cluster CA, which a joining agent cannot
//! know yet (it learns it with the token); the answer only gates *when* k3s is started, and
//! k3s then does its own verification against the token's CA hash. No HTTP library: one
//! request, `Connection: close`, read to the end.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// k3s's supervisor/API port.
pub const DEFAULT_PORT: u16 = 6443;
const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerUrlError {
    #[error("--server {0:?}: k3s servers are reached over https://, not http://")]
    Http(String),
    #[error("--server {0:?}: expected an address (10.8.0.1, [fd00::1]:6443) or https://HOST:PORT")]
    Invalid(String),
    #[error("--server {given:?}: cannot resolve {host}: {message}")]
    Resolve {
        given: String,
        host: String,
        message: String,
    },
}

/// The hub as given to `edgewire agent --server`, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `https://HOST:PORT`, what k3s gets as `K3S_URL`.
    pub url: String,
    /// Host without brackets, for TLS SNI and `Host:`.
    pub host: String,
    pub port: u16,
}

impl ServerUrl {
    /// Accepts `ADDR`, `ADDR:PORT`, `[V6]:PORT`, `V6`, `https://HOST[:PORT][/]`.
    pub fn parse(given: &str) -> Result<ServerUrl, ServerUrlError> {
        let s = given.trim();
        if s.starts_with("http://") {
            return Err(ServerUrlError::Http(given.into()));
        }
        let invalid = || ServerUrlError::Invalid(given.into());
        let (rest, default_port) = match s.strip_prefix("https://") {
            Some(r) => (r.trim_end_matches('/'), 443),
            None => (s, DEFAULT_PORT),
        };
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(invalid());
        }
        let (host, port) = if let Ok(ip) = rest.parse::<IpAddr>() {
            (ip.to_string(), default_port)
        } else if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(invalid)?;
            let ip: IpAddr = h.parse().map_err(|_| invalid())?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| invalid())?,
                None if after.is_empty() => default_port,
                None => return Err(invalid()),
            };
            (ip.to_string(), port)
        } else {
            let (h, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| invalid())?),
                None => (rest, default_port),
            };
            let host_ok = !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !host_ok {
                return Err(invalid());
            }
            (h.to_string(), port)
        };
        let url_host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        Ok(ServerUrl {
            url: format!("https://{url_host}:{port}"),
            host,
            port,
        })
    }

    /// The address to probe (host names resolved once).
    pub fn resolve(&self) -> Result<SocketAddr, ServerUrlError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let err = |message: String| ServerUrlError::Resolve {
            given: self.url.clone(),
            host: self.host.clone(),
            message,
        };
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| err(e.to_string()))?
            .next()
            .ok_or_else(|| err("no addresses".into()))
    }
}

/// Why a /ping did not answer `pong`.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS with {addr}: {message}")]
    Tls { addr: SocketAddr, message: String },
    #[error("{addr} answered {answer:?} instead of pong")]
    Answer { addr: SocketAddr, answer: String },
}

/// One `GET /ping`; blocks up to about `timeout` for connecting and again for the answer.
pub fn ping(addr: SocketAddr, host: &str, timeout: Duration) -> Result<(), PingError> {
    let tls_err = |message: String| PingError::Tls { addr, message };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        .with_no_client_auth();
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string()).map_err(|e| tls_err(e.to_string()))?,
    };
    let conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| tls_err(e.to_string()))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| PingError::Connect { addr, source })?;
    let io = |source: std::io::Error| PingError::Connect { addr, source };
    tcp.set_read_timeout(Some(timeout)).map_err(io)?;
    tcp.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let host_header = if host.contains(':') {
        format!("[{host}]:{}", addr.port())
    } else {
        format!("{host}:{}", addr.port())
    };
    let req = format!("GET /ping HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: edgewire\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .map_err(|e| tls_err(e.to_string()))?;
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    while resp.len() < MAX_RESPONSE {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            // Servers that close without close_notify: the answer is complete anyway.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !resp.is_empty() => break,
            Err(e) => return Err(tls_err(e.to_string())),
        }
    }
    match parse_answer(&resp) {
        Ok(()) => Ok(()),
        Err(answer) => Err(PingError::Answer { addr, answer }),
    }
}

/// `Ok` for a 200 whose body (plain or chunked) is `pong`; otherwise a short description.
fn parse_answer(resp: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(resp);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(text.chars().take(80).collect());
    };
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        return Err(status.to_string());
    }
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    if body.trim() == "pong" {
        Ok(())
    } else {
        Err(body.chars().take(80).collect())
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(rest.get(..n).unwrap_or(""));
        s = rest.get(n..).unwrap_or("").trim_start_matches("\r\n");
    }
    out
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Accepts any certificate but still checks that the server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_forms() {
        let p = |s: &str| ServerUrl::parse(s).map(|u| u.url);
        assert_eq!(p("10.8.0.1"), Ok("https://10.8.0.1:6443".into()));
        assert_eq!(p("10.8.0.1:7443"), Ok("https://10.8.0.1:7443".into()));
        assert_eq!(p("fd00::1"), Ok("https://[fd00::1]:6443".into()));
        assert_eq!(p("[fd00::1]:7443"), Ok("https://[fd00::1]:7443".into()));
        assert_eq!(
            p("https://10.8.0.1:6443/"),
            Ok("https://10.8.0.1:6443".into())
        );
        assert_eq!(
            p("https://hub.example"),
            Ok("https://hub.example:443".into())
        );
        assert_eq!(
            ServerUrl::parse("[fd00::1]:7443").map(|u| u.host),
            Ok("fd00::1".into())
        );
        assert!(matches!(
            ServerUrl::parse("http://10.8.0.1:6443"),
            Err(ServerUrlError::Http(_))
        ));
        for bad in [
            "",
            "https://",
            "10.8.0.1:x",
            "https://a/b",
            "a b",
            "[fd00::1",
            "https://u@h:1",
        ] {
            assert!(
                matches!(ServerUrl::parse(bad), Err(ServerUrlError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn answers() {
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong"),
            Ok(())
        );
        assert_eq!(
            parse_answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npong\r\n0\r\n\r\n"
            ),
            Ok(())
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 401 Unauthorized\r\n\r\n"),
            Err("HTTP/1.1 401 Unauthorized".into())
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\n\r\nping"),
            Err("ping".into())
        );
        assert!(parse_answer(b"\x16\x03garbage").is_err());
    }

    #[test]
    fn refused_connection_names_the_address() {
        // Port 9 on a loopback address nothing listens on.
        let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9));
        let e = ping(addr, "127.0.0.1", Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("connecting to 127.0.0.1:9"), "{e}");
    }
}
