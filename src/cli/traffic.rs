//! Traffic between two namespaces for `edgewire bench` and `edgewire demo`: TCP throughput
//! (one or many streams, either direction) and small-UDP packet rates through iperf3 when
//! it is installed, or through a built-in generator (threads whose sockets were created
//! inside the namespaces); idle RTT through `ping`.
//!
//! Directions: the "server" namespace holds the iperf3 server; "forward" means the client
//! namespace sends to the server (iperf3's default), "reverse" the opposite (`iperf3 -R`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::inbound::{self, InboundCounter};
use super::netns::{on_path, Ns, Proc, Session, Spawn};

const IPERF_PORT: u16 = 5201;
/// iperf3's server answers "busy" while it winds down the previous test: retry this often,
/// this far apart.
const SERVER_BUSY_RETRIES: u32 = 10;
const SERVER_BUSY_WAIT: Duration = Duration::from_millis(500);
/// IPv4 + UDP header bytes in front of each datagram (the tunnel addresses are IPv4).
const IPV4_UDP_HEADER: u64 = 28;

/// Which traffic generator to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Generator {
    /// iperf3 when it is on PATH, otherwise the built-in one.
    Auto,
    Iperf3,
    Builtin,
}

impl Generator {
    /// `Auto` resolved against PATH; `Iperf3` without iperf3 is an error.
    pub fn resolve(self) -> anyhow::Result<Generator> {
        let have = on_path("iperf3").is_some();
        Ok(match self {
            Generator::Auto if have => Generator::Iperf3,
            Generator::Auto => Generator::Builtin,
            Generator::Iperf3 if !have => {
                bail!("--generator iperf3: iperf3 is not on PATH (apt install iperf3)")
            }
            g => g,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Generator::Auto => "auto",
            Generator::Iperf3 => "iperf3",
            Generator::Builtin => "built-in",
        }
    }
}

/// A UDP run: packets per second the sender pushed, the tunnel delivered to the receiving
/// namespace (when `nft` could count them) and the receiving application got.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UdpRate {
    pub sent_pps: f64,
    pub carried_pps: Option<f64>,
    pub received_pps: f64,
    /// The interval the rates are over.
    pub secs: f64,
}

/// `ping` summary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
    pub min_ms: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
}

/// Both namespaces and their tunnel addresses, plus the iperf3 server when used.
pub struct Rig<'s> {
    session: &'s Session,
    generator: Generator,
    server_ns: Ns,
    server_ip: Ipv4Addr,
    client_ns: Ns,
    client_ip: Ipv4Addr,
    iperf_server: Option<Proc>,
}

impl<'s> Rig<'s> {
    /// Starts the iperf3 server (when `generator` is iperf3) in `server_ns`.
    pub fn start(
        session: &'s Session,
        generator: Generator,
        (server_ns, server_ip): (&Ns, Ipv4Addr),
        (client_ns, client_ip): (&Ns, Ipv4Addr),
    ) -> anyhow::Result<Rig<'s>> {
        let mut rig = Rig {
            session,
            generator,
            server_ns: server_ns.clone(),
            server_ip,
            client_ns: client_ns.clone(),
            client_ip,
            iperf_server: None,
        };
        if generator == Generator::Iperf3 {
            let port = IPERF_PORT.to_string();
            let spec = Spawn::new(Some(server_ns), &["iperf3", "-s", "-p", port.as_str()])
                .label("iperf3-server");
            let p = session.spawn(spec)?;
            wait_listening(session, &p, IPERF_PORT)?;
            rig.iperf_server = Some(p);
        }
        Ok(rig)
    }

    /// TCP throughput in bit/s over `secs`, `streams` parallel connections.
    pub fn tcp(&self, secs: u64, streams: u32, reverse: bool) -> anyhow::Result<f64> {
        match self.generator {
            Generator::Iperf3 => {
                let mut args = vec!["-t".to_owned(), secs.to_string()];
                if streams > 1 {
                    args.extend(["-P".to_owned(), streams.to_string()]);
                }
                if reverse {
                    args.push("-R".to_owned());
                }
                let v = self.iperf_client(&args, secs)?;
                json_f64(&v, &["end", "sum_received", "bits_per_second"])
                    .context("iperf3's JSON has no end.sum_received.bits_per_second")
            }
            _ => {
                let (send, recv, ip) = if reverse {
                    (&self.server_ns, &self.client_ns, self.client_ip)
                } else {
                    (&self.client_ns, &self.server_ns, self.server_ip)
                };
                builtin_tcp(self.session, send, recv, ip, secs, streams)
            }
        }
    }

    /// UDP datagrams of `len` payload bytes sent as fast as possible from client to server,
    /// counted as they leave the tunnel (see [`InboundCounter`]) and as the server gets them.
    pub fn udp(&self, secs: u64, len: usize) -> anyhow::Result<UdpRate> {
        // Without the count (no nftables in this kernel, say) the rates still stand.
        let not_counted = |e: anyhow::Error| {
            tracing::warn!("not counting what the tunnel delivers: {e:#}");
        };
        let counter = InboundCounter::install(self.session, &self.server_ns, IPERF_PORT)
            .unwrap_or_else(|e| {
                not_counted(e);
                None
            });
        let rate = self.udp_uncounted(secs, len);
        let Some(counter) = counter else {
            return rate;
        };
        let counted = counter.read();
        counter.remove();
        let mut rate = rate?;
        match counted {
            Ok((packets, bytes)) => {
                let carried = inbound::datagrams(packets, bytes, IPV4_UDP_HEADER, len as u64);
                rate.carried_pps = Some(carried as f64 / rate.secs);
            }
            Err(e) => not_counted(e),
        }
        Ok(rate)
    }

    fn udp_uncounted(&self, secs: u64, len: usize) -> anyhow::Result<UdpRate> {
        match self.generator {
            Generator::Iperf3 => {
                let args: Vec<String> = [
                    "-u",
                    "-b",
                    "0",
                    "-l",
                    &len.to_string(),
                    "-t",
                    &secs.to_string(),
                ]
                .map(str::to_owned)
                .into();
                let v = self.iperf_client(&args, secs)?;
                parse_iperf_udp(&v, len)
            }
            _ => builtin_udp(
                self.session,
                &self.client_ns,
                &self.server_ns,
                self.server_ip,
                secs,
                len,
            ),
        }
    }

    /// Runs `iperf3 -c SERVER -J ARGS` in the client namespace; its JSON on success.
    fn iperf_client(&self, args: &[String], secs: u64) -> anyhow::Result<Value> {
        let mut argv = vec![
            "iperf3".to_owned(),
            "-c".into(),
            self.server_ip.to_string(),
            "-p".into(),
        ];
        argv.push(IPERF_PORT.to_string());
        argv.push("-J".into());
        argv.extend_from_slice(args);
        let mut attempts = 0;
        let (out, v) = loop {
            let out =
                self.session
                    .run(Some(&self.client_ns), &argv, Duration::from_secs(secs + 20))?;
            let v: Option<Value> = serde_json::from_str(&out.stdout).ok();
            let err = v
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            match err {
                None => break (out, v),
                // The server still winding down the previous test refuses the next one.
                Some(e) if e.contains("busy") && attempts < SERVER_BUSY_RETRIES => {
                    attempts += 1;
                    if self.session.interrupted() {
                        bail!("interrupted");
                    }
                    std::thread::sleep(SERVER_BUSY_WAIT);
                }
                Some(e) => bail!("iperf3 {}: {e}", args.join(" ")),
            }
        };
        match v {
            Some(v) if out.success() => Ok(v),
            _ => bail!(
                "iperf3 {} failed ({}): {}",
                args.join(" "),
                out.status,
                out.message()
            ),
        }
    }

    pub fn stop(mut self) {
        if let Some(p) = self.iperf_server.take() {
            self.session.stop(&p);
        }
    }
}

/// Waits until the process `p` listens on TCP `port` (read from /proc/PID/net/tcp{,6},
/// which show the process's own namespace).
fn wait_listening(session: &Session, p: &Proc, port: u16) -> anyhow::Result<()> {
    let needle = format!(":{port:04X} ");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = session.try_wait(p)? {
            bail!(
                "`{}` exited ({status}): {}",
                p.label,
                Session::log_tail(p, 400)
            );
        }
        let listening = ["tcp", "tcp6"].iter().any(|f| {
            let text =
                std::fs::read_to_string(format!("/proc/{}/net/{f}", p.pid)).unwrap_or_default();
            text.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&needle) && cols[3] == "0A"
            })
        });
        if listening {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("`{}` did not listen on port {port} within 10 s", p.label);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json_f64(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_f64)
}

/// Received packets per second from `iperf3 -u -J`: the receiver's byte count divided by
/// the datagram size (iperf3's own `packets` there repeats the sender's count); older
/// iperf3 without `sum_received` → packets minus lost.
pub fn parse_iperf_udp(v: &Value, len: usize) -> anyhow::Result<UdpRate> {
    let sent = json_f64(v, &["end", "sum_sent", "packets"])
        .or_else(|| json_f64(v, &["end", "sum", "packets"]));
    let secs = json_f64(v, &["end", "sum_sent", "seconds"])
        .or_else(|| json_f64(v, &["end", "sum", "seconds"]))
        .filter(|s| *s > 0.0)
        .context("iperf3's JSON has no end.sum.seconds")?;
    let received = match json_f64(v, &["end", "sum_received", "bytes"]) {
        Some(b) if len > 0 => b / len as f64,
        _ => {
            let packets = json_f64(v, &["end", "sum", "packets"])
                .context("iperf3's JSON has no end.sum.packets")?;
            packets - json_f64(v, &["end", "sum", "lost_packets"]).unwrap_or(0.0)
        }
    };
    Ok(UdpRate {
        sent_pps: sent.unwrap_or(0.0) / secs,
        carried_pps: None,
        received_pps: received.max(0.0) / secs,
        secs,
    })
}

/// `ping -c COUNT -i INTERVAL TARGET` inside `ns`.
pub fn ping(
    session: &Session,
    ns: &Ns,
    target: Ipv4Addr,
    count: u32,
    interval: f64,
) -> anyhow::Result<PingStats> {
    let deadline = (f64::from(count) * interval).ceil() as u64 + 2;
    let argv = [
        "ping".to_owned(),
        "-n".into(),
        "-q".into(),
        "-c".into(),
        count.to_string(),
        "-i".into(),
        format!("{interval}"),
        "-W".into(),
        "1".into(),
        "-w".into(),
        deadline.to_string(),
        target.to_string(),
    ];
    let out = session.run(Some(ns), &argv, Duration::from_secs(deadline + 5))?;
    parse_ping(&out.stdout)
        .with_context(|| format!("ping {target} from {}: {}", ns.name, out.message()))
}

/// The summary of iputils' or busybox's ping.
pub fn parse_ping(text: &str) -> Option<PingStats> {
    let counts = text.lines().find(|l| l.contains("transmitted"))?;
    let mut nums = counts.split(',').map(|p| {
        p.split_whitespace()
            .next()
            .and_then(|n| n.parse::<u32>().ok())
    });
    let transmitted = nums.next()??;
    let received = nums.next()??;
    let mut stats = PingStats {
        transmitted,
        received,
        min_ms: 0.0,
        avg_ms: 0.0,
        max_ms: 0.0,
    };
    if let Some(rtt) = text.lines().find(|l| l.contains("min/avg/max")) {
        let values = rtt.split('=').nth(1)?.split_whitespace().next()?;
        let v: Vec<f64> = values.split('/').filter_map(|x| x.parse().ok()).collect();
        if v.len() < 3 {
            return None;
        }
        (stats.min_ms, stats.avg_ms, stats.max_ms) = (v[0], v[1], v[2]);
    }
    Some(stats)
}

/// A read or write on a socket with a timeout (or non-blocking) that found nothing to do.
pub fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Stops the generator threads at the end of a run, whatever path it takes.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sleeps `secs`, waking to notice a Ctrl-C (the cleanup thread then ends the process).
fn run_for(session: &Session, secs: u64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    while Instant::now() < end {
        if session.interrupted() {
            bail!("interrupted");
        }
        std::thread::sleep(
            Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
        );
    }
    Ok(start.elapsed())
}

/// Built-in TCP: `streams` connections from `send_ns` to `ip` in `recv_ns`, each written
/// with 128 KiB chunks; bytes counted at the receiver.
fn builtin_tcp(
    session: &Session,
    send_ns: &Ns,
    recv_ns: &Ns,
    ip: Ipv4Addr,
    secs: u64,
    streams: u32,
) -> anyhow::Result<f64> {
    let listener = session.in_netns(recv_ns, || TcpListener::bind((ip, 0)))?;
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    let stop = Arc::new(AtomicBool::new(false));
    let _guard = StopOnDrop(Arc::clone(&stop));
    let received = Arc::new(AtomicU64::new(0));
    let mut pairs = Vec::new();
    for _ in 0..streams.max(1) {
        let tx = session
            .in_netns(send_ns, || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            })
            .with_context(|| format!("connecting to {addr} through the tunnel"))?;
        let (rx, _) = listener
            .accept()
            .with_context(|| format!("accepting on {addr}"))?;
        pairs.push((tx, rx));
    }
    let mut threads = Vec::new();
    for (mut tx, mut rx) in pairs {
        for s in [&tx, &rx] {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .context("setting a socket timeout")?;
            s.set_write_timeout(Some(Duration::from_millis(200)))
                .context("setting a socket timeout")?;
        }
        let (stop_tx, stop_rx, count) =
            (Arc::clone(&stop), Arc::clone(&stop), Arc::clone(&received));
        threads.push(std::thread::spawn(move || {
            let chunk = vec![0x5au8; 128 * 1024];
            while !stop_tx.load(Ordering::Relaxed) {
                if let Err(e) = tx.write(&chunk) {
                    if !timed_out(&e) {
                        break;
                    }
                }
            }
        }));
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while !stop_rx.load(Ordering::Relaxed) {
                match rx.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        count.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if timed_out(&e) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    let elapsed = run_for(session, secs);
    let bytes = received.load(Ordering::Relaxed);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    let elapsed = elapsed?;
    if bytes == 0 {
        bail!("no TCP data arrived at {addr} in {} s", elapsed.as_secs());
    }
    Ok(bytes as f64 * 8.0 / elapsed.as_secs_f64())
}

/// Built-in UDP: one sender thread blasting `len`-byte datagrams, one receiver counting.
fn builtin_udp(
    session: &Session,
    send_ns: &Ns,
    recv_ns: &Ns,
    ip: Ipv4Addr,
    secs: u64,
    len: usize,
) -> anyhow::Result<UdpRate> {
    // The iperf3 port: free when the built-in generator runs, and what `Rig::udp` counts.
    let rx = session.in_netns(recv_ns, || UdpSocket::bind((ip, IPERF_PORT)))?;
    let addr: SocketAddr = rx.local_addr().context("reading the receiver's address")?;
    let tx = session.in_netns(send_ns, || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.connect(addr)?;
        Ok(s)
    })?;
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .context("setting a socket timeout")?;
    tx.set_write_timeout(Some(Duration::from_millis(100)))
        .context("setting a socket timeout")?;
    let stop = Arc::new(AtomicBool::new(false));
    let _guard = StopOnDrop(Arc::clone(&stop));
    let (sent, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (stop_tx, stop_rx) = (Arc::clone(&stop), Arc::clone(&stop));
    let (sent_c, received_c) = (Arc::clone(&sent), Arc::clone(&received));
    let sender = std::thread::spawn(move || {
        let payload = vec![0xa5u8; len];
        while !stop_tx.load(Ordering::Relaxed) {
            if tx.send(&payload).is_ok() {
                sent_c.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        while !stop_rx.load(Ordering::Relaxed) {
            if rx.recv(&mut buf).is_ok() {
                received_c.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let elapsed = run_for(session, secs);
    let (s, r) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::SeqCst);
    let _ = sender.join();
    let _ = receiver.join();
    let secs = elapsed?.as_secs_f64();
    Ok(UdpRate {
        sent_pps: s as f64 / secs,
        carried_pps: None,
        received_pps: r as f64 / secs,
        secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iputils_ping() {
        let text =
            "PING 10.8.0.1 (10.8.0.1) 56(84) bytes of data.\n\n--- 10.8.0.1 ping statistics ---\n\
                    50 packets transmitted, 49 received, 2% packet loss, time 2456ms\n\
                    rtt min/avg/max/mdev = 0.045/0.067/0.123/0.010 ms\n";
        let s = parse_ping(text).expect("parsed");
        assert_eq!((s.transmitted, s.received), (50, 49));
        assert_eq!((s.min_ms, s.avg_ms, s.max_ms), (0.045, 0.067, 0.123));
    }

    #[test]
    fn parses_busybox_ping_and_total_loss() {
        let bb = "--- 10.8.0.1 ping statistics ---\n3 packets transmitted, 3 packets received, 0% packet loss\n\
                  round-trip min/avg/max = 0.101/0.202/0.303 ms\n";
        let s = parse_ping(bb).expect("parsed");
        assert_eq!((s.transmitted, s.received, s.max_ms), (3, 3, 0.303));
        let lost = "--- 10.8.0.1 ping statistics ---\n3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2040ms\n";
        let s = parse_ping(lost).expect("parsed");
        assert_eq!((s.transmitted, s.received), (3, 0));
        assert_eq!(parse_ping("connect: Network is unreachable\n"), None);
    }

    #[test]
    fn parses_iperf3_udp_json() {
        // Trimmed from iperf 3.12, `-u -l 64 -b 0 -t 2 -J` over a veth.
        let v: Value = serde_json::from_str(
            r#"{"end":{"sum":{"seconds":2.000141,"bytes":40988800,"lost_packets":436970,"packets":640450},
                "sum_sent":{"seconds":2.00008,"bytes":40988800,"packets":640450,"lost_packets":0},
                "sum_received":{"seconds":2.000141,"bytes":13022720,"packets":640450,"lost_packets":436970}}}"#,
        )
        .expect("json");
        let r = parse_iperf_udp(&v, 64).expect("rate");
        assert!((r.received_pps - 203_480.0 / 2.00008).abs() < 1.0, "{r:?}");
        assert!((r.sent_pps - 640_450.0 / 2.00008).abs() < 1.0, "{r:?}");
        let old: Value = serde_json::from_str(
            r#"{"end":{"sum":{"seconds":2.0,"lost_packets":100,"packets":300}}}"#,
        )
        .expect("json");
        assert_eq!(parse_iperf_udp(&old, 64).expect("rate").received_pps, 100.0);
        assert!(parse_iperf_udp(&serde_json::json!({"end": {}}), 64).is_err());
    }
}
