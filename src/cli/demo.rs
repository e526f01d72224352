//! `edgewire demo`, the README's first command: a "cloud" and a "gateway" namespace on one
//! machine, the guide's hub and gateway configurations generated as the fleet tools would,
//! the tunnel brought up with `edgewire up` on both ends, ping both ways, a short
//! throughput run, peer status, and — when k3s is installed — `edgewire server` and
//! `edgewire agent` over the tunnel. Then everything is removed again (Ctrl-C included).
//!
//! Needs root, /dev/net/tun, `ip` and `ping`; `wg` and `iperf3` are used when present.
//! Exits non-zero when the tunnel does not pass traffic or a step fails.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use edgewire_tunnel::config::Config;
use edgewire_tunnel::key::{PrivateKey, PublicKey};

use super::netns::{self, on_path, Ns, Proc, Session, Spawn};
use super::traffic::{self, Generator, Rig};
use super::tunnels::{self, Addressing, Implementation, Tunnel};

const STEPS: u32 = 8;
/// Where `edgewire agent` reads the node token: the server's data dir (see `k3s_plan`).
const TOKEN_FILE: &str = "server/node-token";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The k3s executable (default: `k3s` on PATH). Without one, the k3s step prints what
    /// it would have run.
    #[arg(long, value_name = "PATH")]
    pub k3s: Option<PathBuf>,
    /// Seconds of the throughput run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub duration: u64,
    /// Traffic generator: iperf3 when installed (auto), or the built-in one.
    #[arg(long, value_enum, default_value_t = Generator::Auto)]
    pub generator: Generator,
    /// Seconds k3s server and agent each get to report ready.
    #[arg(long, default_value_t = 180)]
    pub k3s_timeout: u64,
}

fn step(n: u32, title: &str) {
    println!("\n[{n}/{STEPS}] {title}");
}
fn ok(msg: &str) {
    println!("      ✓ {msg}");
}
fn bad(msg: &str) {
    println!("      ✗ {msg}");
}
fn note(msg: &str) {
    println!("      · {msg}");
}
fn detail(text: &str) {
    for l in text.lines() {
        if l.trim().is_empty() {
            println!();
        } else {
            println!("          {l}");
        }
    }
}

pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    println!("edgewire demo: a hub in the \"cloud\" and an edge gateway, joined by edgewire's userspace WireGuard");
    step(1, "Checking this machine");
    if let Err(e) = netns::check_basics(&["ping"]) {
        bad(&format!("{e:#}"));
        bail!("the demo cannot run here: {e:#}");
    }
    ok("root, /dev/net/tun, ip, ping");
    let wg = on_path("wg").is_some();
    if wg {
        ok("wg found: peer status with `wg show`");
    } else {
        note("wg not found (apt install wireguard-tools): peer status read from edgewire's UAPI socket instead");
    }
    let generator = args.generator.resolve()?;
    match generator {
        Generator::Iperf3 => ok("iperf3 found: throughput measured with iperf3"),
        _ => note("iperf3 not used (apt install iperf3): throughput measured with edgewire's built-in TCP generator"),
    }

    let session = Session::start("demo")?;
    let outcome = run(&session, &args, wg, generator);
    let names = session_names(&session);
    println!("\nCleaning up");
    drop(session);
    let leftovers: Vec<&String> = names.iter().filter(|p| Path::new(p).exists()).collect();
    if leftovers.is_empty() {
        ok("processes stopped; namespaces, interfaces, sockets and config files removed");
    } else {
        bad(&format!("still present: {leftovers:?}"));
    }
    match outcome {
        Ok(()) => {
            println!("\n✓ demo passed: the tunnel carried traffic both ways.");
            Ok(())
        }
        Err(e) => {
            println!("\n✗ demo failed: {e:#}");
            Err(e)
        }
    }
}

/// Paths that must be gone after cleanup (filled in as things are created).
fn session_names(session: &Session) -> Vec<String> {
    let pid = std::process::id();
    vec![
        format!("/var/run/netns/ew-demo-{pid}-cloud"),
        format!("/var/run/netns/ew-demo-{pid}-gateway"),
        session.dir().display().to_string(),
    ]
}

fn run(session: &Session, args: &DemoArgs, wg: bool, generator: Generator) -> anyhow::Result<()> {
    step(
        2,
        "Creating the cloud and the gateway (two network namespaces and a veth)",
    );
    let cloud = session.netns("cloud")?;
    let gateway = session.netns("gateway")?;
    let veth = session.veth(&cloud, &gateway)?;
    ok(&format!(
        "{}: underlay {} on {}",
        cloud.name, veth.a_ip, veth.a_if
    ));
    ok(&format!(
        "{}: underlay {} on {}",
        gateway.name, veth.b_ip, veth.b_if
    ));

    step(
        3,
        "Generating keys and configurations, as the fleet tools would",
    );
    let addr = Addressing::GUIDE;
    let (hub_cfg, gw_cfg) = tunnels::guide_configs(addr, veth.a_ip, None)?;
    let (hub_if, gw_if) = (session.unique("ewc"), session.unique("ewg"));
    for (role, iface, cfg) in [("hub", &hub_if, &hub_cfg), ("gateway", &gw_if, &gw_cfg)] {
        ok(&format!(
            "{role}: {}/{iface}.conf (mode 0600)",
            session.dir().display()
        ));
        detail(&redacted(cfg));
    }

    step(4, "Bringing the tunnel up: `edgewire up` in each namespace");
    let imp = Implementation::Edgewire { offload_off: false };
    let hub = tunnels::start(session, &imp, &cloud, &hub_if, &hub_cfg, session.dir())?;
    ok(&format!(
        "cloud: edgewire up {hub_if}.conf (PID {}): {hub_if} {}/24, UDP 51820",
        hub.process.pid, addr.hub
    ));
    let gw = tunnels::start(session, &imp, &gateway, &gw_if, &gw_cfg, session.dir())?;
    ok(&format!(
        "gateway: edgewire up {gw_if}.conf (PID {}): {gw_if} {}/24",
        gw.process.pid, addr.gateway
    ));

    step(5, "Ping through the tunnel");
    let pinged = ping_both_ways(session, (&cloud, addr.hub), (&gateway, addr.gateway));
    if let Err(e) = &pinged {
        bad(&format!("{e:#}"));
        step(7, "Peer status (for diagnosis)");
        peer_status(session, wg, &[("cloud", &hub), ("gateway", &gw)]);
        return Err(anyhow::anyhow!("the tunnel does not pass traffic: {e:#}"));
    }

    step(
        6,
        &format!(
            "Throughput, gateway → cloud ({}, {} s)",
            generator.name(),
            args.duration
        ),
    );
    let rig = Rig::start(
        session,
        generator,
        (&cloud, addr.hub),
        (&gateway, addr.gateway),
    )?;
    let tcp = rig.tcp(args.duration, 1, false);
    rig.stop();
    match tcp {
        Ok(bps) => ok(&format!(
            "{} through the tunnel (one TCP stream)",
            super::bench::fmt_bps(&bps)
        )),
        Err(e) => {
            bad(&format!("{e:#}"));
            return Err(e.context("throughput run"));
        }
    }

    step(7, "Peer status");
    peer_status(session, wg, &[("cloud", &hub), ("gateway", &gw)]);

    step(8, "k3s over the tunnel");
    k3s_step(session, args, (&cloud, &hub), (&gateway, &gw), addr.hub)
}

/// The configuration as written, with the private key replaced.
fn redacted(cfg: &Config) -> String {
    cfg.to_conf_string()
        .lines()
        .map(|l| {
            if l.starts_with("PrivateKey") {
                "PrivateKey = (hidden; in the file)"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ping_both_ways(
    session: &Session,
    (cloud, hub_ip): (&Ns, Ipv4Addr),
    (gateway, gw_ip): (&Ns, Ipv4Addr),
) -> anyhow::Result<()> {
    // The gateway has the hub's Endpoint, so its first packet starts the handshake.
    let first = tunnels::wait_traffic(session, gateway, hub_ip, Duration::from_secs(15))?;
    ok(&format!(
        "handshake done, first reply after {:.2} s",
        first.as_secs_f64()
    ));
    for (from, from_ip, ns, to, to_ip) in [
        ("gateway", gw_ip, gateway, "cloud", hub_ip),
        ("cloud", hub_ip, cloud, "gateway", gw_ip),
    ] {
        let p = traffic::ping(session, ns, to_ip, 3, 0.2)?;
        let line = format!(
            "{from} {from_ip} → {to} {to_ip}: {}/{} replies, avg {:.3} ms",
            p.received, p.transmitted, p.avg_ms
        );
        if p.received == 0 {
            bail!("{line}");
        }
        ok(&line);
    }
    Ok(())
}

fn peer_status(session: &Session, wg: bool, tunnels: &[(&str, &Tunnel)]) {
    for (role, t) in tunnels {
        let shown = if wg {
            session
                .run(
                    Some(&t.ns),
                    &["wg", "show", &t.iface],
                    Duration::from_secs(5),
                )
                .and_then(|o| {
                    if o.success() {
                        Ok(o.stdout)
                    } else {
                        bail!("wg show: {}", o.message())
                    }
                })
                .map(|s| (format!("`wg show {}`", t.iface), s))
        } else {
            uapi_show(&t.iface).map(|s| {
                (
                    format!("UAPI {}", tunnels::socket_path(&t.iface).display()),
                    s,
                )
            })
        };
        match shown {
            Ok((how, text)) => {
                ok(&format!("{role} ({how}):"));
                detail(text.trim_end());
            }
            Err(e) => bad(&format!("{role}: {e:#}")),
        }
    }
}

/// `wg show`'s view, read from the UAPI socket directly (`get=1`). Never prints the key.
fn uapi_show(iface: &str) -> anyhow::Result<String> {
    let path = tunnels::socket_path(iface);
    let mut s =
        UnixStream::connect(&path).with_context(|| format!("connecting to {}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .context("setting a socket timeout")?;
    s.write_all(b"get=1\n\n")
        .with_context(|| format!("writing to {}", path.display()))?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.ends_with(b"\n\n") && reply.len() < 1 << 20 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e).with_context(|| format!("reading from {}", path.display())),
        }
    }
    Ok(format_uapi(
        iface,
        &String::from_utf8_lossy(&reply),
        now_unix(),
    ))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Formats a UAPI `get` reply the way `wg show` does.
fn format_uapi(iface: &str, reply: &str, now: u64) -> String {
    #[derive(Default)]
    struct Peer {
        key: String,
        endpoint: Option<String>,
        allowed: Vec<String>,
        handshake: u64,
        rx: u64,
        tx: u64,
        keepalive: u64,
    }
    let mut head = format!("interface: {iface}\n");
    let mut peers: Vec<Peer> = Vec::new();
    for line in reply.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let num = || v.parse::<u64>().unwrap_or(0);
        match (k, peers.last_mut()) {
            ("private_key", None) => {
                if let Ok(k) = PrivateKey::from_hex(v) {
                    head.push_str(&format!(
                        "  public key: {}\n  private key: (hidden)\n",
                        k.public_key().to_base64()
                    ));
                }
            }
            ("listen_port", None) => head.push_str(&format!("  listening port: {v}\n")),
            ("public_key", _) => {
                let key = PublicKey::from_hex(v)
                    .map(|k| k.to_base64())
                    .unwrap_or_else(|_| "(invalid key)".into());
                peers.push(Peer {
                    key,
                    ..Peer::default()
                });
            }
            ("endpoint", Some(p)) => p.endpoint = Some(v.to_owned()),
            ("allowed_ip", Some(p)) => p.allowed.push(v.to_owned()),
            ("last_handshake_time_sec", Some(p)) => p.handshake = num(),
            ("rx_bytes", Some(p)) => p.rx = num(),
            ("tx_bytes", Some(p)) => p.tx = num(),
            ("persistent_keepalive_interval", Some(p)) => p.keepalive = num(),
            _ => {}
        }
    }
    let mut out = head;
    for p in peers {
        out.push_str(&format!("\npeer: {}\n", p.key));
        if let Some(e) = p.endpoint {
            out.push_str(&format!("  endpoint: {e}\n"));
        }
        let allowed = if p.allowed.is_empty() {
            "(none)".to_owned()
        } else {
            p.allowed.join(", ")
        };
        out.push_str(&format!("  allowed ips: {allowed}\n"));
        match p.handshake {
            0 => out.push_str("  latest handshake: (none)\n"),
            t => out.push_str(&format!(
                "  latest handshake: {} seconds ago\n",
                now.saturating_sub(t)
            )),
        }
        out.push_str(&format!(
            "  transfer: {} received, {} sent\n",
            bytes(p.rx),
            bytes(p.tx)
        ));
        if p.keepalive > 0 {
            out.push_str(&format!(
                "  persistent keepalive: every {} seconds\n",
                p.keepalive
            ));
        }
    }
    out
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.2} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The two launcher command lines of the k3s step.
struct K3sPlan {
    server: Vec<String>,
    agent: Vec<String>,
    server_data: PathBuf,
}

fn k3s_plan(
    exe: &str,
    k3s: Option<&str>,
    dir: &Path,
    hub: &Tunnel,
    gw: &Tunnel,
    hub_ip: Ipv4Addr,
) -> K3sPlan {
    let server_data = dir.join("k3s-cloud");
    let s = |p: &Path| p.display().to_string();
    // Without a k3s path the launcher looks for `k3s` on PATH itself.
    let k3s_flag: Vec<String> = k3s
        .map(|k| vec!["--k3s".to_owned(), k.to_owned()])
        .unwrap_or_default();
    let common = |role: &str, config: &Path| -> Vec<String> {
        let mut v = vec![
            exe.to_owned(),
            role.to_owned(),
            "--config".to_owned(),
            s(config),
        ];
        v.extend(k3s_flag.iter().cloned());
        v.extend(["--stop-timeout".to_owned(), "10".to_owned()]);
        v
    };
    let mut server = common("server", &hub.config_path);
    server.extend([
        "--".to_owned(),
        "--data-dir".to_owned(),
        s(&server_data),
        "--write-kubeconfig".to_owned(),
        s(&server_data.join("k3s.yaml")),
        "--node-name".to_owned(),
        "edgewire-demo-cloud".to_owned(),
    ]);
    let mut agent = common("agent", &gw.config_path);
    agent.extend([
        "--server".to_owned(),
        hub_ip.to_string(),
        "--token-file".to_owned(),
        s(&server_data.join(TOKEN_FILE)),
        "--".to_owned(),
        "--data-dir".to_owned(),
        s(&dir.join("k3s-gateway")),
        "--node-name".to_owned(),
        "edgewire-demo-gateway".to_owned(),
    ]);
    K3sPlan {
        server,
        agent,
        server_data,
    }
}

/// True when this build's `edgewire server`/`agent` take the flags the plan uses.
fn launcher_available(session: &Session, exe: &str) -> bool {
    let help = |role: &str| {
        session
            .run(None, &[exe, role, "--help"], Duration::from_secs(10))
            .map(|o| o.stdout)
            .unwrap_or_default()
    };
    let (server, agent) = (help("server"), help("agent"));
    ["--config", "--k3s", "--stop-timeout"]
        .iter()
        .all(|f| server.contains(f))
        && ["--config", "--server", "--token-file", "--k3s"]
            .iter()
            .all(|f| agent.contains(f))
}

fn k3s_step(
    session: &Session,
    args: &DemoArgs,
    (cloud, hub): (&Ns, &Tunnel),
    (gateway, gw): (&Ns, &Tunnel),
    hub_ip: Ipv4Addr,
) -> anyhow::Result<()> {
    let exe = netns::self_exe().display().to_string();
    let k3s = match &args.k3s {
        Some(p) if p.is_file() => Some(p.clone()),
        Some(p) => bail!("--k3s {}: no such file", p.display()),
        None => on_path("k3s"),
    };
    let k3s_shown = k3s.as_ref().map(|p| p.display().to_string());
    let shown = k3s_plan(
        "edgewire",
        k3s_shown.as_deref(),
        session.dir(),
        hub,
        gw,
        hub_ip,
    );
    let would_run = || {
        println!(
            "          ip netns exec {} {}",
            cloud.name,
            shown.server.join(" ")
        );
        println!(
            "          ip netns exec {} {}",
            gateway.name,
            shown.agent.join(" ")
        );
    };
    let Some(k3s) = k3s else {
        note("k3s not found on PATH (install it: curl -sfL https://get.k3s.io | sh -, or pass --k3s PATH); would have run:");
        would_run();
        return Ok(());
    };
    if !launcher_available(session, &exe) {
        note(&format!(
            "k3s found at {}, but this edgewire build has no k3s launcher yet; would have run:",
            k3s.display()
        ));
        would_run();
        return Ok(());
    }
    let k3s_path = k3s.display().to_string();
    let plan = k3s_plan(&exe, Some(&k3s_path), session.dir(), hub, gw, hub_ip);
    note("handing the tunnel to the launcher: `edgewire server`/`agent` bring it up themselves");
    tunnels::stop(session, hub);
    tunnels::stop(session, gw);
    let timeout = Duration::from_secs(args.k3s_timeout);
    let server = launch(session, cloud, "server", &plan.server)?;
    wait_ready(session, &server, timeout)?;
    ok(&format!(
        "cloud: k3s server ready on {hub_ip}:6443 (edgewire server, PID {})",
        server.proc.pid
    ));
    let token = plan.server_data.join(TOKEN_FILE);
    if !token.exists() {
        bail!(
            "k3s server reported ready but wrote no node token at {}",
            token.display()
        );
    }
    let agent = launch(session, gateway, "agent", &plan.agent)?;
    wait_ready(session, &agent, timeout)?;
    ok(&format!("gateway: k3s agent joined https://{hub_ip}:6443 through the tunnel (edgewire agent, PID {})", agent.proc.pid));
    for l in [&agent, &server] {
        match session.stop(&l.proc) {
            Some(s) if s.success() => ok(&format!(
                "edgewire {} stopped on SIGTERM (k3s first, then the tunnel)",
                l.role
            )),
            other => {
                let how = other
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "not reaped".into());
                bad(&format!("edgewire {} did not stop cleanly ({how})", l.role));
                bail!(
                    "`edgewire {}` on SIGTERM: {how}:\n{}",
                    l.role,
                    Session::log_tail(&l.proc, 2000)
                );
            }
        }
    }
    Ok(())
}

/// A launcher child with its own NOTIFY_SOCKET (READY=1 and STATUS= come back to us).
struct Launched {
    proc: Proc,
    notify: UnixDatagram,
    role: &'static str,
}

fn launch(
    session: &Session,
    ns: &Ns,
    role: &'static str,
    argv: &[String],
) -> anyhow::Result<Launched> {
    let notify_path = session.dir().join(format!("notify-{role}.sock"));
    let notify = UnixDatagram::bind(&notify_path)
        .with_context(|| format!("binding {}", notify_path.display()))?;
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .context("setting a socket timeout")?;
    let run_dir = session.dir().join(format!("run-{role}"));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let spec = Spawn::new(Some(ns), argv)
        .env("NOTIFY_SOCKET", &notify_path.display().to_string())
        .env("EDGEWIRE_RUN_DIR", &run_dir.display().to_string())
        .grace(Duration::from_secs(20))
        .label(format!("edgewire {role}"));
    let proc = session.spawn(spec)?;
    note(&format!(
        "{}: started `edgewire {role}` (PID {})",
        ns.name, proc.pid
    ));
    Ok(Launched { proc, notify, role })
}

/// Waits for READY=1 from the launcher, echoing each new STATUS= line.
fn wait_ready(session: &Session, l: &Launched, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_status = String::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(n) = l.notify.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            for line in msg.lines() {
                if let Some(s) = line.strip_prefix("STATUS=") {
                    if s != last_status {
                        println!("        … {}: {s}", l.role);
                        last_status = s.to_owned();
                    }
                }
            }
            if msg.lines().any(|x| x == "READY=1") {
                return Ok(());
            }
        }
        if let Some(status) = session.try_wait(&l.proc)? {
            bail!(
                "`edgewire {}` exited ({status}):\n{}",
                l.role,
                Session::log_tail(&l.proc, 2000)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "`edgewire {}` not ready within {} s:\n{}",
                l.role,
                timeout.as_secs(),
                Session::log_tail(&l.proc, 2000)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_a_uapi_reply_like_wg_show_without_the_private_key() {
        let private =
            PrivateKey::from_base64("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=").expect("key");
        let peer =
            PublicKey::from_base64("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=").expect("key");
        let reply = format!(
            "private_key={}\nlisten_port=51820\npublic_key={}\nendpoint=198.18.0.2:40000\n\
             last_handshake_time_sec=1000\nlast_handshake_time_nsec=5\nrx_bytes=2048\ntx_bytes=3145728\n\
             persistent_keepalive_interval=21\nallowed_ip=10.8.0.2/32\nprotocol_version=1\nerrno=0\n\n",
            private.to_hex(),
            peer.to_hex()
        );
        let text = format_uapi("ewc1", &reply, 1012);
        assert!(
            text.contains(&format!("public key: {}", private.public_key().to_base64())),
            "{text}"
        );
        assert!(
            !text.contains(&private.to_hex()) && !text.contains(&private.to_base64()),
            "{text}"
        );
        assert!(
            text.contains("peer: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="),
            "{text}"
        );
        assert!(text.contains("endpoint: 198.18.0.2:40000"), "{text}");
        assert!(text.contains("latest handshake: 12 seconds ago"), "{text}");
        assert!(
            text.contains("transfer: 2.00 KiB received, 3.00 MiB sent"),
            "{text}"
        );
        assert!(
            text.contains("persistent keepalive: every 21 seconds"),
            "{text}"
        );
        assert!(text.contains("allowed ips: 10.8.0.2/32"), "{text}");
    }

    #[test]
    fn redacts_the_private_key() {
        let (hub, _) =
            tunnels::guide_configs(Addressing::GUIDE, Ipv4Addr::new(198, 18, 0, 1), None)
                .expect("cfg");
        let key = hub
            .interface
            .private_key
            .map(|k| k.to_base64())
            .unwrap_or_default();
        let text = redacted(&hub);
        assert!(
            !text.contains(&key) && text.contains("PrivateKey = (hidden"),
            "{text}"
        );
        assert!(text.contains("ListenPort = 51820"), "{text}");
    }
}
