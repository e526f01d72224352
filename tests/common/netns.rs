//! Network namespaces and veth pairs, each unique per test and removed on drop.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cmd::{Cmd, Output};
use super::next_id;

/// Where `ip netns add` bind-mounts namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// A named network namespace (`ip netns add`), `lo` up. On drop, any process still inside
/// it (only ours: the name is unique to this test process) is SIGKILLed by PID, then the
/// namespace is deleted, which also removes its veths and TUNs.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Name: `ewt-TAG-PID-N`.
    pub fn new(tag: &str) -> Netns {
        let name = format!("ewt-{tag}-{}-{}", std::process::id(), next_id());
        // A leftover with our PID in its name is from a crashed earlier run: not live.
        if std::path::Path::new(NETNS_DIR).join(&name).exists() {
            let _ = Cmd::argv(&["ip", "netns", "del", &name]).run();
        }
        Cmd::argv(&["ip", "netns", "add", &name]).ok();
        let ns = Netns { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that will run inside this namespace.
    pub fn cmd<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Cmd {
        Cmd::argv(argv).netns(&self.name)
    }

    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Output {
        self.cmd(argv).run()
    }

    /// Runs inside the namespace, panics on a non-zero exit, returns stdout.
    pub fn ok<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> String {
        self.cmd(argv).ok()
    }

    pub fn link_exists(&self, iface: &str) -> bool {
        self.run(&["ip", "link", "show", "dev", iface]).success()
    }

    /// `ip -4 -o addr show dev IFACE` lines (empty when the link is gone).
    pub fn addrs(&self, iface: &str) -> String {
        self.run(&["ip", "-o", "addr", "show", "dev", iface]).stdout
    }

    /// Routes through `iface` (IPv4 and IPv6).
    pub fn routes(&self, iface: &str) -> String {
        let v4 = self
            .run(&["ip", "-4", "route", "show", "dev", iface])
            .stdout;
        let v6 = self
            .run(&["ip", "-6", "route", "show", "dev", iface])
            .stdout;
        format!("{v4}{v6}")
    }

    /// PIDs of processes in this namespace (`ip netns pids`).
    pub fn pids(&self) -> Vec<i32> {
        Cmd::argv(&["ip", "netns", "pids", &self.name])
            .run()
            .stdout
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Runs `f` on a fresh thread that has joined this namespace; sockets it creates stay in
    /// the namespace after it returns, and can be used from any thread.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = std::path::Path::new(NETNS_DIR).join(&self.name);
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                let file = std::fs::File::open(&path)
                    .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
                // SAFETY: setns(2) on a valid namespace fd we own for the duration of the call;
                // CLONE_NEWNET switches only this (fresh, scoped) thread's network namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    panic!(
                        "setns into {}: {}",
                        path.display(),
                        std::io::Error::last_os_error()
                    );
                }
                f()
            });
            match h.join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Daemonised children (wg-quick's userspace implementation) are not our direct
        // children; anything left in our own namespace is ours.
        for _ in 0..3 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = Cmd::argv(&["ip", "netns", "del", &self.name]).run();
    }
}

/// A veth pair from namespace `a` to `b` with a /30 from 198.18.0.0/15, unique per pair.
pub struct VethPair {
    pub a_ns: String,
    pub b_ns: String,
    pub a_if: String,
    pub b_if: String,
    pub a_ip: Ipv4Addr,
    pub b_ip: Ipv4Addr,
}

impl VethPair {
    pub fn new(a: &Netns, b: &Netns) -> VethPair {
        let id = next_id();
        let pid = std::process::id();
        let tag = format!(
            "{}{}",
            super::base36(u64::from(pid)),
            super::base36(u64::from(id))
        );
        let (a_if, b_if) = (format!("vea{tag}"), format!("veb{tag}"));
        // 32768 /30 blocks in 198.18.0.0/15; distinct for every pair of this process.
        let block = (pid.wrapping_mul(97).wrapping_add(id)) % 32768;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + block * 4;
        let (a_ip, b_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        Cmd::argv(&[
            "ip",
            "-n",
            a.name(),
            "link",
            "add",
            &a_if,
            "type",
            "veth",
            "peer",
            "name",
            &b_if,
            "netns",
            b.name(),
        ])
        .ok();
        a.ok(&["ip", "addr", "add", &format!("{a_ip}/30"), "dev", &a_if]);
        b.ok(&["ip", "addr", "add", &format!("{b_ip}/30"), "dev", &b_if]);
        a.ok(&["ip", "link", "set", &a_if, "up"]);
        b.ok(&["ip", "link", "set", &b_if, "up"]);
        VethPair {
            a_ns: a.name().to_string(),
            b_ns: b.name().to_string(),
            a_if,
            b_if,
            a_ip,
            b_ip,
        }
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end removes both; the namespace's deletion would too.
        let _ = Cmd::argv(&["ip", "-n", &self.a_ns, "link", "del", &self.a_if]).run();
    }
}
