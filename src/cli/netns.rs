//! Network namespaces, veth pairs and child processes for `edgewire bench` and `edgewire
//! demo`, all owned by one [`Session`] that removes them again — on drop, on an error path,
//! and on SIGINT/SIGTERM/SIGHUP.
//!
//! How Ctrl-C works: [`Session::start`] blocks the termination signals in the calling (main)
//! thread before any other thread exists, so every later thread inherits the mask, and one
//! thread `sigwait`s for them. On a signal it takes the registry lock (never to release it),
//! stops every child, deletes every namespace and temp path, and exits 128+signal. Everything
//! that creates something registers it under that same lock *before or while* creating it,
//! so nothing can be created after the cleanup started or escape it.
//!
//! Children run in their own process group (a terminal's Ctrl-C reaches only us; we stop
//! them in order), with the signal mask cleared and `PR_SET_PDEATHSIG` = SIGTERM, so even a
//! SIGKILLed edgewire takes its children with it. They are stopped and reaped by PID only.
//! Namespace names carry our PID: a later run deletes the ones whose process is gone.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

/// Where `ip netns add` bind-mounts namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// Every namespace this module creates is named `ew-TAG-PID-ROLE`.
const NS_PREFIX: &str = "ew-";
/// How long a child gets between its stop signal and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(4);

/// Owner of everything a bench or demo run creates. Cheap to share by reference.
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    tag: String,
    registry: Mutex<Registry>,
    interrupted: AtomicBool,
    counter: AtomicU32,
    dir: PathBuf,
}

#[derive(Default)]
struct Registry {
    children: Vec<Tracked>,
    namespaces: Vec<String>,
    /// Files and directories (sockets, temp dirs) removed last.
    paths: Vec<PathBuf>,
}

struct Tracked {
    pid: i32,
    label: String,
    child: Child,
    stop: Signal,
    grace: Duration,
}

/// A namespace of this session (a name; the session deletes it).
#[derive(Clone, Debug)]
pub struct Ns {
    pub name: String,
}

/// Two ends of a veth pair with their underlay addresses (a /30 in 198.18.0.0/15).
#[derive(Clone, Debug)]
pub struct Veth {
    pub a_if: String,
    pub b_if: String,
    pub a_ip: std::net::Ipv4Addr,
    pub b_ip: std::net::Ipv4Addr,
}

/// A running child of this session.
#[derive(Debug)]
pub struct Proc {
    pub pid: i32,
    pub label: String,
    /// Its stdout and stderr, interleaved.
    pub log: PathBuf,
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stderr (or stdout when stderr is empty), trimmed, for error messages.
    pub fn message(&self) -> String {
        let s = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        s.trim().to_owned()
    }
}

/// What a child is started with.
pub struct Spawn<'a> {
    pub ns: Option<&'a Ns>,
    pub argv: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// Variables removed from the inherited environment.
    pub env_remove: Vec<String>,
    /// Sent first when stopping (then SIGKILL after a grace period).
    pub stop: Signal,
    /// Time between the stop signal and SIGKILL.
    pub grace: Duration,
    pub label: String,
}

impl<'a> Spawn<'a> {
    pub fn new<S: Into<OsString> + Clone>(ns: Option<&'a Ns>, argv: &[S]) -> Spawn<'a> {
        let argv: Vec<OsString> = argv.iter().cloned().map(Into::into).collect();
        let label = argv
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        Spawn {
            ns,
            argv,
            env: Vec::new(),
            env_remove: Vec::new(),
            stop: Signal::SIGTERM,
            grace: STOP_GRACE,
            label,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env_remove.push(key.to_owned());
        self
    }

    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }
}

impl Session {
    /// Blocks SIGINT/SIGTERM/SIGHUP in this thread (call it from `main` before any thread
    /// starts), starts the cleanup thread, makes the session's private temp dir, and deletes
    /// namespaces left by runs whose process is gone.
    pub fn start(tag: &str) -> anyhow::Result<Session> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        set.thread_block()
            .context("blocking SIGINT/SIGTERM/SIGHUP")?;
        let dir = std::env::temp_dir().join(format!("edgewire-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating the temp dir {}", dir.display()))?;
        }
        let inner = Arc::new(Inner {
            tag: tag.to_owned(),
            registry: Mutex::new(Registry {
                paths: vec![dir.clone()],
                ..Registry::default()
            }),
            interrupted: AtomicBool::new(false),
            counter: AtomicU32::new(0),
            dir,
        });
        let for_thread = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("ew-cleanup".into())
            .spawn(move || on_signal(&set, &for_thread))
            .context("starting the signal thread")?;
        let session = Session { inner };
        session.sweep_stale();
        Ok(session)
    }

    /// True once a termination signal arrived (the cleanup thread is then at work).
    pub fn interrupted(&self) -> bool {
        self.inner.interrupted.load(Ordering::SeqCst)
    }

    /// The session's private temp dir (mode 0700, removed at cleanup).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// A short name unique to this process: `PREFIX` + PID and a counter in base 36. With a
    /// prefix of up to 4 bytes it fits an interface name (15 bytes).
    pub fn unique(&self, prefix: &str) -> String {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{prefix}{}{}",
            base36(u64::from(std::process::id())),
            base36(u64::from(n))
        )
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Removes `path` (file or directory) at cleanup.
    pub fn remove_at_cleanup(&self, path: &Path) {
        self.registry().paths.push(path.to_owned());
    }

    /// Creates namespace `ew-TAG-PID-ROLE` with `lo` up.
    pub fn netns(&self, role: &str) -> anyhow::Result<Ns> {
        let name = format!(
            "{NS_PREFIX}{}-{}-{role}",
            self.inner.tag,
            std::process::id()
        );
        {
            let mut reg = self.registry();
            reg.namespaces.push(name.clone());
            let out = plain(&["ip", "netns", "add", &name])?;
            if !out.success() {
                bail!("creating network namespace {name}: {}", out.message());
            }
        }
        let ns = Ns { name };
        self.ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A veth pair from `a` to `b` with `a_ip`/30 and `b_ip`/30 from 198.18.0.0/15, up.
    pub fn veth(&self, a: &Ns, b: &Ns) -> anyhow::Result<Veth> {
        let tag = self.unique("");
        let (a_if, b_if) = (format!("ewva{tag}"), format!("ewvb{tag}"));
        // Namespaces are private, so any /30 works; vary it by PID anyway (readable logs).
        let block = (std::process::id().wrapping_mul(97)) % 32768;
        let base = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + block * 4;
        let (a_ip, b_ip) = (
            std::net::Ipv4Addr::from(base + 1),
            std::net::Ipv4Addr::from(base + 2),
        );
        self.ip(&[
            "-n", &a.name, "link", "add", &a_if, "type", "veth", "peer", "name", &b_if, "netns",
            &b.name,
        ])?;
        self.ip(&[
            "-n",
            &a.name,
            "addr",
            "add",
            &format!("{a_ip}/30"),
            "dev",
            &a_if,
        ])?;
        self.ip(&[
            "-n",
            &b.name,
            "addr",
            "add",
            &format!("{b_ip}/30"),
            "dev",
            &b_if,
        ])?;
        self.ip(&["-n", &a.name, "link", "set", &a_if, "up"])?;
        self.ip(&["-n", &b.name, "link", "set", &b_if, "up"])?;
        Ok(Veth {
            a_if,
            b_if,
            a_ip,
            b_ip,
        })
    }

    /// `ip ARGS…` (use `-n NS` to target a namespace); an error carries ip's message.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut argv = vec!["ip"];
        argv.extend_from_slice(args);
        let out = self.run(None, &argv, Duration::from_secs(10))?;
        if !out.success() {
            bail!("`{}` failed: {}", argv.join(" "), out.message());
        }
        Ok(out.stdout)
    }

    /// Starts a child (inside `spec.ns` through `ip netns exec`), output to a log file in
    /// the session dir. It is stopped at cleanup unless [`Session::stop`]ped before.
    pub fn spawn(&self, spec: Spawn<'_>) -> anyhow::Result<Proc> {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let log = self
            .inner
            .dir
            .join(format!("{n}-{}.log", sanitize(&spec.label)));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = file
            .try_clone()
            .with_context(|| format!("duplicating {}", log.display()))?;
        let mut cmd = command(spec.ns, &spec.argv)?;
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        for k in &spec.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let mut reg = self.registry();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting `{}`", spec.label))?;
        let pid = i32::try_from(child.id()).context("child PID out of range")?;
        reg.children.push(Tracked {
            pid,
            label: spec.label.clone(),
            child,
            stop: spec.stop,
            grace: spec.grace,
        });
        Ok(Proc {
            pid,
            label: spec.label,
            log,
        })
    }

    /// The exit status if `p` has exited (it is then reaped and forgotten).
    pub fn try_wait(&self, p: &Proc) -> anyhow::Result<Option<ExitStatus>> {
        let mut reg = self.registry();
        let Some(i) = reg.children.iter().position(|t| t.pid == p.pid) else {
            bail!(
                "`{}` (PID {}) is not a child of this session",
                p.label,
                p.pid
            );
        };
        let status = reg.children[i]
            .child
            .try_wait()
            .with_context(|| format!("waiting for `{}`", p.label))?;
        if status.is_some() {
            reg.children.swap_remove(i);
        }
        Ok(status)
    }

    /// Waits up to `timeout` for `p` to exit on its own.
    pub fn wait(&self, p: &Proc, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(s) = self.try_wait(p)? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Sends the child its stop signal, SIGKILL after a grace period; reaps it.
    pub fn stop(&self, p: &Proc) -> Option<ExitStatus> {
        let mut reg = self.registry();
        let i = reg.children.iter().position(|t| t.pid == p.pid)?;
        // Stopped under the lock: a cleanup racing with us waits for this child's end.
        let mut t = reg.children.swap_remove(i);
        stop_child(&mut t)
    }

    /// The log of a child so far (for error messages), at most the last `max` bytes.
    pub fn log_tail(p: &Proc, max: usize) -> String {
        let text = std::fs::read(&p.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let start = text.len().saturating_sub(max);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].trim().to_owned()
    }

    /// Runs a command to completion (killed after `timeout`), capturing its output.
    pub fn run<S: AsRef<str>>(
        &self,
        ns: Option<&Ns>,
        argv: &[S],
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let argv: Vec<OsString> = argv.iter().map(|a| OsString::from(a.as_ref())).collect();
        let label = argv
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let out_path = self.inner.dir.join(format!("{n}-{}.out", sanitize(&label)));
        let err_path = self.inner.dir.join(format!("{n}-{}.err", sanitize(&label)));
        let out_file = std::fs::File::create(&out_path)
            .with_context(|| format!("creating {}", out_path.display()))?;
        let err_file = std::fs::File::create(&err_path)
            .with_context(|| format!("creating {}", err_path.display()))?;
        let mut cmd = command(ns, &argv)?;
        cmd.stdin(Stdio::null()).stdout(out_file).stderr(err_file);
        let proc = {
            let mut reg = self.registry();
            let child = cmd.spawn().with_context(|| format!("running `{label}`"))?;
            let pid = i32::try_from(child.id()).context("child PID out of range")?;
            reg.children.push(Tracked {
                pid,
                label: label.clone(),
                child,
                stop: Signal::SIGTERM,
                grace: STOP_GRACE,
            });
            Proc {
                pid,
                label: label.clone(),
                log: out_path.clone(),
            }
        };
        let status = match self.wait(&proc, timeout)? {
            Some(s) => s,
            None => {
                self.stop(&proc);
                let where_ = ns.map(|n| format!(" in {}", n.name)).unwrap_or_default();
                bail!(
                    "`{}`{where_} did not finish within {} s",
                    join_os(&argv),
                    timeout.as_secs()
                );
            }
        };
        let read = |p: &Path| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let output = Output {
            status,
            stdout: read(&out_path),
            stderr: read(&err_path),
        };
        let _ = std::fs::remove_file(&out_path);
        let _ = std::fs::remove_file(&err_path);
        Ok(output)
    }

    /// Runs `f` on a fresh thread that joined `ns`: sockets it creates live in `ns` and can
    /// be used from any thread afterwards.
    pub fn in_netns<T: Send>(
        &self,
        ns: &Ns,
        f: impl FnOnce() -> io::Result<T> + Send,
    ) -> anyhow::Result<T> {
        let path = Path::new(NETNS_DIR).join(&ns.name);
        std::thread::scope(|s| {
            let h = s.spawn(|| -> anyhow::Result<T> {
                let file = std::fs::File::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                // SAFETY: setns(2) with a namespace fd we hold open for the whole call and
                // CLONE_NEWNET, which changes only this fresh scoped thread's network namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    bail!(
                        "entering {}: {}",
                        path.display(),
                        io::Error::last_os_error()
                    );
                }
                f().with_context(|| format!("in namespace {}", ns.name))
            });
            h.join()
                .unwrap_or_else(|_| bail!("a thread in namespace {} panicked", ns.name))
        })
    }

    /// Stops every child, deletes every namespace and temp path. Idempotent.
    pub fn cleanup(&self) {
        let mut reg = self.registry();
        cleanup_locked(&mut reg);
    }

    /// Deletes `ew-TAG-PID-*` namespaces (any tag of ours) whose PID no longer runs.
    fn sweep_stale(&self) {
        let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = stale_pid(&name) else {
                continue;
            };
            if Path::new("/proc").join(pid.to_string()).exists() {
                continue;
            }
            eprintln!("removing namespace {name}, left by an interrupted run (PID {pid} is gone)");
            kill_netns_pids(&name);
            let _ = plain(&["ip", "netns", "del", &name]);
        }
        // Temp dirs of such runs: edgewire-TAG-PID.
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("edgewire-")
                .and_then(|r| stale_pid(&format!("{NS_PREFIX}{r}-dir")))
            else {
                continue;
            };
            if !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The PID in `ew-TAG-PID-ROLE`, if `name` has that shape.
fn stale_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NS_PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let tag = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let _role = parts.next()?;
    (matches!(tag, "bench" | "demo")).then_some(pid)
}

fn on_signal(set: &SigSet, inner: &Inner) {
    let sig = loop {
        if let Ok(sig) = set.wait() {
            break sig;
        }
    };
    inner.interrupted.store(true, Ordering::SeqCst);
    eprintln!("\n{sig}: stopping and cleaning up…");
    let mut reg = inner.registry.lock().unwrap_or_else(|e| e.into_inner());
    cleanup_locked(&mut reg);
    eprintln!("cleaned up");
    // The lock is never released: nothing can be created after this point.
    std::process::exit(128 + sig as i32);
}

fn cleanup_locked(reg: &mut Registry) {
    // Newest first: clients before servers, tunnels before their namespaces.
    while let Some(mut t) = reg.children.pop() {
        stop_child(&mut t);
    }
    while let Some(ns) = reg.namespaces.pop() {
        kill_netns_pids(&ns);
        if Path::new(NETNS_DIR).join(&ns).exists() {
            match plain(&["ip", "netns", "del", &ns]) {
                Ok(o) if !o.success() => {
                    eprintln!("warning: deleting namespace {ns}: {}", o.message())
                }
                Err(e) => eprintln!("warning: deleting namespace {ns}: {e:#}"),
                Ok(_) => {}
            }
        }
    }
    while let Some(p) = reg.paths.pop() {
        let res = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if let Err(e) = res {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("warning: removing {}: {e}", p.display());
            }
        }
    }
}

/// Stop signal, grace period, SIGKILL, reap. By PID only.
fn stop_child(t: &mut Tracked) -> Option<ExitStatus> {
    if let Ok(Some(s)) = t.child.try_wait() {
        return Some(s);
    }
    let _ = kill(Pid::from_raw(t.pid), t.stop);
    let deadline = Instant::now() + t.grace;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = t.child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "warning: `{}` (PID {}) ignored {}; killing it",
        t.label, t.pid, t.stop
    );
    let _ = t.child.kill();
    t.child.wait().ok()
}

/// SIGKILLs whatever still runs inside our namespace `ns` (a daemon that detached from its
/// parent, say): everything in a namespace this process created is ours.
fn kill_netns_pids(ns: &str) {
    for _ in 0..5 {
        let pids: Vec<i32> = match plain(&["ip", "netns", "pids", ns]) {
            Ok(o) => o
                .stdout
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect(),
            Err(_) => return,
        };
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command for `argv`, inside `ns` if given, prepared as described at the top.
fn command(ns: Option<&Ns>, argv: &[OsString]) -> anyhow::Result<Command> {
    let Some((prog, args)) = argv.split_first() else {
        bail!("empty command line")
    };
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name]).arg(prog).args(args);
            c
        }
        None => {
            let mut c = Command::new(prog);
            c.args(args);
            c
        }
    };
    cmd.process_group(0);
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It allocates nothing and
    // calls only async-signal-safe functions: pthread_sigmask, prctl and getppid.
    unsafe {
        cmd.pre_exec(move || {
            SigSet::empty().thread_set_mask().map_err(io::Error::from)?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(io::Error::from)?;
            if nix::unistd::getppid() != parent {
                // We died between fork and prctl: do not outlive us.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// A short command not tracked by the registry (used while holding its lock).
fn plain(argv: &[&str]) -> anyhow::Result<Output> {
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let out = command(None, &argv)?
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{}`", join_os(&argv)))?;
    Ok(Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn join_os(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn sanitize(label: &str) -> String {
    let base = label.rsplit('/').next().unwrap_or(label);
    base.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(24)
        .collect()
}

/// Lower-case base-36 digits of `n`.
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
    String::from_utf8_lossy(&out).into_owned()
}

/// `tool` is an executable on PATH (or an existing path).
pub fn on_path(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// This executable, for starting more of itself (`edgewire up`, `edgewire server`). When
/// the file was replaced while we run (a rebuild), `/proc/PID/exe` still reaches our own
/// image, so every child runs the same code as its parent.
pub fn self_exe() -> PathBuf {
    match std::env::current_exe() {
        Ok(p) if p.is_file() => p,
        _ => PathBuf::from(format!("/proc/{}/exe", std::process::id())),
    }
}

/// Root, /dev/net/tun and `ip`: what both commands need. Names everything missing.
pub fn check_basics(extra: &[&str]) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (network namespaces need it: run with sudo)".to_owned());
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun (load the tun module: modprobe tun)".to_owned());
    }
    for tool in ["ip"].iter().chain(extra) {
        if on_path(tool).is_none() {
            missing.push(format!("`{tool}` on PATH"));
        }
    }
    if !missing.is_empty() {
        bail!("missing: {}", missing.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_names_are_recognised_only_in_our_shape() {
        assert_eq!(stale_pid("ew-bench-1234-hub"), Some(1234));
        assert_eq!(stale_pid("ew-demo-77-gateway"), Some(77));
        assert_eq!(stale_pid("ew-demo-77"), None);
        assert_eq!(stale_pid("ewt-a-1234-0"), None);
        assert_eq!(stale_pid("ew-other-1234-x"), None);
        assert_eq!(stale_pid("ew-bench-x12-hub"), None);
    }

    #[test]
    fn base36_and_sanitize() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(4_194_304), "2hwcg");
        assert_eq!(sanitize("/usr/bin/wireguard-go"), "wireguard-go");
        assert_eq!(sanitize("sh -c 'x'"), "sh-cx");
    }
}
