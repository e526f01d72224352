//! The launcher over a real edgewire tunnel (issue 4, "Must show"): a hub namespace and a
//! gateway namespace joined by a veth (198.18.0.0/15 underlay), the guide's tunnel shapes,
//! `edgewire server` / `edgewire agent` run with `ip netns exec`, the stand-in k3s recording
//! what it was given and what happened to it.
//!
//! - an agent started before the hub does not start k3s until the tunnel and /ping answer;
//!   both command lines carry the right flags; the token is not in argv (/proc/PID/cmdline);
//!   SIGTERM reaches k3s while the tunnel interface exists, then the interface is gone and
//!   edgewire exits 0;
//! - k3s SIGKILLed three times → restarted with growing delays, traffic keeps flowing; then
//!   edgewire itself SIGKILLed → its TUN is gone, the orphaned k3s is stopped by the next
//!   edgewire (found through the PID file) before a fresh one starts (docs/LAUNCHER.md, item 6);
//! - "Node password rejected" → no retry, the reason in STATUS and the log.
//!
//! Root and namespaces are required; with CI=true a missing prerequisite fails the test.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cmd::{Child, Cmd};
use common::netns::Netns;
use common::traffic::{ping_all, wait_ping};
use common::tunnel::{Impl, Offload, Pair, Shapes, Tunnel, HUB_IP};
use common::{edgewire_bin, wait, wg, TempDir};
use k3s_standin::record::{self, Run};
use nix::sys::signal::Signal;

type Notes = Arc<Mutex<Vec<(u128, String)>>>;

/// One `edgewire server|agent` in a namespace, with its own "systemd" notify socket.
struct Launcher {
    child: Child,
    notes: Notes,
    tag: String,
}

impl Launcher {
    fn start(
        ns: &Netns,
        dir: &TempDir,
        tag: &str,
        iface: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Launcher {
        let sock_path = dir
            .path()
            .join(format!("notify-{tag}-{}.sock", common::next_id()));
        let sock = UnixDatagram::bind(&sock_path)
            .unwrap_or_else(|e| panic!("binding {}: {e}", sock_path.display()));
        let notes: Notes = Arc::default();
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
        let p = |name: &str| dir.path().join(name);
        let mut cmd = ns
            .cmd(&[edgewire_bin()])
            .args(args)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("K3S_STANDIN_RECORD", p("record"))
            .env("EDGEWIRE_RUN_DIR", p(&format!("run-{tag}")))
            .env("K3S_CONFIG_FILE", p("no-k3s-config.yaml"))
            .env("K3S_DATA_DIR", p(&format!("data-{tag}")))
            .env("K3S_KUBECONFIG_OUTPUT", p(&format!("k3s-{tag}.yaml")))
            .env("EDGEWIRE_K3S_BACKOFF_BASE_MS", "300")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let mut child = cmd.spawn();
        child.remove_on_drop(wg::socket_path(iface));
        Launcher {
            child,
            notes,
            tag: tag.to_string(),
        }
    }

    fn notes(&self) -> Vec<(u128, String)> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note(&self, needle: &str) -> Option<(u128, String)> {
        self.notes().into_iter().find(|(_, m)| m.contains(needle))
    }

    fn wait_note(&mut self, needle: &str, timeout: Duration) -> (u128, String) {
        let found = wait::poll(timeout, || {
            self.child
                .assert_running(&format!("{}: waiting for {needle:?}", self.tag));
            self.note(needle)
        });
        found.unwrap_or_else(|| {
            panic!(
                "{}: no notification containing {needle:?}; got {:#?}",
                self.tag,
                self.notes()
            )
        })
    }

    /// SIGTERM, must exit 0 within `timeout`.
    fn stop_ok(&mut self, timeout: Duration) {
        let st = self.child.stop(Signal::SIGTERM, timeout);
        assert!(
            st.success(),
            "{}: edgewire exited with {st} after SIGTERM; log:\n{}",
            self.tag,
            self.child.log()
        );
    }
}

fn runs(dir: &TempDir, role: &str) -> Vec<Run> {
    record::runs(&dir.path().join("record"))
        .into_iter()
        .filter(|r| r.role == role)
        .collect()
}

fn wait_runs(
    dir: &TempDir,
    role: &str,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut(&[Run]) -> bool,
) -> Vec<Run> {
    wait::poll(timeout, || {
        let r = runs(dir, role);
        f(&r).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "timed out after {timeout:?} waiting for {what}; {role} runs: {:#?}",
            runs(dir, role)
        )
    })
}

fn ready(r: &[Run], n: usize) -> bool {
    r.len() > n && r[n].event("ready").is_some()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn proc_file(pid: u32, name: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/{name}")).unwrap_or_default())
        .replace('\0', " ")
}

struct Setup {
    pair: Pair,
    shapes: Shapes,
    hub_if: String,
    gw_if: String,
    hub_conf: PathBuf,
    gw_conf: PathBuf,
    token: PathBuf,
    secret: String,
    standin: String,
}

fn setup(tag: &str) -> Setup {
    let pair = Pair::new(tag);
    let shapes = Shapes::guide(&pair);
    let (hub_if, gw_if) = (wg::iface_name("kh"), wg::iface_name("kg"));
    let hub_conf = pair
        .dir
        .write(&format!("{hub_if}.conf"), &shapes.hub.wg_quick());
    let gw_conf = pair
        .dir
        .write(&format!("{gw_if}.conf"), &shapes.gw.wg_quick());
    let secret = format!("netns-token-secret-{}-{tag}", std::process::id());
    let token = pair.dir.write(
        "node-token",
        &format!("K10{}::server:{secret}\n", "ab".repeat(32)),
    );
    let standin = k3s_standin::binary().display().to_string();
    Setup {
        pair,
        shapes,
        hub_if,
        gw_if,
        hub_conf,
        gw_conf,
        token,
        secret,
        standin,
    }
}

impl Setup {
    fn hub(&self, env: &[(&str, &str)]) -> Launcher {
        let conf = self.hub_conf.display().to_string();
        let args = ["server", "--config", &conf, "--k3s", &self.standin];
        let mut env = env.to_vec();
        env.push(("K3S_TOKEN", &self.secret));
        Launcher::start(
            &self.pair.a,
            &self.pair.dir,
            "hub",
            &self.hub_if,
            &args,
            &env,
        )
    }

    fn agent(&self, env: &[(&str, &str)]) -> Launcher {
        let conf = self.gw_conf.display().to_string();
        let token = self.token.display().to_string();
        let args = [
            "agent",
            "--config",
            &conf,
            "--server",
            "10.8.0.1",
            "--token-file",
            &token,
            "--k3s",
            &self.standin,
            "--node-label",
            "site=tucson",
        ];
        Launcher::start(&self.pair.b, &self.pair.dir, "gw", &self.gw_if, &args, env)
    }
}

#[test]
fn agent_before_hub_flags_token_and_sigterm_order() {
    if !common::require_root("launcher: agent before hub", &[]) {
        return;
    }
    let s = setup("lka");
    let dir = &s.pair.dir;
    let mut gw = s.agent(&[("K3S_STANDIN_SHIM", "1")]);

    // The gateway's tunnel comes up, but without a hub there is no handshake and no k3s.
    wait::wait_until("the gateway tunnel", Duration::from_secs(20), || {
        gw.child.assert_running("gateway tunnel");
        s.pair.b.link_exists(&s.gw_if)
    });
    gw.wait_note(
        "waiting for a handshake with the hub",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_secs(3));
    gw.child.assert_running("agent waiting for the hub");
    assert!(
        runs(dir, "agent").is_empty(),
        "k3s agent started before the hub: {:#?}",
        runs(dir, "agent")
    );

    let mut hub = s.hub(&[]);
    let server = wait_runs(
        dir,
        "server",
        "k3s server ready",
        Duration::from_secs(20),
        |r| ready(r, 0),
    )
    .remove(0);
    let agent = wait_runs(
        dir,
        "agent",
        "k3s agent joined",
        Duration::from_secs(30),
        |r| ready(r, 0),
    )
    .remove(0);
    let server_ready = server.event("ready").map(|r| r.ms).unwrap_or(u128::MAX);
    assert!(
        agent.started_ms >= server_ready,
        "agent k3s started before the hub's k3s answered /ping"
    );
    assert_eq!(runs(dir, "agent").len(), 1);

    // The server's command line: everything bound to the tunnel, no external IP.
    assert_eq!(server.flag_values("--node-ip"), ["10.8.0.1"]);
    assert_eq!(server.flag_values("--advertise-address"), ["10.8.0.1"]);
    assert_eq!(server.flag_values("--tls-san"), ["10.8.0.1"]);
    assert_eq!(server.flag_values("--flannel-iface"), [s.hub_if.as_str()]);
    assert!(
        server.flag_values("--node-external-ip").is_empty(),
        "{:?}",
        server.argv
    );
    // The agent's: node IP and flannel on the tunnel, URL and token file in the environment.
    assert_eq!(agent.flag_values("--node-ip"), ["10.8.0.2"]);
    assert_eq!(agent.flag_values("--flannel-iface"), [s.gw_if.as_str()]);
    assert_eq!(agent.flag_values("--node-label"), ["site=tucson"]);
    assert_eq!(
        agent.env.get("K3S_URL").map(String::as_str),
        Some("https://10.8.0.1:6443")
    );
    assert_eq!(
        agent.env.get("K3S_TOKEN_FILE").map(PathBuf::from),
        Some(s.token.clone())
    );
    // `ps` shows /proc/PID/cmdline: no token there, neither as recorded nor live.
    assert!(
        agent.argv.iter().all(|a| !a.contains(&s.secret)),
        "token in argv: {:?}",
        agent.argv
    );
    let cmdline = proc_file(agent.pid, "cmdline");
    assert!(
        cmdline.contains("agent") && !cmdline.contains(&s.secret),
        "/proc/{}/cmdline: {cmdline}",
        agent.pid
    );
    let environ = proc_file(agent.pid, "environ");
    assert!(
        !environ.contains(&s.secret),
        "token in the agent's environment"
    );

    // READY=1 to systemd only after k3s's own.
    for (l, run) in [(&mut hub, &server), (&mut gw, &agent)] {
        let (t, _) = l.wait_note("READY=1", Duration::from_secs(10));
        assert!(
            t >= run.event("ready").map(|r| r.ms).unwrap_or(0),
            "{}: READY before k3s was ready",
            l.tag
        );
    }

    // `edgewire kubeconfig` on the hub: k3s's file with the tunnel address.
    let kubeconfig = dir.path().join("k3s-hub.yaml");
    let out = Cmd::argv(&[edgewire_bin(), "kubeconfig", "--config"])
        .arg(&s.hub_conf)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .ok();
    assert!(out.contains("server: https://10.8.0.1:6443"), "{out}");
    assert!(Path::new(&dir.path().join("data-hub/server/node-token")).exists());

    wait_ping(&s.pair.b, HUB_IP, Duration::from_secs(10));

    // SIGTERM: k3s gets SIGTERM while the interface exists; then it is gone; exit 0.
    gw.stop_ok(Duration::from_secs(20));
    let agent = runs(dir, "agent").remove(0);
    let sigterm = agent
        .event("sigterm")
        .unwrap_or_else(|| panic!("k3s agent got no SIGTERM: {agent:#?}"));
    assert_eq!(sigterm.value, format!("iface={} present", s.gw_if));
    assert!(
        !s.pair.b.link_exists(&s.gw_if),
        "{} still exists after edgewire exited",
        s.gw_if
    );
    assert!(gw.note("STOPPING=1").is_some());
    // Only k3s's PID was signalled: the shim in its process group lives on.
    let shim = agent
        .event("shim")
        .and_then(|r| r.value.parse::<i32>().ok())
        .unwrap_or(0);
    assert!(
        shim > 0 && alive(shim),
        "the container shim must survive a k3s stop"
    );

    hub.stop_ok(Duration::from_secs(20));
    let server = runs(dir, "server").remove(0);
    assert_eq!(
        server.event("sigterm").map(|r| r.value.clone()),
        Some(format!("iface={} present", s.hub_if))
    );
    assert!(!s.pair.a.link_exists(&s.hub_if));
}

#[test]
fn sigkilled_k3s_restarts_with_growing_delays_while_traffic_flows() {
    if !common::require_root("launcher: restarts", &[]) {
        return;
    }
    let s = setup("lkr");
    let dir = &s.pair.dir;
    let mut hub = s.hub(&[]);
    let gw = Tunnel::start(
        &s.pair.b,
        dir,
        Impl::EdgewireUp(Offload::On),
        &s.gw_if,
        &s.shapes.gw,
    );
    wait_runs(
        dir,
        "server",
        "k3s server ready",
        Duration::from_secs(20),
        |r| ready(r, 0),
    );
    wait_ping(&s.pair.b, HUB_IP, Duration::from_secs(15));

    for n in 1..=3 {
        let pid = runs(dir, "server")[n - 1].pid;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        // The tunnel does not care that k3s died.
        ping_all(&s.pair.b, HUB_IP, 3);
        wait_runs(
            dir,
            "server",
            "a restarted k3s server",
            Duration::from_secs(20),
            |r| ready(r, n),
        );
        hub.child.assert_running("restarting k3s");
    }
    let runs = runs(dir, "server");
    let restarts: Vec<(u128, String)> = hub
        .notes()
        .into_iter()
        .filter(|(_, m)| m.contains("restarting k3s server in"))
        .collect();
    assert_eq!(restarts.len(), 3, "{restarts:#?}");
    let gaps: Vec<u128> = (0..3)
        .map(|i| runs[i + 1].started_ms.saturating_sub(restarts[i].0))
        .collect();
    for (gap, want) in gaps.iter().zip([300u128, 600, 1200]) {
        assert!(
            *gap + 20 >= want,
            "restart after {gap} ms, backoff was {want} ms: {gaps:?}"
        );
    }
    assert!(
        gaps[0] < gaps[1] && gaps[1] < gaps[2],
        "delays must grow: {gaps:?}"
    );
    assert!(
        restarts[0].1.contains("killed by signal 9 (SIGKILL)"),
        "{}",
        restarts[0].1
    );
    ping_all(&s.pair.b, HUB_IP, 3);

    // edgewire itself crashes: its TUN goes with it, k3s (own process group) is orphaned.
    let orphan = runs[3].pid;
    hub.child.signal(Signal::SIGKILL);
    let _ = hub.child.wait_timeout(Duration::from_secs(5));
    wait::wait_until(
        "the crashed hub's TUN to vanish",
        Duration::from_secs(5),
        || !s.pair.a.link_exists(&s.hub_if),
    );
    assert!(
        alive(orphan as i32),
        "k3s should have outlived the crashed edgewire"
    );
    // The next edgewire finds it by its PID file and stops it before starting a fresh one.
    let mut hub = s.hub(&[]);
    let all = wait_runs(
        dir,
        "server",
        "k3s after the crash",
        Duration::from_secs(20),
        |r| ready(r, 4),
    );
    let stopped = all[3]
        .event("sigterm")
        .unwrap_or_else(|| panic!("orphaned k3s not stopped: {:#?}", all[3]));
    assert_eq!(
        stopped.value,
        format!("iface={} absent", s.hub_if),
        "the orphan ran on a dead tunnel"
    );
    let old_exit = all[3].event("exit").map(|r| r.ms).unwrap_or(u128::MAX);
    assert!(old_exit <= all[4].started_ms, "two k3s servers at once");
    assert!(
        hub.child.log().contains("from an earlier edgewire run"),
        "{}",
        hub.child.log()
    );
    // The gateway still holds a session with the crashed hub; WireGuard starts a new handshake
    // after 15 s of sending without an answer (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT).
    wait_ping(&s.pair.b, HUB_IP, Duration::from_secs(40));

    hub.stop_ok(Duration::from_secs(20));
    assert!(!s.pair.a.link_exists(&s.hub_if));
    drop(gw);
}

#[test]
fn node_password_rejected_is_not_retried_and_the_reason_is_shown() {
    if !common::require_root("launcher: fatal error", &[]) {
        return;
    }
    let s = setup("lkf");
    let dir = &s.pair.dir;
    let mut hub = s.hub(&[]);
    let mut gw = s.agent(&[("K3S_STANDIN_PASSWORD_REJECTED", "1")]);
    wait_runs(
        dir,
        "agent",
        "the rejected agent stopped",
        Duration::from_secs(40),
        |r| r.first().is_some_and(|r| r.event("sigterm").is_some()),
    );
    // k3s itself retries every 2 s; edgewire must not start it again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        runs(dir, "agent").len(),
        1,
        "k3s agent restarted after a fatal error"
    );
    let (_, status) = gw.wait_note("not restarting", Duration::from_secs(5));
    assert!(
        status.contains("Node password rejected") && status.contains("--with-node-id"),
        "{status}"
    );
    let log = gw.child.log();
    assert!(
        log.contains("Node password rejected") && log.contains("will not be restarted"),
        "{log}"
    );
    // The tunnel stays up so the node can be reached and fixed.
    gw.child.assert_running("after the fatal error");
    assert!(s.pair.b.link_exists(&s.gw_if));
    wait_ping(&s.pair.b, HUB_IP, Duration::from_secs(10));

    gw.stop_ok(Duration::from_secs(20));
    hub.stop_ok(Duration::from_secs(20));
}
