//! The supervisor: one async loop on a current-thread tokio runtime that owns k3s.
//!
//! Phases (each reported as systemd `STATUS=`):
//! 1. agent only: wait until the hub peer has completed a handshake and the hub's `/ping`
//!    answers `pong` (probed every `probe_interval`; the probe's own packets also trigger
//!    the handshake when the config has no keepalive);
//! 2. start k3s with its own `NOTIFY_SOCKET` (the [`Relay`]); on its `READY=1` the first time,
//!    send `READY=1` to systemd;
//! 3. k3s exits: a fatal error seen in its output → no restart, k3s stays down, the tunnel
//!    stays up (so the node can still be reached to fix it), status says why; otherwise
//!    restart after [`Backoff`] (1 s → 60 s, reset after 10 minutes up);
//! 4. stop (SIGTERM/SIGINT or [`StopHandle`]) or the tunnel going away: `STOPPING=1`,
//!    SIGTERM to k3s's PID, SIGKILL after `stop_timeout` (or on a second signal), wait for
//!    it, and return. The caller takes the tunnel down only after that.
//!
//! Everything that can happen is awaited in one `select!`: k3s's exit, its notifications,
//! fatal lines from the output forwarders, stop requests, a 200 ms tunnel poll, watchdog.

mod child;
mod stop;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgewire_tunnel::interface::ExitReason;
use edgewire_tunnel::key::PublicKey;
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::time::{interval, sleep, Interval, MissedTickBehavior};

pub use child::{fatal_in, Fatal};
pub use stop::{StopHandle, StopSource};

use crate::argv::K3sCommand;
use crate::backoff::Backoff;
use crate::notify::{Relay, SystemdNotifier};
use crate::pidfile;
use crate::probe::{self, ServerUrl};
use crate::tunnel::Tunnel;

const TUNNEL_POLL: Duration = Duration::from_millis(200);

/// The agent's gate before k3s starts.
#[derive(Debug, Clone)]
pub struct HubCheck {
    pub peer: PublicKey,
    pub server: ServerUrl,
    pub addr: SocketAddr,
}

/// Everything decided before supervision starts.
#[derive(Debug, Clone)]
pub struct Plan {
    pub program: PathBuf,
    pub command: K3sCommand,
    /// `server` or `agent`, for messages.
    pub role: &'static str,
    pub hub: Option<HubCheck>,
    pub pidfile: PathBuf,
    pub notify_socket: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub backoff_base: Duration,
    pub backoff_reset_after: Duration,
    pub stop_timeout: Duration,
    pub probe_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backoff_base: crate::backoff::DEFAULT_BASE,
            backoff_reset_after: crate::backoff::DEFAULT_RESET_AFTER,
            stop_timeout: Duration::from_secs(30),
            probe_interval: Duration::from_secs(2),
        }
    }
}

/// How supervision ended. k3s is not running in either case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Asked to stop (signal or handle).
    Stopped,
    /// The tunnel stopped on its own (TUN deleted, socket removed, `edgewire down`).
    TunnelExited(ExitReason),
}

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("creating k3s's notify socket {path}: {source}")]
    Relay {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What interrupted a wait.
enum Interrupt {
    Elapsed,
    Stop(&'static str),
    Tunnel(ExitReason),
}

struct Ctx<'a> {
    plan: &'a Plan,
    tunnel: &'a dyn Tunnel,
    systemd: &'a SystemdNotifier,
    opts: &'a Options,
    stop: StopSource,
    relay: Relay,
    fatal_tx: mpsc::UnboundedSender<(u32, Fatal)>,
    fatal_rx: mpsc::UnboundedReceiver<(u32, Fatal)>,
    tunnel_poll: Interval,
    watchdog: Option<Interval>,
    ready_sent: bool,
    stopping_sent: bool,
}

/// Supervises k3s until a stop request or the tunnel's end. Must run inside a tokio runtime
/// (signals in `stop` were registered on it).
pub async fn supervise(
    plan: &Plan,
    tunnel: &dyn Tunnel,
    systemd: &SystemdNotifier,
    opts: &Options,
    stop: StopSource,
) -> Result<Outcome, SuperviseError> {
    let relay = Relay::bind(&plan.notify_socket).map_err(|source| SuperviseError::Relay {
        path: plan.notify_socket.clone(),
        source,
    })?;
    let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
    let mut tunnel_poll = interval(TUNNEL_POLL);
    tunnel_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watchdog = systemd.watchdog_interval().map(|d| {
        let mut i = interval(d);
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    });
    let mut ctx = Ctx {
        plan,
        tunnel,
        systemd,
        opts,
        stop,
        relay,
        fatal_tx,
        fatal_rx,
        tunnel_poll,
        watchdog,
        ready_sent: false,
        stopping_sent: false,
    };
    let outcome = ctx.run().await;
    if !ctx.stopping_sent {
        ctx.systemd.stopping("k3s stopped; taking the tunnel down");
    }
    Ok(outcome)
}

impl Ctx<'_> {
    async fn run(&mut self) -> Outcome {
        if let Some(hub) = self.plan.hub.clone() {
            if let Some(outcome) = self.wait_for_hub(&hub).await {
                return outcome;
            }
        }
        let role = self.plan.role;
        let mut backoff = Backoff::new(self.opts.backoff_base, self.opts.backoff_reset_after);
        loop {
            self.systemd.status(&format!(
                "starting k3s {role} on tunnel {}",
                self.tunnel.name()
            ));
            let started = Instant::now();
            let why = match self.run_once().await {
                Ended::Interrupted(outcome) => return outcome,
                Ended::Fatal(f) => {
                    tracing::error!("k3s {role} failed and will not be restarted: {f}");
                    self.systemd
                        .status(&format!("k3s {role} failed, not restarting: {f}"));
                    let i = self.idle(None).await;
                    return self.finish_without_k3s(i);
                }
                Ended::Exited(why) => why,
            };
            let delay = backoff.after_exit(started.elapsed());
            tracing::warn!("k3s {role} {why}; restarting in {} ms", delay.as_millis());
            self.systemd
                .status(&format!("restarting k3s {role} in {delay:?}: k3s {why}"));
            match self.idle(Some(delay)).await {
                Interrupt::Elapsed => continue,
                i => return self.finish_without_k3s(i),
            }
        }
    }

    /// Waits until the hub is reachable through the tunnel; `Some` if interrupted instead.
    async fn wait_for_hub(&mut self, hub: &HubCheck) -> Option<Outcome> {
        let peer = hub.peer.to_base64();
        loop {
            let addr = hub.addr;
            let host = hub.server.host.clone();
            let timeout = self.opts.probe_interval.max(Duration::from_secs(1));
            let mut probe = tokio::task::spawn_blocking(move || probe::ping(addr, &host, timeout));
            let answer = loop {
                tokio::select! {
                    r = &mut probe => break r.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())),
                    s = self.stop.requested() => return Some(self.finish_without_k3s(Interrupt::Stop(s))),
                    () = tick(&mut self.watchdog) => self.systemd.watchdog(),
                }
            };
            let handshake = self.tunnel.last_handshake(&hub.peer).is_some();
            match (handshake, answer) {
                (true, Ok(())) => {
                    tracing::info!(
                        "hub {} answered /ping through {}",
                        hub.server.url,
                        self.tunnel.name()
                    );
                    return None;
                }
                (false, _) => self.systemd.status(&format!(
                    "waiting for a handshake with the hub (peer {peer}) on {}",
                    self.tunnel.name()
                )),
                (true, Err(e)) => self
                    .systemd
                    .status(&format!("waiting for {}/ping: {e}", hub.server.url)),
            }
            match self.idle(Some(self.opts.probe_interval)).await {
                Interrupt::Elapsed => {}
                i => return Some(self.finish_without_k3s(i)),
            }
        }
    }

    /// One k3s process from start to exit.
    async fn run_once(&mut self) -> Ended {
        let role = self.plan.role;
        let mut k3s = match child::spawn(&self.plan.program, &self.plan.command, self.relay.path())
        {
            Ok(c) => c,
            Err(e) => {
                return Ended::Exited(format!(
                    "could not be started ({}: {e})",
                    self.plan.program.display()
                ))
            }
        };
        let pid = k3s.id().unwrap_or(0);
        tracing::info!(pid, "started k3s {role}: {}", self.plan.program.display());
        if let Err(e) = pidfile::write(&self.plan.pidfile, pid) {
            tracing::warn!("{e}");
        }
        if let Some(out) = k3s.stdout.take() {
            child::forward(out, pid, self.fatal_tx.clone());
        }
        if let Some(err) = k3s.stderr.take() {
            child::forward(err, pid, self.fatal_tx.clone());
        }
        let mut fatal: Option<Fatal> = None;
        let mut kill_at: Option<Instant> = None;
        let ended = loop {
            let kill_wait = async {
                match kill_at {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = k3s.wait() => {
                    let why = match status {
                        Ok(s) => child::describe(&s),
                        Err(e) => format!("could not be waited for: {e}"),
                    };
                    break match fatal.take() {
                        Some(f) => Ended::Fatal(f),
                        None => Ended::Exited(why),
                    };
                }
                Some((from, f)) = self.fatal_rx.recv() => {
                    if from == pid && fatal.is_none() {
                        tracing::error!(pid, "k3s reported a fatal error, stopping it: {}", f.message);
                        child::signal(pid, Signal::SIGTERM);
                        kill_at = Some(Instant::now() + self.opts.stop_timeout);
                        fatal = Some(f);
                    }
                }
                () = kill_wait => {
                    child::signal(pid, Signal::SIGKILL);
                    kill_at = None;
                }
                fields = self.relay.recv() => self.on_k3s_notify(fields),
                s = self.stop.requested() => {
                    self.stop_k3s(&mut k3s, pid, s).await;
                    break Ended::Interrupted(Outcome::Stopped);
                }
                _ = self.tunnel_poll.tick() => {
                    if let Some(reason) = self.tunnel.poll_exit() {
                        self.stop_k3s(&mut k3s, pid, &tunnel_reason(reason)).await;
                        break Ended::Interrupted(outcome_for(reason));
                    }
                }
                () = tick(&mut self.watchdog) => self.systemd.watchdog(),
            }
        };
        pidfile::remove(&self.plan.pidfile);
        ended
    }

    fn on_k3s_notify(&mut self, fields: Vec<(String, String)>) {
        let role = self.plan.role;
        for (k, v) in fields {
            match (k.as_str(), v.as_str()) {
                ("READY", "1") if !self.ready_sent => {
                    self.ready_sent = true;
                    self.systemd.ready(&format!(
                        "k3s {role} ready on tunnel {}",
                        self.tunnel.name()
                    ));
                }
                ("READY", "1") => self.systemd.status(&format!(
                    "k3s {role} ready again on tunnel {}",
                    self.tunnel.name()
                )),
                _ => tracing::debug!("k3s notification {k}={v}"),
            }
        }
    }

    /// SIGTERM to k3s's PID, SIGKILL after the timeout or on a second stop request.
    async fn stop_k3s(&mut self, k3s: &mut tokio::process::Child, pid: u32, why: &str) {
        let role = self.plan.role;
        self.stopping_sent = true;
        self.systemd
            .stopping(&format!("stopping k3s {role} (pid {pid}): {why}"));
        child::signal(pid, Signal::SIGTERM);
        let deadline = sleep(self.opts.stop_timeout);
        tokio::pin!(deadline);
        let mut killed = false;
        loop {
            tokio::select! {
                status = k3s.wait() => {
                    match status {
                        Ok(s) => tracing::info!(pid, "k3s {role} {}", child::describe(&s)),
                        Err(e) => tracing::warn!(pid, "waiting for k3s: {e}"),
                    }
                    return;
                }
                () = &mut deadline, if !killed => {
                    tracing::warn!(pid, "k3s did not exit {:?} after SIGTERM; sending SIGKILL", self.opts.stop_timeout);
                    child::signal(pid, Signal::SIGKILL);
                    killed = true;
                }
                s = self.stop.requested(), if !killed => {
                    tracing::warn!(pid, "{s} again while stopping: sending SIGKILL to k3s");
                    child::signal(pid, Signal::SIGKILL);
                    killed = true;
                }
                () = tick(&mut self.watchdog) => self.systemd.watchdog(),
            }
        }
    }

    /// Waits `dur` (forever if `None`) while k3s is not running.
    async fn idle(&mut self, dur: Option<Duration>) -> Interrupt {
        let timer = async {
            match dur {
                Some(d) => sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timer);
        loop {
            tokio::select! {
                () = &mut timer => return Interrupt::Elapsed,
                s = self.stop.requested() => return Interrupt::Stop(s),
                _ = self.tunnel_poll.tick() => {
                    if let Some(r) = self.tunnel.poll_exit() {
                        return Interrupt::Tunnel(r);
                    }
                }
                () = tick(&mut self.watchdog) => self.systemd.watchdog(),
                // Late notifications of a k3s that already exited: nothing to do.
                _ = self.relay.recv() => {}
                _ = self.fatal_rx.recv() => {}
            }
        }
    }

    fn finish_without_k3s(&mut self, i: Interrupt) -> Outcome {
        let (outcome, why) = match i {
            Interrupt::Stop(s) => (Outcome::Stopped, s.to_string()),
            Interrupt::Tunnel(r) => (outcome_for(r), tunnel_reason(r)),
            Interrupt::Elapsed => (Outcome::Stopped, "stop requested".to_string()),
        };
        self.stopping_sent = true;
        self.systemd
            .stopping(&format!("stopping ({why}); k3s is not running"));
        outcome
    }
}

enum Ended {
    Interrupted(Outcome),
    Fatal(Fatal),
    Exited(String),
}

fn outcome_for(r: ExitReason) -> Outcome {
    match r {
        ExitReason::Stopped => Outcome::Stopped,
        other => Outcome::TunnelExited(other),
    }
}

fn tunnel_reason(r: ExitReason) -> String {
    match r {
        ExitReason::Stopped => "the tunnel was asked to stop".into(),
        ExitReason::SocketRemoved => "the tunnel's control socket was removed".into(),
        ExitReason::TunDeleted => "the tunnel interface was deleted".into(),
    }
}

async fn tick(i: &mut Option<Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
