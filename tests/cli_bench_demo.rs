//! `edgewire demo` and `edgewire bench` end to end, as root: exit status, what they print,
//! and that nothing is left behind — namespaces, temp dirs, UAPI sockets, processes — after
//! success, after a failure and after Ctrl-C (SIGINT).
//!
//! Needs root, /dev/net/tun, `ip` and `ping` (plus `wg`/`wireguard-go` for `--impl`): missing
//! → the test fails when CI=true, otherwise it prints SKIP and returns. The tests hold one
//! lock so that they do not measure each other's traffic on a small machine.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

const EDGEWIRE: &str = env!("CARGO_BIN_EXE_edgewire");
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Root, /dev/net/tun, `ip`, `ping` and `tools`. Missing: panic under CI, else SKIP.
fn prerequisites(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_owned());
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun".to_owned());
    }
    for t in ["ip", "ping"].iter().chain(tools) {
        if which(t).is_none() {
            missing.push(format!("`{t}` on PATH"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: missing {}", missing.join(", "));
    assert!(!in_ci(), "{msg} (CI=true: these tests must run)");
    eprintln!("SKIP {msg}");
    false
}

struct Run {
    pid: u32,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "status {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs edgewire with output in files (children that keep descriptors never hang us);
/// `sigint_when` sends SIGINT once stderr contains that text.
fn edgewire(
    args: &[&str],
    path: Option<&Path>,
    timeout: Duration,
    sigint_when: Option<&str>,
) -> Run {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ew-cli-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (out_path, err_path) = (
        dir.join(format!("{}.out", args[0])),
        dir.join(format!("{}.err", args[0])),
    );
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let mut cmd = Command::new(EDGEWIRE);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("RUST_BACKTRACE", "0");
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("starting edgewire");
    let pid = child.id();
    let mut sent = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for edgewire") {
            break s;
        }
        if let (Some(text), false) = (sigint_when, sent) {
            if std::fs::read_to_string(&err_path)
                .unwrap_or_default()
                .contains(text)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
                sent = true;
            }
        }
        if start.elapsed() > timeout {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "edgewire {args:?} did not finish within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        pid,
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: start.elapsed(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    if let (Some(text), false) = (sigint_when, sent) {
        panic!("never saw {text:?} on stderr\n{}", run.describe());
    }
    run
}

fn base36(mut n: u64) -> String {
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

/// Nothing of run `pid` (command `tag`) is left: namespaces, temp dir, UAPI sockets
/// (interfaces are named PREFIX + base36(pid) + counter), processes naming its temp dir.
fn assert_clean(run: &Run, tag: &str) {
    let pid = run.pid;
    let ns_prefix = format!("ew-{tag}-{pid}-");
    let left_ns: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let left_ns: Vec<&String> = left_ns
        .iter()
        .filter(|n| n.starts_with(&ns_prefix))
        .collect();
    assert!(
        left_ns.is_empty(),
        "namespaces left: {left_ns:?}\n{}",
        run.describe()
    );
    let dir = std::env::temp_dir().join(format!("edgewire-{tag}-{pid}"));
    assert!(!dir.exists(), "{} left\n{}", dir.display(), run.describe());
    let p36 = base36(u64::from(pid));
    let sockets: Vec<String> = std::fs::read_dir("/var/run/wireguard")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let ours: Vec<&String> = sockets
        .iter()
        .filter(|s| {
            ["ewh", "ewg", "ewc"]
                .iter()
                .any(|p| s.starts_with(&format!("{p}{p36}")))
        })
        .collect();
    assert!(
        ours.is_empty(),
        "UAPI sockets left: {ours:?}\n{}",
        run.describe()
    );
    let needle = dir.display().to_string();
    // bench's RTT floor runs this executable (no temp dir in its command line); the tests
    // hold one lock, so any of these alive now is left over from this run.
    let floor = format!("{EDGEWIRE} relay-floor");
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
                    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                    (cmd.contains(&needle) || cmd.starts_with(&floor))
                        .then(|| format!("{}: {cmd}", e.file_name().to_string_lossy()))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        procs.is_empty(),
        "processes left: {procs:?}\n{}",
        run.describe()
    );
}

fn assert_keys_hidden(run: &Run) {
    for l in run.stdout.lines().filter(|l| l.contains("PrivateKey")) {
        assert!(l.contains("(hidden"), "a private key was printed: {l}");
    }
}

#[test]
fn demo_passes_and_cleans_up() {
    if !prerequisites("demo_passes_and_cleans_up", &[]) {
        return;
    }
    let _g = serial();
    let run = edgewire(
        &["demo", "--duration", "2"],
        None,
        Duration::from_secs(90),
        None,
    );
    eprintln!("demo took {:?}\n{}", run.elapsed, run.stdout);
    assert!(run.status.success(), "{}", run.describe());
    for want in [
        "[1/8] Checking this machine",
        "[8/8] k3s over the tunnel",
        "PrivateKey = (hidden",
        "ListenPort = 51820",
        "Endpoint = 198.1",
        "PersistentKeepalive = 21",
        "gateway 10.8.0.2 → cloud 10.8.0.1: 3/3 replies",
        "cloud 10.8.0.1 → gateway 10.8.0.2: 3/3 replies",
        "through the tunnel (one TCP stream)",
        "latest handshake:",
        "✓ processes stopped; namespaces, interfaces, sockets and config files removed",
        "✓ demo passed",
    ] {
        assert!(
            run.stdout.contains(want),
            "missing {want:?}\n{}",
            run.describe()
        );
    }
    if which("k3s").is_none() {
        assert!(
            run.stdout.contains("k3s not found on PATH"),
            "{}",
            run.describe()
        );
        assert!(
            run.stdout.contains("edgewire server --config")
                && run.stdout.contains("edgewire agent --config")
        );
    }
    assert_keys_hidden(&run);
    assert_clean(&run, "demo");
}

/// A fresh machine: only iproute2 and ping. No wg (status from the UAPI socket), no iperf3
/// (built-in generator), no k3s.
#[test]
fn demo_with_only_iproute2_and_ping() {
    if !prerequisites("demo_with_only_iproute2_and_ping", &[]) {
        return;
    }
    let _g = serial();
    let bin = std::env::temp_dir().join(format!("ew-cli-test-path-{}", std::process::id()));
    std::fs::create_dir_all(&bin).expect("bin dir");
    for tool in ["ip", "ping"] {
        let target = which(tool).expect("tool");
        let _ = std::fs::remove_file(bin.join(tool));
        std::os::unix::fs::symlink(target, bin.join(tool)).expect("symlink");
    }
    let run = edgewire(
        &["demo", "--duration", "2"],
        Some(&bin),
        Duration::from_secs(90),
        None,
    );
    let _ = std::fs::remove_dir_all(&bin);
    eprintln!("demo took {:?}\n{}", run.elapsed, run.stdout);
    assert!(run.status.success(), "{}", run.describe());
    for want in [
        "wg not found",
        "built-in TCP generator",
        "(UAPI /var/run/wireguard/",
        "peer: ",
        "transfer: ",
        "k3s not found on PATH",
        "✓ demo passed",
    ] {
        assert!(
            run.stdout.contains(want),
            "missing {want:?}\n{}",
            run.describe()
        );
    }
    assert_keys_hidden(&run);
    assert_clean(&run, "demo");
}

/// With the stand-in k3s built next to edgewire (scripts/test builds the workspace):
/// `edgewire server` in the cloud and `edgewire agent` in the gateway, over the tunnel.
#[test]
fn demo_launches_k3s_over_the_tunnel() {
    if !prerequisites("demo_launches_k3s_over_the_tunnel", &[]) {
        return;
    }
    let standin = Path::new(EDGEWIRE).with_file_name("k3s");
    if !standin.is_file() {
        let msg = format!(
            "stand-in k3s not built at {} (cargo build --workspace)",
            standin.display()
        );
        assert!(!in_ci(), "{msg}");
        eprintln!("SKIP {msg}");
        return;
    }
    let _g = serial();
    let k3s = standin.display().to_string();
    let run = edgewire(
        &[
            "demo",
            "--duration",
            "1",
            "--k3s",
            &k3s,
            "--k3s-timeout",
            "60",
        ],
        None,
        Duration::from_secs(150),
        None,
    );
    eprintln!("demo took {:?}\n{}", run.elapsed, run.stdout);
    assert!(run.status.success(), "{}", run.describe());
    for want in [
        "k3s server ready on 10.8.0.1:6443",
        "k3s agent joined https://10.8.0.1:6443 through the tunnel",
        "edgewire agent stopped on SIGTERM",
        "edgewire server stopped on SIGTERM",
        "✓ demo passed",
    ] {
        assert!(
            run.stdout.contains(want),
            "missing {want:?}\n{}",
            run.describe()
        );
    }
    assert_clean(&run, "demo");
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", run.describe()))
}

#[test]
fn bench_json_short_run() {
    if !prerequisites("bench_json_short_run", &[]) {
        return;
    }
    let _g = serial();
    let run = edgewire(
        &[
            "bench",
            "--duration",
            "2",
            "--json",
            "--pings",
            "20",
            // Parsed and reported; no test can exceed it, so none runs twice.
            "--max-steal",
            "100",
        ],
        None,
        Duration::from_secs(120),
        None,
    );
    eprintln!(
        "bench took {:?}\n{}\n{}",
        run.elapsed, run.stderr, run.stdout
    );
    assert!(run.status.success(), "{}", run.describe());
    let v = json(&run);
    assert_eq!(v["mtu"], 1420);
    assert_eq!(v["duration_s"], 2);
    assert_eq!(v["max_steal_pct"], 100.0);
    assert!(!run.stderr.contains(", again:"), "{}", run.describe());
    let r = &v["results"][0];
    assert_eq!(r["name"], "edgewire", "{v:#}");
    assert_eq!(r["ok"], true, "{v:#}");
    for k in [
        "tcp_1_stream_bps",
        "tcp_n_streams_bps",
        "tcp_reverse_bps",
        "udp64_received_pps",
        "rtt_avg_ms",
        "rtt_max_ms",
    ] {
        let x = r[k].as_f64().unwrap_or(0.0);
        assert!(x > 0.0, "{k} = {x}\n{v:#}");
    }
    assert_eq!(r["pings_received"], 20, "{v:#}");
    if which("nft").is_some() || in_ci() {
        // Counted where the tunnel delivers: at least what iperf3 then read.
        let carried = r["udp64_carried_pps"].as_f64().unwrap_or(0.0);
        let received = r["udp64_received_pps"].as_f64().unwrap_or(0.0);
        assert!(carried >= received * 0.99 && carried > 0.0, "{v:#}");
    }
    // The RTT floor: the same 20 probes through a plain relay, answered and timed.
    let floor = &v["rtt_floor"];
    assert_eq!(floor["probes_answered"], 20, "{v:#}");
    let (favg, fmax) = (
        floor["avg_ms"].as_f64().unwrap_or(0.0),
        floor["max_ms"].as_f64().unwrap_or(0.0),
    );
    assert!(favg > 0.0 && fmax >= favg, "{v:#}");
    // The host's steal during each column's tests: a share, where /proc/stat has one.
    for steal in [&r["host_steal_pct"], &floor["host_steal_pct"]] {
        let pct = steal.as_f64().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&pct), "{v:#}");
    }
    for want in [
        "✓ tunnel passes traffic",
        "✓ RTT floor, 20 × 0.05 s",
        "✓ TCP, 1 stream, 2 s:",
        "✓ TCP, 4 streams",
        "✓ TCP, reverse",
        "received",
        "✓ ping RTT",
    ] {
        assert!(
            run.stderr.contains(want),
            "progress {want:?} missing\n{}",
            run.describe()
        );
    }
    assert_clean(&run, "bench");
}

/// `--impl` with another UAPI implementation and the built-in generator: test by test,
/// both back to back, and edgewire's ratio to it.
#[test]
fn bench_against_another_implementation_with_builtin_generator() {
    if !prerequisites(
        "bench_against_another_implementation_with_builtin_generator",
        &["wg", "wireguard-go"],
    ) {
        return;
    }
    let _g = serial();
    let args = [
        "bench",
        "--impl",
        "wireguard-go -f {iface}",
        "--generator",
        "builtin",
        "--duration",
        "1",
        "--pings",
        "5",
    ];
    let run = edgewire(&args, None, Duration::from_secs(90), None);
    eprintln!(
        "bench took {:?}\n{}\n{}",
        run.elapsed, run.stderr, run.stdout
    );
    assert!(run.status.success(), "{}", run.describe());
    assert!(
        run.stdout.contains("wireguard-go") && run.stdout.contains("TCP, 1 stream"),
        "{}",
        run.describe()
    );
    assert!(run.stdout.contains("built-in"), "{}", run.describe());
    // Test-major order: both implementations' one-stream tests before either's 4 streams.
    let at = |needle: &str| run.stderr.find(needle).unwrap_or(usize::MAX);
    let order = [
        at("[1/2] edgewire: ✓ TCP, 1 stream"),
        at("[2/2] wireguard-go: ✓ TCP, 1 stream"),
        at("[1/2] edgewire: ✓ TCP, 4 streams"),
        at("[2/2] wireguard-go: ✓ TCP, 4 streams"),
        at("[2/2] wireguard-go: ✓ ping RTT"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1] && w[1] != usize::MAX),
        "{order:?}\n{}",
        run.describe()
    );
    assert!(
        run.stdout
            .contains("edgewire ÷ each other implementation, measured back to back"),
        "{}",
        run.describe()
    );
    let ratio = run
        .stdout
        .lines()
        .rfind(|l| l.starts_with("TCP, 1 stream"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|x| x.strip_suffix('×'))
        .and_then(|x| x.parse::<f64>().ok());
    assert!(ratio.is_some_and(|r| r > 0.0), "{}", run.describe());
    if which("nft").is_some() || in_ci() {
        let carried = run
            .stdout
            .lines()
            .find(|l| l.starts_with("UDP 64 B, carried"));
        assert!(
            carried.is_some_and(|l| l.contains("kpps") || l.contains("Mpps")),
            "{}",
            run.describe()
        );
    }
    assert_clean(&run, "bench");
}

/// A `--max-steal` that is no percentage is refused before anything is created.
#[test]
fn bench_refuses_a_bad_max_steal() {
    for bad in ["101", "-1", "lots"] {
        let run = edgewire(
            &["bench", &format!("--max-steal={bad}")],
            None,
            Duration::from_secs(10),
            None,
        );
        assert!(!run.status.success(), "{}", run.describe());
        assert!(
            run.stderr.contains("--max-steal")
                && run
                    .stderr
                    .contains(&format!("`{bad}` is not a percentage from 0 to 100")),
            "{}",
            run.describe()
        );
    }
}

/// An implementation that never comes up: non-zero exit, the reason in the JSON, no leftovers.
#[test]
fn bench_failure_is_reported_and_cleaned_up() {
    if !prerequisites("bench_failure_is_reported_and_cleaned_up", &["wg"]) {
        return;
    }
    let _g = serial();
    let run = edgewire(
        &[
            "bench",
            "--no-edgewire",
            "--impl",
            "false {iface}",
            "--json",
        ],
        None,
        Duration::from_secs(60),
        None,
    );
    assert!(!run.status.success(), "{}", run.describe());
    let v = json(&run);
    let err = v["results"][0]["errors"]["tunnel"]
        .as_str()
        .unwrap_or_default();
    assert!(err.contains("exited"), "{v:#}");
    assert_eq!(v["results"][0]["ok"], false);
    assert!(
        run.stderr.contains("measurement(s) failed"),
        "{}",
        run.describe()
    );
    assert_clean(&run, "bench");
}

/// Ctrl-C in the middle of a measurement: exit 130, everything removed.
#[test]
fn bench_sigint_cleans_up() {
    if !prerequisites("bench_sigint_cleans_up", &[]) {
        return;
    }
    let _g = serial();
    let run = edgewire(
        &["bench", "--duration", "30"],
        None,
        Duration::from_secs(60),
        Some("TCP, 1 stream, 30 s …"),
    );
    assert_eq!(run.status.code(), Some(130), "{}", run.describe());
    assert!(
        run.elapsed < Duration::from_secs(30),
        "took {:?}\n{}",
        run.elapsed,
        run.describe()
    );
    assert!(
        run.stderr.contains("SIGINT: stopping and cleaning up")
            && run.stderr.contains("cleaned up"),
        "{}",
        run.describe()
    );
    assert_clean(&run, "bench");
}
