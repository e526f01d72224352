//! Running commands (optionally inside a namespace) with a timeout, and guarding children.
//!
//! Output goes to unlinked temp files rather than pipes: `wg-quick up` starts a daemon that
//! may keep inherited descriptors open, and a pipe would then never reach EOF.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A created-then-unlinked file: the child writes through its own descriptor, we read with
/// `pread` so the shared offset is never moved.
fn scratch_file() -> File {
    let path = std::env::temp_dir().join(format!(
        "edgewire-out-{}-{}",
        std::process::id(),
        super::next_id()
    ));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("creating scratch file {}: {e}", path.display()));
    let _ = std::fs::remove_file(&path);
    file
}

fn read_all(file: &File) -> String {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    loop {
        match file.read_at(&mut buf, off) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                off += n as u64;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn clone_file(f: &File) -> File {
    f.try_clone()
        .unwrap_or_else(|e| panic!("dup of scratch file: {e}"))
}

/// Polls `child` until it exits or `timeout` passes.
fn wait_child(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub argv: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics, showing everything, unless the command exited 0.
    pub fn check(self) -> Output {
        if !self.success() {
            panic!(
                "`{}` failed ({}):\n--- stdout\n{}--- stderr\n{}",
                self.argv, self.status, self.stdout, self.stderr
            );
        }
        self
    }
}

/// A command line, optionally run inside a network namespace via `ip netns exec`
/// (which execs, so the child's PID is the program's PID).
#[derive(Clone, Debug)]
pub struct Cmd {
    argv: Vec<OsString>,
    netns: Option<String>,
    env: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cmd {
    pub fn new(prog: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            argv: vec![prog.as_ref().to_owned()],
            netns: None,
            env: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `Cmd::argv(&["wg", "show", "x"])`.
    pub fn argv<S: AsRef<OsStr>>(argv: &[S]) -> Cmd {
        let mut c = Cmd::new(
            argv.first()
                .map(|s| s.as_ref())
                .unwrap_or(OsStr::new("true")),
        );
        for a in argv.iter().skip(1) {
            c.argv.push(a.as_ref().to_owned());
        }
        c
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.argv.push(a.as_ref().to_owned());
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: &[S]) -> Cmd {
        self.argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn netns(mut self, ns: &str) -> Cmd {
        self.netns = Some(ns.to_string());
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Cmd {
        self.env.push((k.as_ref().to_owned(), None));
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, d: Duration) -> Cmd {
        self.timeout = d;
        self
    }

    /// The command line as a human reads it (for messages).
    pub fn display(&self) -> String {
        let mut s = String::new();
        if let Some(ns) = &self.netns {
            s.push_str(&format!("ip netns exec {ns} "));
        }
        let parts: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        s.push_str(&parts.join(" "));
        s
    }

    fn command(&self) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]);
                c.args(&self.argv);
                c
            }
            None => {
                let mut c = Command::new(&self.argv[0]);
                c.args(&self.argv[1..]);
                c
            }
        };
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// Runs to completion (killed by PID after the timeout, then panics).
    pub fn run(&self) -> Output {
        let (out, err) = (scratch_file(), scratch_file());
        let mut c = self.command();
        c.stdout(Stdio::from(clone_file(&out)))
            .stderr(Stdio::from(clone_file(&err)));
        let stdin_file = self.stdin.as_ref().map(|bytes| {
            let f = scratch_file();
            f.write_all_at(bytes, 0)
                .unwrap_or_else(|e| panic!("writing stdin file: {e}"));
            f
        });
        match &stdin_file {
            Some(f) => c.stdin(Stdio::from(clone_file(f))),
            None => c.stdin(Stdio::null()),
        };
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("spawning `{}`: {e}", self.display()));
        let status = match wait_child(&mut child, self.timeout) {
            Some(st) => st,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`{}` did not finish within {:?}:\n--- stdout\n{}--- stderr\n{}",
                    self.display(),
                    self.timeout,
                    read_all(&out),
                    read_all(&err)
                );
            }
        };
        Output {
            argv: self.display(),
            status,
            stdout: read_all(&out),
            stderr: read_all(&err),
        }
    }

    /// Runs, panics unless it exits 0, returns stdout.
    pub fn ok(&self) -> String {
        self.run().check().stdout
    }

    /// Starts a long-running child; stdout and stderr go to one log readable any time.
    pub fn spawn(&self) -> Child {
        let log = scratch_file();
        let mut c = self.command();
        c.stdin(Stdio::null())
            .stdout(Stdio::from(clone_file(&log)))
            .stderr(Stdio::from(clone_file(&log)));
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("spawning `{}`: {e}", self.display()));
        Child {
            name: self.display(),
            child,
            log,
            status: None,
            remove_on_drop: Vec::new(),
        }
    }
}

/// A long-running child. Dropped while running → SIGTERM, 3 s grace, SIGKILL, reaped. All by
/// PID. When the test is panicking its log is printed, so failures show the daemon's side.
pub struct Child {
    name: String,
    child: std::process::Child,
    log: File,
    status: Option<ExitStatus>,
    remove_on_drop: Vec<PathBuf>,
}

impl Child {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the child printed so far.
    pub fn log(&self) -> String {
        read_all(&self.log)
    }

    /// Files (e.g. a UAPI socket) removed on drop, after the child is gone.
    pub fn remove_on_drop(&mut self, p: PathBuf) {
        self.remove_on_drop.push(p);
    }

    /// `Some(status)` once it has exited (reaped), `None` while running.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait_child(&mut self.child, timeout);
        }
        self.status
    }

    pub fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            let _ = kill(Pid::from_raw(self.pid()), sig);
        }
    }

    /// Sends `sig` and waits up to `timeout`; panics (with the log) if it is still running.
    pub fn stop(&mut self, sig: Signal, timeout: Duration) -> ExitStatus {
        self.signal(sig);
        match self.wait_timeout(timeout) {
            Some(st) => st,
            None => panic!(
                "`{}` (pid {}) still running {:?} after {sig}; log:\n{}",
                self.name,
                self.pid(),
                timeout,
                self.log()
            ),
        }
    }

    /// Panics, with the log, if the child has exited.
    pub fn assert_running(&mut self, what: &str) {
        if let Some(st) = self.try_status() {
            panic!(
                "{what}: `{}` exited early ({st}); log:\n{}",
                self.name,
                self.log()
            );
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.signal(Signal::SIGTERM);
            if self.wait_timeout(Duration::from_secs(3)).is_none() {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = {
                let lines: Vec<&str> = log.lines().collect();
                let from = lines.len().saturating_sub(60);
                lines[from..].join("\n")
            };
            eprintln!(
                "--- log of `{}` (pid {}, {:?}):\n{tail}\n---",
                self.name,
                self.pid(),
                self.status
            );
        }
        for p in &self.remove_on_drop {
            let _ = std::fs::remove_file(p);
        }
    }
}
