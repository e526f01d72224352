//! systemd's notification protocol, both ways.
//!
//! - [`SystemdNotifier`] talks to systemd (`NOTIFY_SOCKET` of edgewire's own unit): READY,
//!   STATUS, STOPPING, WATCHDOG. A datagram of `KEY=VALUE` lines; no library needed.
//! - [`Relay`] is the socket edgewire gives k3s as *its* `NOTIFY_SOCKET`, so that edgewire
//!   learns when k3s is ready and only then tells systemd (`NotifyAccess=main` stays valid:
//!   only edgewire, the main PID, ever talks to systemd).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Sends notifications to systemd, or nothing when edgewire was not started by it.
#[derive(Debug, Default)]
pub struct SystemdNotifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    /// The last status logged: a repeated status (an agent waiting hours for its hub) is sent
    /// to systemd every time but logged once.
    last_logged: std::sync::Mutex<String>,
}

impl SystemdNotifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` of this process.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|p| Self::connect(Path::new(&p)));
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(|u| Duration::from_micros(u / 2));
        Self {
            target,
            watchdog,
            last_logged: Default::default(),
        }
    }

    /// Notifications to a given socket path (`@name` for the abstract namespace).
    pub fn to_path(path: &Path, watchdog: Option<Duration>) -> Self {
        Self {
            target: Self::connect(path),
            watchdog,
            last_logged: Default::default(),
        }
    }

    fn connect(path: &Path) -> Option<(UnixDatagram, SocketAddr)> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name),
            None => SocketAddr::from_pathname(path),
        };
        match (addr, UnixDatagram::unbound()) {
            (Ok(a), Ok(s)) => Some((s, a)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(socket = %path.display(), "cannot use NOTIFY_SOCKET: {e}");
                None
            }
        }
    }

    /// How often to send `WATCHDOG=1` (half of systemd's `WatchdogSec`), if asked to.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
                tracing::debug!("sd_notify {msg:?}: {e}");
            }
        }
    }

    fn log(&self, status: &str) {
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        if *last != status {
            tracing::info!("status: {status}");
            *last = status.to_string();
        }
    }

    pub fn status(&self, status: &str) {
        self.log(status);
        self.send(&format!("STATUS={}", one_line(status)));
    }

    pub fn ready(&self, status: &str) {
        self.log(status);
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn stopping(&self, status: &str) {
        self.log(status);
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// `KEY=VALUE` lines of one notification datagram; lines without `=` are skipped.
pub fn parse(datagram: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(datagram)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The socket k3s reports to. Bound at a path in edgewire's private run directory; the file
/// is removed on drop.
#[derive(Debug)]
pub struct Relay {
    path: PathBuf,
    sock: tokio::net::UnixDatagram,
}

impl Relay {
    /// Binds at `path`, replacing a stale socket file. Needs a tokio runtime.
    pub fn bind(path: &Path) -> std::io::Result<Relay> {
        let _ = std::fs::remove_file(path);
        let sock = tokio::net::UnixDatagram::bind(path)?;
        Ok(Relay {
            path: path.to_path_buf(),
            sock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next notification's fields. A receive error is logged and retried after a pause
    /// (it never ends the relay, and never spins).
    pub async fn recv(&self) -> Vec<(String, String)> {
        let mut buf = vec![0u8; 4096];
        loop {
            match self.sock.recv(&mut buf).await {
                Ok(n) => return parse(&buf[..n]),
                Err(e) => {
                    tracing::warn!(socket = %self.path.display(), "receiving k3s notification: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_datagrams() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=up = yes\ngarbage\n"),
            vec![
                ("READY".into(), "1".into()),
                ("STATUS".into(), "up = yes".into())
            ]
        );
        assert!(parse(b"").is_empty());
    }

    #[test]
    fn notifier_reaches_relay_and_keeps_status_on_one_line() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let path = std::env::temp_dir().join(format!("ew-notify-{}.sock", std::process::id()));
            let relay = Relay::bind(&path).unwrap_or_else(|e| panic!("{e}"));
            let n = SystemdNotifier::to_path(&path, None);
            n.ready("k3s\nready");
            assert_eq!(
                relay.recv().await,
                vec![
                    ("READY".into(), "1".into()),
                    ("STATUS".into(), "k3s ready".into())
                ]
            );
            n.stopping("bye");
            assert_eq!(
                relay.recv().await.first().cloned(),
                Some(("STOPPING".into(), "1".into()))
            );
            drop(relay);
            assert!(!path.exists());
            // Sending to a vanished socket is not an error for edgewire.
            n.watchdog();
        });
    }

    #[test]
    fn abstract_socket_address() {
        let name = format!("ew-notify-abstract-{}", std::process::id());
        let server = {
            use std::os::linux::net::SocketAddrExt;
            let addr =
                SocketAddr::from_abstract_name(name.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            UnixDatagram::bind_addr(&addr).unwrap_or_else(|e| panic!("{e}"))
        };
        SystemdNotifier::to_path(Path::new(&format!("@{name}")), None).send("READY=1");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap_or(0);
        assert_eq!(&buf[..n], b"READY=1");
    }
}
