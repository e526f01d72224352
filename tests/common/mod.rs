//! Shared harness for the network-namespace tests (`tests/netns_*.rs`, `mod common;`).
//!
//! - [`cmd`]: run commands with timeouts (output captured in files, so a child that
//!   daemonises and keeps the descriptors never hangs a test) and guard long-running
//!   children (SIGTERM, then SIGKILL, by PID, reaped on drop).
//! - [`netns`]: [`netns::Netns`] (unique name, deleted on drop even when the test panics),
//!   [`netns::VethPair`] with a 198.18.0.0/15 underlay unique per pair, and `enter` to run a
//!   closure on a thread inside a namespace (sockets created there stay there).
//! - [`wg`]: keys via `wg genkey`/`wg pubkey`, configs in wg-quick and wg(8) formats,
//!   interface names, `wg show … dump` parsing.
//! - [`tunnel`]: two namespaces + veth ([`tunnel::Pair`]) and one running implementation per
//!   side ([`tunnel::Tunnel`]): `edgewire up`, `edgewire tun -f`, or `wireguard-go -f`, with
//!   the offload mode ([`tunnel::Offload`]) for edgewire.
//! - [`traffic`]: ping and the checked TCP transfer (deterministic stream, hash compared).
//! - [`wait`]: poll a condition with a deadline.
//!
//! Nothing here touches the host's own interfaces: every name carries the test's PID and a
//! process-wide counter, every address is inside namespaces the test created.
#![allow(dead_code)]

pub mod cmd;
pub mod netns;
pub mod traffic;
pub mod tunnel;
pub mod wait;
pub mod wg;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A process-wide unique number (namespaces, veths, interfaces, temp dirs all draw from it).
pub fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Lower-case base-36 digits of `n` (keeps interface names within 15 bytes).
pub fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The edgewire binary under test.
pub fn edgewire_bin() -> &'static str {
    env!("CARGO_BIN_EXE_edgewire")
}

/// `EDGEWIRE_NETNS_REFERENCE=wireguard-go`: run the edgewire tests with Debian's
/// wireguard-go in edgewire's place (`edgewire up` → `wireguard-go -f` + `wg setconf` + `ip`,
/// `edgewire tun` → `wireguard-go`, `edgewire-go` → a symlink to wireguard-go). It checks the
/// tests' own expectations against the reference implementation; edgewire-only behaviour
/// (`edgewire down`) is skipped with a line.
pub fn reference_mode() -> bool {
    std::env::var("EDGEWIRE_NETNS_REFERENCE")
        .map(|v| v == "wireguard-go")
        .unwrap_or(false)
}

/// The program that plays edgewire's wireguard-go-compatible daemon (see [`reference_mode`]).
pub fn daemon_bin() -> &'static str {
    if reference_mode() {
        "wireguard-go"
    } else {
        edgewire_bin()
    }
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

fn on_path(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Prerequisites of every namespace test: root, /dev/net/tun, `ip`, `wg`, `ping`, plus
/// `extra` tools. Missing → panic when `CI=true`, otherwise print one skip line and return
/// `false` (the caller returns early).
pub fn require_root(test: &str, extra: &[&str]) -> bool {
    require_root_in(test, extra, in_ci())
}

/// [`require_root`] with the CI decision passed in (so it is testable without touching the
/// process environment).
pub fn require_root_in(test: &str, extra: &[&str], ci: bool) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (euid 0)".to_string());
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun".to_string());
    }
    for tool in ["ip", "wg", "ping"].iter().chain(extra.iter()) {
        if !on_path(tool) {
            missing.push(format!("`{tool}` on PATH"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: missing prerequisites: {}", missing.join(", "));
    if ci {
        panic!("{msg} (CI=true: namespace tests must run)");
    }
    eprintln!("SKIP {msg}");
    false
}

/// A directory under the system temp dir, removed (recursively) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "edgewire-{tag}-{}-{}",
            std::process::id(),
            next_id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        if let Err(e) = std::fs::create_dir_all(&path) {
            panic!("creating temp dir {}: {e}", path.display());
        }
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the dir with mode 0600 (wg-quick warns otherwise).
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.path.join(name);
        let res = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, contents.as_bytes()));
        if let Err(e) = res {
            panic!("writing {}: {e}", p.display());
        }
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
