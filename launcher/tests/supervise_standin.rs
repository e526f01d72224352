//! Supervision end to end against the stand-in k3s, without root: a fake tunnel named `lo`
//! with a loopback address (unique per test) stands in for the WireGuard interface.
//!
//! Shown here (the namespace tests in the root package show the same over a real tunnel):
//! flags and environment, READY relayed to "systemd" only after k3s's own READY, restarts
//! with growing delays after SIGKILL, the fatal "Node password rejected" → no retry, stop →
//! SIGTERM to k3s's PID while the tunnel still exists and the tunnel down only after k3s
//! exited, SIGKILL escalation, an agent that waits for handshake + /ping, a k3s left over by a
//! crashed edgewire, the tunnel disappearing, watchdog pings.

use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use edgewire_launcher::launch::{self, LaunchError, LaunchSpec, Prepared, RoleSpec};
use edgewire_launcher::notify::SystemdNotifier;
use edgewire_launcher::supervise::{Options, Outcome, StopHandle};
use edgewire_launcher::tunnel::Tunnel;
use edgewire_tunnel::interface::ExitReason;
use edgewire_tunnel::key::{PrivateKey, PublicKey};
use k3s_standin::record::{self, Run};

const WAIT: Duration = Duration::from_secs(20);

/// A loopback address unique to this process and `idx` (the stand-in binds IP:6443).
fn loopback(idx: u8) -> IpAddr {
    let pid = std::process::id();
    IpAddr::from([127, (pid >> 8) as u8, pid as u8, idx])
}

#[derive(Default)]
struct FakeState {
    handshake: Option<SystemTime>,
    exit: Option<ExitReason>,
    down_ms: Option<u128>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

impl Tunnel for Fake {
    fn name(&self) -> &str {
        "lo"
    }
    fn last_handshake(&self, _peer: &PublicKey) -> Option<SystemTime> {
        self.with(|s| s.handshake)
    }
    fn poll_exit(&self) -> Option<ExitReason> {
        self.with(|s| s.exit)
    }
}

/// One test's files, notification socket and supervisor thread.
struct Harness {
    dir: PathBuf,
    record: PathBuf,
    notes: Arc<Mutex<Vec<(u128, String)>>>,
    notify_path: PathBuf,
    fake: Fake,
    stop: StopHandle,
    thread: Option<JoinHandle<Result<Outcome, LaunchError>>>,
}

impl Harness {
    fn new(tag: &str) -> Harness {
        let dir = std::env::temp_dir().join(format!("ew-sup-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let notify_path = dir.join("systemd.sock");
        let sock = UnixDatagram::bind(&notify_path).unwrap_or_else(|e| panic!("{e}"));
        let notes = Arc::new(Mutex::new(Vec::new()));
        let sink = notes.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((record::now_ms(), msg));
            }
        });
        Harness {
            record: dir.join("record"),
            dir,
            notes,
            notify_path,
            fake: Fake::default(),
            stop: StopHandle::default(),
            thread: None,
        }
    }

    fn spec(&self, role: RoleSpec, extra: &[&str]) -> LaunchSpec {
        LaunchSpec {
            role,
            wg_config: self.dir.join("lo.conf"),
            k3s: None,
            node_labels: vec!["site=test".into()],
            extra: extra.iter().map(Into::into).collect(),
            k3s_config_file: Some(self.dir.join("no-config.yaml")),
            run_dir: self.dir.join("run"),
            options: Options {
                backoff_base: Duration::from_millis(250),
                stop_timeout: Duration::from_secs(5),
                probe_interval: Duration::from_millis(300),
                ..Options::default()
            },
        }
    }

    /// Prepares with a wg config whose address is `ip` and whose only peer routes `hub`.
    fn prepare(
        &self,
        spec: &LaunchSpec,
        ip: IpAddr,
        hub: IpAddr,
        control: &[(&str, &str)],
    ) -> Prepared {
        let conf = format!(
            "[Interface]\nPrivateKey = {}\nAddress = {ip}/32\n\n[Peer]\nPublicKey = {}\nAllowedIPs = {hub}/32\n",
            PrivateKey::generate().to_base64(),
            PrivateKey::generate().public_key().to_base64()
        );
        let config = edgewire_tunnel::config::parse(&conf, Path::new("lo.conf"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = launch::prepare_with(spec, "lo", config, k3s_standin::binary())
            .unwrap_or_else(|e| panic!("{e}"));
        let env = &mut p.plan.command.env;
        env.push(("K3S_STANDIN_RECORD".into(), self.record.clone().into()));
        env.push(("K3S_DATA_DIR".into(), self.dir.join("data").into()));
        env.push((
            "K3S_KUBECONFIG_OUTPUT".into(),
            self.dir.join("k3s.yaml").into(),
        ));
        for (k, v) in control {
            env.push(((*k).into(), (*v).into()));
        }
        p
    }

    fn start(&mut self, prepared: Prepared, spec: LaunchSpec) {
        let fake = self.fake.clone();
        let down_fake = self.fake.clone();
        let stop = self.stop.clone();
        let systemd = SystemdNotifier::to_path(&self.notify_path, Some(Duration::from_millis(100)));
        self.thread = Some(std::thread::spawn(move || {
            launch::run_with_handle(
                &prepared,
                &spec,
                &systemd,
                stop,
                move || Ok(fake),
                move |_| {
                    down_fake.with(|s| s.down_ms = Some(record::now_ms()));
                    Ok(())
                },
            )
        }));
    }

    fn runs(&self) -> Vec<Run> {
        record::runs(&self.record)
    }

    fn wait_runs(&self, what: &str, f: impl Fn(&[Run]) -> bool) -> Vec<Run> {
        let end = Instant::now() + WAIT;
        loop {
            let runs = self.runs();
            if f(&runs) {
                return runs;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; runs: {runs:#?}\nnotes: {:#?}",
                self.notes()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn notes(&self) -> Vec<(u128, String)> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note_time(&self, needle: &str) -> Option<u128> {
        self.notes()
            .iter()
            .find(|(_, m)| m.contains(needle))
            .map(|(t, _)| *t)
    }

    fn finish(&mut self) -> Outcome {
        self.stop.request();
        let t = self.thread.take().unwrap_or_else(|| panic!("not started"));
        match t.join() {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => panic!("supervisor failed: {e}"),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.request();
            let _ = t.join();
        }
        for run in self.runs() {
            if let Some(shim) = run.event("shim").and_then(|r| r.value.parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(shim),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kill9(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn server_ready_restarts_with_growing_delays_then_stops_before_tunnel_down() {
    let mut h = Harness::new("server");
    let ip = loopback(1);
    let spec = h.spec(RoleSpec::Server, &["--disable", "traefik"]);
    let p = h.prepare(&spec, ip, loopback(2), &[("K3S_STANDIN_SHIM", "1")]);
    h.start(p, spec);

    let runs = h.wait_runs("k3s server ready", |r| {
        r.first().is_some_and(|r| r.event("ready").is_some())
    });
    let first = &runs[0];
    let ip_s = ip.to_string();
    assert_eq!(first.role, "server");
    assert_eq!(first.flag_values("--node-ip"), [ip_s.as_str()]);
    assert_eq!(first.flag_values("--advertise-address"), [ip_s.as_str()]);
    assert_eq!(first.flag_values("--tls-san"), [ip_s.as_str()]);
    assert_eq!(first.flag_values("--flannel-iface"), ["lo"]);
    assert_eq!(first.flag_values("--node-label"), ["site=test"]);
    assert!(
        first
            .argv
            .ends_with(&["--disable".to_string(), "traefik".to_string()]),
        "{:?}",
        first.argv
    );
    assert!(first.flag_values("--node-external-ip").is_empty());
    let notify = first.env.get("NOTIFY_SOCKET").cloned().unwrap_or_default();
    assert!(
        notify.ends_with("run/k3s-lo.notify"),
        "k3s gets edgewire's relay socket, not systemd's: {notify}"
    );
    assert!(!first.env.contains_key("WATCHDOG_USEC"));
    assert!(h.dir.join("data/server/node-token").exists() && h.dir.join("k3s.yaml").exists());

    // READY to systemd only after k3s's own READY.
    let k3s_ready = first.event("ready").map(|r| r.ms).unwrap_or(0);
    let end = Instant::now() + WAIT;
    while h.note_time("READY=1").is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let sd_ready = h
        .note_time("READY=1")
        .unwrap_or_else(|| panic!("no READY=1: {:#?}", h.notes()));
    assert!(
        sd_ready >= k3s_ready,
        "READY to systemd at {sd_ready} before k3s's at {k3s_ready}"
    );
    assert!(
        h.note_time("WATCHDOG=1").is_some(),
        "watchdog pings: {:#?}",
        h.notes()
    );
    let shim = first
        .event("shim")
        .and_then(|r| r.value.parse::<i32>().ok())
        .unwrap_or(0);

    // Three SIGKILLs: each restart comes later than the one before (250, 500, 1000 ms).
    for n in 1..=3 {
        let runs = h.runs();
        kill9(runs[n - 1].pid);
        h.wait_runs("a restart", |r| {
            r.len() > n && r[n].event("ready").is_some()
        });
    }
    let runs = h.runs();
    let killed_at: Vec<u128> = h
        .notes()
        .iter()
        .filter(|(_, m)| m.contains("restarting k3s server in"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(killed_at.len(), 3, "{:#?}", h.notes());
    let gaps: Vec<u128> = (0..3)
        .map(|i| runs[i + 1].started_ms - killed_at[i])
        .collect();
    for (gap, want) in gaps.iter().zip([250u128, 500, 1000]) {
        assert!(
            *gap + 20 >= want,
            "restart gap {gap} ms shorter than the backoff {want} ms: {gaps:?}"
        );
    }
    assert!(
        gaps[0] < gaps[1] && gaps[1] < gaps[2],
        "delays must grow: {gaps:?}"
    );
    let statuses: Vec<String> = h
        .notes()
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m.contains("restarting"))
        .collect();
    assert!(
        statuses[0].contains("250ms") && statuses[0].contains("killed by signal 9 (SIGKILL)"),
        "{statuses:?}"
    );
    assert!(statuses[2].contains("1s"), "{statuses:?}");

    // Stop: STOPPING=1, SIGTERM to k3s while the tunnel is up, the tunnel down after k3s left.
    assert_eq!(h.finish(), Outcome::Stopped);
    let last = h.runs().pop().unwrap_or_default();
    let sigterm = last
        .event("sigterm")
        .unwrap_or_else(|| panic!("k3s got no SIGTERM: {last:#?}"));
    assert_eq!(sigterm.value, "iface=lo present");
    let exit = last.event("exit").map(|r| r.ms).unwrap_or(u128::MAX);
    let down = h.fake.with(|s| s.down_ms).unwrap_or(0);
    assert!(
        down >= exit,
        "tunnel down at {down} before k3s exited at {exit}"
    );
    assert!(h.note_time("STOPPING=1").is_some());
    // SIGTERM went to k3s's PID, not its group: the first run's shim is still alive.
    assert!(
        shim > 0 && alive(shim),
        "shim {shim} in k3s's process group must survive"
    );
    assert!(!h.dir.join("run/k3s-lo.pid").exists() && !h.dir.join("run/k3s-lo.notify").exists());
}

#[test]
fn agent_waits_for_handshake_and_ping_then_joins() {
    let mut h = Harness::new("agent");
    let (hub_ip, gw_ip) = (loopback(11), loopback(12));
    let token = h.dir.join("token");
    std::fs::write(&token, "K10abc::server:agent-test-secret\n").unwrap_or_else(|e| panic!("{e}"));
    let spec = h.spec(
        RoleSpec::Agent {
            server: hub_ip.to_string(),
            token_file: token.clone(),
        },
        &[],
    );
    let p = h.prepare(&spec, gw_ip, hub_ip, &[]);
    h.start(p, spec);

    // No handshake, no hub: nothing starts.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        h.runs().is_empty(),
        "k3s agent started before the hub was reachable: {:#?}",
        h.runs()
    );
    assert!(
        h.note_time("waiting for a handshake with the hub")
            .is_some(),
        "{:#?}",
        h.notes()
    );
    // Handshake but no /ping answer yet: still nothing.
    h.fake.with(|s| s.handshake = Some(SystemTime::now()));
    std::thread::sleep(Duration::from_millis(1000));
    assert!(h.runs().is_empty());
    let status = h.note_time(&format!("waiting for https://{hub_ip}:6443/ping"));
    assert!(status.is_some(), "{:#?}", h.notes());

    // The hub comes up: a stand-in server on the hub address.
    let hub_dir = h.dir.join("hub");
    let mut hub = std::process::Command::new(k3s_standin::binary())
        .args(["server", "--node-ip", &hub_ip.to_string(), "--data-dir"])
        .arg(&hub_dir)
        .arg("--write-kubeconfig")
        .arg(hub_dir.join("k3s.yaml"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let runs = h.wait_runs("the agent joined", |r| {
        r.first().is_some_and(|r| r.event("ready").is_some())
    });
    let _ = hub.kill();
    let _ = hub.wait();
    let agent = &runs[0];
    assert_eq!(agent.role, "agent");
    assert_eq!(agent.flag_values("--node-ip"), [gw_ip.to_string()]);
    assert_eq!(agent.flag_values("--flannel-iface"), ["lo"]);
    assert!(
        agent.flag_values("--advertise-address").is_empty()
            && agent.flag_values("--tls-san").is_empty()
    );
    assert_eq!(
        agent.env.get("K3S_URL").map(String::as_str),
        Some(format!("https://{hub_ip}:6443").as_str())
    );
    assert_eq!(
        agent.env.get("K3S_TOKEN_FILE").map(PathBuf::from),
        Some(token)
    );
    assert!(
        agent.argv.iter().all(|a| !a.contains("agent-test-secret")),
        "token in argv: {:?}",
        agent.argv
    );
    assert_eq!(h.finish(), Outcome::Stopped);
}

#[test]
fn node_password_rejected_stops_retries_and_keeps_the_tunnel() {
    let mut h = Harness::new("fatal");
    let (hub_ip, gw_ip) = (loopback(21), loopback(22));
    let hub_dir = h.dir.join("hub");
    let mut hub = std::process::Command::new(k3s_standin::binary())
        .args(["server", "--node-ip", &hub_ip.to_string(), "--data-dir"])
        .arg(&hub_dir)
        .arg("--write-kubeconfig")
        .arg(hub_dir.join("k3s.yaml"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let token = h.dir.join("token");
    std::fs::write(&token, "K10abc::server:x\n").unwrap_or_else(|e| panic!("{e}"));
    let spec = h.spec(
        RoleSpec::Agent {
            server: format!("https://{hub_ip}:6443"),
            token_file: token,
        },
        &[],
    );
    let p = h.prepare(
        &spec,
        gw_ip,
        hub_ip,
        &[("K3S_STANDIN_PASSWORD_REJECTED", "1")],
    );
    h.fake.with(|s| s.handshake = Some(SystemTime::now()));
    h.start(p, spec);

    h.wait_runs("the rejected agent stopped", |r| {
        r.first().is_some_and(|r| r.event("sigterm").is_some())
    });
    // k3s itself would retry every 2 s; edgewire stopped it and does not restart it.
    std::thread::sleep(Duration::from_millis(3000));
    let _ = hub.kill();
    let _ = hub.wait();
    let runs = h.runs();
    assert_eq!(runs.len(), 1, "restarted after a fatal error: {runs:#?}");
    let status = h
        .notes()
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| m.contains("not restarting"));
    let status = status.unwrap_or_else(|| panic!("no failure status: {:#?}", h.notes()));
    assert!(
        status.contains("Node password rejected") && status.contains("--with-node-id"),
        "{status}"
    );
    assert!(
        h.fake.with(|s| s.down_ms).is_none(),
        "the tunnel must stay up after a fatal k3s error"
    );
    assert_eq!(h.finish(), Outcome::Stopped);
}

#[test]
fn sigterm_ignored_escalates_to_sigkill_and_tunnel_loss_stops_k3s() {
    let mut h = Harness::new("escalate");
    let mut spec = h.spec(RoleSpec::Server, &[]);
    spec.options.stop_timeout = Duration::from_millis(600);
    let p = h.prepare(
        &spec,
        loopback(31),
        loopback(32),
        &[("K3S_STANDIN_IGNORE_SIGTERM", "1")],
    );
    h.start(p, spec);
    h.wait_runs("k3s ready", |r| {
        r.first().is_some_and(|r| r.event("ready").is_some())
    });
    // The tunnel goes away (TUN deleted): k3s is stopped, supervision ends with that reason.
    h.fake.with(|s| s.exit = Some(ExitReason::TunDeleted));
    let started = Instant::now();
    let t = h.thread.take().unwrap_or_else(|| panic!("not started"));
    let outcome = t
        .join()
        .map_err(|_| "panic")
        .and_then(|r| r.map_err(|_| "error"));
    assert_eq!(outcome, Ok(Outcome::TunnelExited(ExitReason::TunDeleted)));
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "SIGKILL came before the stop timeout"
    );
    let run = h.runs().pop().unwrap_or_default();
    assert!(
        run.event("sigterm").is_some() && run.event("exit").is_none(),
        "{run:#?}"
    );
    assert!(!alive(run.pid as i32), "k3s still running after SIGKILL");
    let stopping = h
        .notes()
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| m.contains("STOPPING=1"))
        .unwrap_or_default();
    assert!(
        stopping.contains("tunnel interface was deleted"),
        "{stopping}"
    );
}

#[test]
fn leftover_k3s_from_a_crashed_run_is_stopped_before_a_new_one_starts() {
    let mut h = Harness::new("leftover");
    let ip = loopback(41);
    let spec = h.spec(RoleSpec::Server, &[]);
    // A "previous" k3s, recorded in the pid file, still running.
    let mut old = std::process::Command::new(k3s_standin::binary())
        .args([
            "server",
            "--node-ip",
            &ip.to_string(),
            "--flannel-iface",
            "lo",
            "--data-dir",
        ])
        .arg(h.dir.join("old"))
        .arg("--write-kubeconfig")
        .arg(h.dir.join("old/k3s.yaml"))
        .env("K3S_STANDIN_RECORD", &h.record)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    h.wait_runs("the old k3s", |r| {
        r.first().is_some_and(|r| r.event("ready").is_some())
    });
    std::fs::create_dir_all(h.dir.join("run")).unwrap_or_else(|e| panic!("{e}"));
    edgewire_launcher::pidfile::write(&h.dir.join("run/k3s-lo.pid"), old.id())
        .unwrap_or_else(|e| panic!("{e}"));
    let reaper = std::thread::spawn(move || old.wait());

    let p = h.prepare(&spec, ip, loopback(42), &[]);
    h.start(p, spec);
    let runs = h.wait_runs("the new k3s", |r| {
        r.len() == 2 && r[1].event("ready").is_some()
    });
    let old_exit = runs[0]
        .event("exit")
        .map(|r| r.ms)
        .unwrap_or_else(|| panic!("old k3s not stopped: {runs:#?}"));
    assert!(old_exit <= runs[1].started_ms, "two k3s at once");
    let _ = reaper.join();
    assert_eq!(h.finish(), Outcome::Stopped);
}
