//! Test helper: run a closure in a fresh, private network namespace.
//!
//! A dedicated thread calls `unshare(CLONE_NEWNET)`: only that thread (and the threads and
//! processes it starts) moves; the namespace has no name and no bind mount, so it and every
//! interface in it vanish when the thread ends, also when the test panics. The host's
//! interfaces are never touched. Needs root: skipped with a message, but a failure when
//! `CI=true`.
#![allow(unsafe_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// `true` when root-only tests can run; panics under CI when they cannot.
pub(crate) fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); failing instead of skipping because CI=true");
    }
    eprintln!("{test}: skipped, needs root");
    false
}

/// Runs `f(tag)` in a new network namespace with `lo` up. `tag` is unique per call in this
/// machine (process id + counter), short enough to suffix interface names (≤ 9 chars).
pub(crate) fn in_netns<F: FnOnce(&str) + Send>(label: &str, f: F) {
    if !require_root(label) {
        return;
    }
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let tag = format!(
        "{}{}",
        std::process::id() % 1_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            if let Err(e) = enter_new_netns() {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{label}: {e}");
                }
                eprintln!("{label}: skipped, {e}");
                return;
            }
            f(&tag);
        })
        .join()
    });
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Moves the calling thread into a new network namespace and brings `lo` up there. Only
/// for threads the test owns (the namespace ends with the thread).
pub(crate) fn enter_new_netns() -> Result<(), String> {
    // SAFETY: unshare takes flags only; it changes this thread's network namespace and
    // touches no memory of ours.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET) failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    super::set_up("lo").map_err(|e| format!("bringing lo up in the test namespace: {e}"))
}

/// Runs a command line (split on whitespace) in the current namespace; panics with its
/// stderr if it fails; returns stdout.
pub(crate) fn run(cmdline: &str) -> String {
    let mut parts = cmdline.split_whitespace();
    let prog = parts.next().expect("empty command line");
    let out = Command::new(prog)
        .args(parts)
        .output()
        .unwrap_or_else(|e| panic!("{cmdline}: {e}"));
    assert!(
        out.status.success(),
        "{cmdline}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
