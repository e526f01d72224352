//! A stand-in `k3s` for edgewire's launcher tests (k3s cannot be installed on test machines).
//!
//! `k3s server [FLAGS]`: records argv and environment, writes `DATA_DIR/server/node-token`
//! and the kubeconfig where k3s does, serves HTTPS `/ping` on `--node-ip`:`--https-listen-port`
//! (default 6443), sends `READY=1` to `NOTIFY_SOCKET`, then runs until SIGTERM.
//!
//! `k3s agent [FLAGS]`: records, then tries to join `K3S_URL`/`--server` every 2 s (a `/ping`
//! through the tunnel) and sends `READY=1` once it answers `pong`.
//!
//! Test controls and the record format: see the library (`k3s_standin`).
//! Threads: main waits for signals (blocked in every thread, taken with `sigwait`); helper
//! threads serve `/ping`, retry the join, and fire the simulated crash.

mod tls;

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k3s_standin::record;
use nix::sys::signal::{SigSet, Signal};

const PASSWORD_REJECTED: &str = "Node password rejected, duplicate hostname or contents of \
    '/etc/rancher/node/password' may not match server node-passwd entry, try enabling a unique \
    node name with the --with-node-id flag";

/// The flags the stand-in looks at; every other flag is accepted and ignored (as booleans
/// unless written `--flag=value`).
const VALUE_FLAGS: &[(&str, &str)] = &[
    ("i", "node-ip"),
    ("node-ip", "node-ip"),
    ("https-listen-port", "https-listen-port"),
    ("d", "data-dir"),
    ("data-dir", "data-dir"),
    ("o", "write-kubeconfig"),
    ("write-kubeconfig", "write-kubeconfig"),
    ("s", "server"),
    ("server", "server"),
    ("t", "token"),
    ("token", "token"),
    ("token-file", "token-file"),
    ("flannel-iface", "flannel-iface"),
    ("c", "config"),
    ("config", "config"),
    ("node-label", "node-label"),
    ("tls-san", "tls-san"),
    ("advertise-address", "advertise-address"),
    ("node-external-ip", "node-external-ip"),
];

#[derive(Debug, Default)]
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Flags {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
                continue;
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            let Some(&(_, canon)) = VALUE_FLAGS.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            let value = match inline {
                Some(v) => v,
                None => it.next().cloned().unwrap_or_default(),
            };
            out.push((canon.to_string(), value));
        }
        Flags(out)
    }

    fn last(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// k3s's log line format. Write errors are ignored: an orphaned stand-in whose edgewire
/// died must still be able to record its own end.
fn log(level: &str, msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "time=\"{}\" level={level} msg=\"{msg}\"",
        record::now_ms()
    );
}

struct Ctx {
    record: Option<PathBuf>,
    flags: Flags,
}

impl Ctx {
    fn rec(&self, kind: &str, value: &str) {
        if let Some(p) = &self.record {
            record::append(p, kind, value);
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn main() {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let role = args.get(1).cloned().unwrap_or_default();
    if role == "shim" {
        // A containerd-shim look-alike: lives until killed.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if role != "server" && role != "agent" {
        eprintln!("k3s stand-in: usage: k3s server|agent [flags]");
        std::process::exit(2);
    }

    // Block the stop signals before any thread exists, so that only `sigwait` takes them.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGTERM);
    stop.add(Signal::SIGINT);
    if let Err(e) = stop.thread_block() {
        eprintln!("k3s stand-in: blocking signals: {e}");
        std::process::exit(2);
    }

    let ctx = Ctx {
        record: env("K3S_STANDIN_RECORD").map(PathBuf::from),
        flags: Flags::parse(&args[2..]),
    };
    ctx.rec("start", &role);
    for a in &args {
        ctx.rec("arg", a);
    }
    for (k, v) in std::env::vars_os() {
        ctx.rec(
            "env",
            &format!("{}={}", k.to_string_lossy(), v.to_string_lossy()),
        );
    }
    log(
        "info",
        &format!("Starting k3s {role} (stand-in) pid {}", std::process::id()),
    );

    if let Some(secs) = env("K3S_STANDIN_CRASH_AFTER").and_then(|s| s.parse::<f64>().ok()) {
        let rec = ctx.record.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
            log("fatal", "simulated crash (K3S_STANDIN_CRASH_AFTER)");
            if let Some(p) = rec {
                record::append(&p, "exit", "1");
            }
            std::process::exit(1);
        });
    }

    // The shim first, so that its record precedes `ready` (tests kill k3s right after ready
    // and must still know every shim to clean up).
    if env("K3S_STANDIN_SHIM").is_some() {
        spawn_shim(&ctx);
    }
    let started = if role == "server" {
        server(&ctx)
    } else {
        agent(&ctx)
    };
    if let Err(e) = started {
        log("fatal", &e);
        ctx.rec("exit", "1");
        std::process::exit(1);
    }
    wait_for_stop(&ctx, &stop);
}

fn server(ctx: &Ctx) -> Result<(), String> {
    let data_dir = ctx
        .flags
        .last("data-dir")
        .map(String::from)
        .or_else(|| env("K3S_DATA_DIR"));
    let data_dir = PathBuf::from(data_dir.unwrap_or_else(|| "/var/lib/rancher/k3s".into()));
    let token = ctx
        .flags
        .last("token")
        .map(String::from)
        .or_else(|| env("K3S_TOKEN"))
        .unwrap_or_else(|| format!("standin{:x}", record::now_ms()));
    let node_token = format!("K10{}::server:{token}", "0123456789abcdef".repeat(4));
    write_private(
        &data_dir.join("server/node-token"),
        &format!("{node_token}\n"),
    )?;

    let ip: IpAddr = match ctx.flags.last("node-ip") {
        Some(list) => {
            let first = list.split(',').next().unwrap_or("");
            first
                .parse()
                .map_err(|_| format!("invalid --node-ip {first:?}"))?
        }
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let port: u16 = match ctx.flags.last("https-listen-port") {
        Some(p) => p
            .parse()
            .map_err(|_| format!("invalid --https-listen-port {p:?}"))?,
        None => 6443,
    };
    let listener = TcpListener::bind(SocketAddr::new(ip, port))
        .map_err(|e| format!("listen tcp {ip}:{port}: {e}"))?;
    tls::serve(listener)?;
    log(
        "info",
        &format!("Serving /ping on https://{}", SocketAddr::new(ip, port)),
    );

    let kubeconfig = ctx
        .flags
        .last("write-kubeconfig")
        .map(String::from)
        .or_else(|| env("K3S_KUBECONFIG_OUTPUT"));
    let kubeconfig =
        PathBuf::from(kubeconfig.unwrap_or_else(|| "/etc/rancher/k3s/k3s.yaml".into()));
    write_private(&kubeconfig, &kubeconfig_text(port))?;
    log(
        "info",
        &format!("Wrote kubeconfig {}", kubeconfig.display()),
    );

    // Recorded before READY=1 goes out: the launcher may relay it, and the test see it,
    // before a record written afterwards (the test checks READY comes after "ready").
    ctx.rec("ready", "");
    notify_ready();
    log("info", "k3s is up and running");
    Ok(())
}

fn kubeconfig_text(port: u16) -> String {
    let ca = base64(tls::CERT_PEM.as_bytes());
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://127.0.0.1:{port}\n  name: default\n\
         contexts:\n- context:\n    cluster: default\n    user: default\n  name: default\n\
         current-context: default\nkind: Config\npreferences: {{}}\nusers:\n- name: default\n  user:\n\
         \x20   client-certificate-data: c3RhbmQtaW4=\n    client-key-data: c3RhbmQtaW4=\n"
    )
}

fn agent(ctx: &Ctx) -> Result<(), String> {
    let url = ctx
        .flags
        .last("server")
        .map(String::from)
        .or_else(|| env("K3S_URL"));
    let url = url.ok_or("--server is required (or K3S_URL)")?;
    let token_file = ctx
        .flags
        .last("token-file")
        .map(String::from)
        .or_else(|| env("K3S_TOKEN_FILE"));
    let token = match token_file {
        Some(f) => {
            std::fs::read_to_string(&f).map_err(|e| format!("reading token file {f}: {e}"))?
        }
        None => ctx
            .flags
            .last("token")
            .map(String::from)
            .or_else(|| env("K3S_TOKEN"))
            .unwrap_or_default(),
    };
    if token.trim().is_empty() {
        return Err("--token is required".into());
    }
    let host_port = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("invalid server url {url}"))?;
    let host_port = host_port.trim_end_matches('/').to_string();
    let host = host_port
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(&host_port);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let rec = ctx.record.clone();
    std::thread::spawn(move || loop {
        let attempt = if env("K3S_STANDIN_PASSWORD_REJECTED").is_some() {
            Err(PASSWORD_REJECTED.to_string())
        } else {
            host_port
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|mut a| a.next().ok_or_else(|| "no address".to_string()))
                .and_then(|addr| tls::ping(&host, addr))
        };
        match attempt {
            Ok(()) => {
                log("info", &format!("Joined the cluster at {url}"));
                // Recorded first, as for the server.
                if let Some(p) = &rec {
                    record::append(p, "ready", "");
                }
                notify_ready();
                return;
            }
            Err(e) if e == PASSWORD_REJECTED => {
                log(
                    "error",
                    &format!("Failed to retrieve agent configuration: {e}"),
                );
                if let Some(p) = &rec {
                    record::append(p, "join-failed", &e);
                }
            }
            Err(e) => {
                log(
                    "info",
                    &format!("Waiting to retrieve agent configuration; server is not ready: {e}"),
                );
                if let Some(p) = &rec {
                    record::append(p, "join-failed", &e);
                }
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    });
    Ok(())
}

fn spawn_shim(ctx: &Ctx) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // Same process group as the stand-in (the default), stdio detached like a real shim.
    let child = Command::new(exe)
        .arg0("containerd-shim")
        .arg("shim")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(c) => ctx.rec("shim", &c.id().to_string()),
        Err(e) => log("error", &format!("starting shim: {e}")),
    }
}

fn wait_for_stop(ctx: &Ctx, stop: &SigSet) -> ! {
    loop {
        let sig = stop.wait().unwrap_or(Signal::SIGTERM);
        let iface = ctx.flags.last("flannel-iface");
        let state = match iface {
            Some(name) => match nix::net::if_::if_nametoindex(name) {
                Ok(_) => format!("iface={name} present"),
                Err(_) => format!("iface={name} absent"),
            },
            None => "iface=? unknown".to_string(),
        };
        ctx.rec(
            if sig == Signal::SIGTERM {
                "sigterm"
            } else {
                "sigint"
            },
            &state,
        );
        log("info", &format!("Received {sig:?} ({state})"));
        if env("K3S_STANDIN_IGNORE_SIGTERM").is_some() {
            continue;
        }
        std::thread::sleep(Duration::from_millis(100));
        ctx.rec("exit", "0");
        std::process::exit(0);
    }
}

fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_notify(&path, b"READY=1") {
        log("warning", &format!("sd_notify: {e}"));
    }
}

fn send_notify(path: &OsString, msg: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => UnixAddr::from_abstract_name(name)?,
        None => UnixAddr::from_pathname(Path::new(path))?,
    };
    UnixDatagram::unbound()?
        .send_to_addr(msg, &addr)
        .map(|_| ())
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_forms() {
        let a: Vec<String> = [
            "--node-ip",
            "10.8.0.2",
            "--flannel-iface=wg0",
            "-d",
            "/x",
            "--debug",
            "-i=1.2.3.4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let f = Flags::parse(&a);
        assert_eq!(f.last("node-ip"), Some("1.2.3.4"));
        assert_eq!(f.last("flannel-iface"), Some("wg0"));
        assert_eq!(f.last("data-dir"), Some("/x"));
    }

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"stand-in"), "c3RhbmQtaW4=");
    }
}
