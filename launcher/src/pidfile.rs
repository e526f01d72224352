//! The k3s PID file, so that a k3s left running by a crashed edgewire is found at the next
//! start instead of being silently duplicated.
//!
//! Format: `PID STARTTIME\n`, STARTTIME being field 22 of `/proc/PID/stat`, so that a recycled
//! PID is never mistaken for the old k3s. The file lives in edgewire's run directory and is
//! named after the interface (`k3s-wg0.pid`), one per tunnel.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("writing k3s pid file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("k3s left over from an earlier run (pid {pid}, {cmdline}) did not exit after SIGKILL")]
    Unkillable { pid: i32, cmdline: String },
    #[error("signalling left-over k3s (pid {pid}): {source}")]
    Signal { pid: i32, source: nix::Error },
}

/// A k3s process recorded by an earlier edgewire that is still alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: i32,
    pub cmdline: String,
}

pub fn path_for(run_dir: &Path, iface: &str) -> PathBuf {
    run_dir.join(format!("k3s-{iface}.pid"))
}

/// Records `pid` (atomically: temporary file + rename).
pub fn write(path: &Path, pid: u32) -> Result<(), PidFileError> {
    let start = start_time(pid as i32).unwrap_or(0);
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{pid} {start}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| PidFileError::Write {
            path: path.into(),
            source,
        })
}

pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// The recorded k3s if it is still the same live process; a stale file is removed.
pub fn find_leftover(path: &Path) -> Option<Leftover> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let recorded: u64 = it.next()?.parse().ok()?;
    if pid > 1 && alive(pid) && start_time(pid) == Some(recorded) {
        return Some(Leftover {
            pid,
            cmdline: cmdline(pid),
        });
    }
    remove(path);
    None
}

/// SIGTERM to the leftover's PID (not its group: its containers keep running, as on a normal
/// k3s restart), SIGKILL after `timeout`. Blocks until it is gone.
pub fn stop_leftover(l: &Leftover, timeout: Duration) -> Result<(), PidFileError> {
    let start = start_time(l.pid);
    let gone = || !alive(l.pid) || start_time(l.pid) != start;
    let pid = Pid::from_raw(l.pid);
    kill(pid, Signal::SIGTERM).map_err(|source| PidFileError::Signal { pid: l.pid, source })?;
    if wait_until(gone, timeout) {
        return Ok(());
    }
    tracing::warn!(
        pid = l.pid,
        "left-over k3s ignored SIGTERM for {timeout:?}; sending SIGKILL"
    );
    let _ = kill(pid, Signal::SIGKILL);
    if wait_until(gone, Duration::from_secs(5)) {
        return Ok(());
    }
    Err(PidFileError::Unkillable {
        pid: l.pid,
        cmdline: l.cmdline.clone(),
    })
}

fn wait_until(mut done: impl FnMut() -> bool, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Running (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

/// Fields of /proc/PID/stat after the command name, starting with field 3 (state).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(String::from).collect())
}

fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(22 - 3)?.parse().ok()
}

fn cmdline(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    // Only the program and subcommand: the rest may be long and is not needed to identify it.
    parts.iter().take(2).cloned().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn finds_a_live_recorded_process_and_stops_it() {
        let dir = std::env::temp_dir().join(format!("ew-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = path_for(&dir, "wgtest0");
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        // spawn() may return before /proc shows the exec'd command line.
        let pid = child.id() as i32;
        assert!(wait_until(
            || cmdline(pid).starts_with("sleep"),
            Duration::from_secs(2)
        ));
        write(&path, child.id()).unwrap_or_else(|e| panic!("{e}"));
        let l = find_leftover(&path).unwrap_or_else(|| panic!("leftover not found"));
        assert_eq!(l.pid, child.id() as i32);
        assert!(l.cmdline.starts_with("sleep 30"), "{}", l.cmdline);
        // Reap in a thread so the zombie disappears while stop_leftover polls.
        let waiter = std::thread::spawn(move || child.wait());
        stop_leftover(&l, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
        let _ = waiter.join();
        assert_eq!(find_leftover(&path), None);
        assert!(!path.exists(), "stale pid file removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn recycled_pid_is_not_a_leftover() {
        let dir = std::env::temp_dir().join(format!("ew-pidfile2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("k3s.pid");
        // Our own PID with a wrong start time: alive, but not the recorded process.
        std::fs::write(&path, format!("{} 1\n", std::process::id()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(find_leftover(&path), None);
        std::fs::write(&path, "garbage").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(find_leftover(&path), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
