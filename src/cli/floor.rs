//! The RTT floor for `edgewire bench`: what any user-space tunnel between the bench's two
//! namespaces must pay on this machine before it does any work of its own.
//!
//! A probe in the gateway namespace sends 64 bytes to a relay process on loopback; the relay
//! forwards them over the veth to an echo process in the hub namespace, which sends them
//! back the same way. That is a tunnel's round trip with nothing but its wake-ups, in as
//! many processes: the gateway end woken by the application, the hub end woken by the
//! network, the application woken by the answer. No TUN, no crypto, no batching. The relay
//! sleeps in `poll` on both its sockets and, after a long sleep, stays awake for the answer
//! as edgewire's lead worker does (the same [`SpinPolicy`] and [`stay_awake`]), which saves
//! the gateway end its second wake-up; the echo does not (measured: an echo that spins as
//! well made the floor worse, 0.25 against 0.14 ms, by taking the vCPU the gateway end
//! needed; edgewire's answering end shrinks its window to 20 µs for the same reason). On a
//! virtual machine whose vCPUs halt when idle these wake-ups are most of a tunnel's idle
//! RTT, and this is the figure to hold a tunnel's ping against.
//!
//! The relay and the echo are this executable again (`edgewire relay-floor`, hidden), so the
//! bench needs nothing installed for them.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use edgewire_tunnel::device::{stay_awake, SpinPolicy};
use edgewire_tunnel::io::poll_readable;

use super::netns::{self_exe, Ns, Session, Spawn};
use super::traffic::{timed_out, PingStats};

/// Bytes per probe, like ping's default 56 + 8.
const PROBE: usize = 64;
/// The echo's port on the hub's underlay address, the relay's on the gateway's loopback.
const ECHO_PORT: u16 = 5301;
const RELAY_PORT: u16 = 5302;
/// A probe without an answer after this long counts as lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the relay and echo processes may take to answer their first probe.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The hidden `edgewire relay-floor` command: one end of the floor's path.
#[derive(clap::Args)]
pub struct RelayFloorArgs {
    #[command(subcommand)]
    role: Role,
}

#[derive(clap::Subcommand)]
enum Role {
    /// Send every datagram back where it came from.
    Echo { bind: SocketAddr },
    /// Forward datagrams from LISTEN's last sender to PEER and PEER's answers back.
    Relay {
        listen: SocketAddr,
        wire: SocketAddr,
        peer: SocketAddr,
    },
}

pub fn relay_floor(args: RelayFloorArgs) -> anyhow::Result<()> {
    match args.role {
        Role::Echo { bind } => {
            let sock = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
            run_echo(&sock).context("echo")
        }
        Role::Relay { listen, wire, peer } => {
            let app = UdpSocket::bind(listen).with_context(|| format!("binding {listen}"))?;
            let wire_sock = UdpSocket::bind(wire).with_context(|| format!("binding {wire}"))?;
            wire_sock.connect(peer)?;
            run_relay(&app, &wire_sock).context("relay")
        }
    }
}

/// `count` probes `interval` apart from `gw_ns` through a relay in `gw_ns` (underlay
/// address `gw_ip`) to an echo in `hub_ns` (underlay address `hub_ip`).
pub fn relay_rtt(
    session: &Session,
    (hub_ns, hub_ip): (&Ns, Ipv4Addr),
    (gw_ns, gw_ip): (&Ns, Ipv4Addr),
    count: u32,
    interval: Duration,
) -> anyhow::Result<PingStats> {
    let exe = self_exe();
    let echo_at = SocketAddr::from((hub_ip, ECHO_PORT));
    let relay_at = SocketAddr::from((Ipv4Addr::LOCALHOST, RELAY_PORT));
    let argv = |args: &[String]| {
        let mut v = vec![exe.clone().into_os_string(), "relay-floor".into()];
        v.extend(args.iter().map(Into::into));
        v
    };
    let echo = session.spawn(
        Spawn::new(Some(hub_ns), &argv(&["echo".into(), echo_at.to_string()])).label("floor echo"),
    )?;
    let wire_at = SocketAddr::from((gw_ip, 0));
    let relay = session.spawn(
        Spawn::new(
            Some(gw_ns),
            &argv(&[
                "relay".into(),
                relay_at.to_string(),
                wire_at.to_string(),
                echo_at.to_string(),
            ]),
        )
        .label("floor relay"),
    );
    let outcome = relay.and_then(|relay| {
        let probe = session.in_netns(gw_ns, || UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)));
        let outcome = probe.and_then(|probe| {
            probe.connect(relay_at)?;
            wait_answering(session, &probe)?;
            probe.set_read_timeout(Some(PROBE_TIMEOUT))?;
            run_probes(session, &probe, count, interval)
        });
        session.stop(&relay);
        outcome
    });
    session.stop(&echo);
    outcome
}

/// Sends every datagram back where it came from, forever.
fn run_echo(sock: &UdpSocket) -> std::io::Result<()> {
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        sock.send_to(&buf[..n], from)?;
    }
}

/// Forwards `app`'s datagrams to `wire` (connected) and `wire`'s back to whoever last sent
/// on `app`, forever. It sleeps in `poll` on both when there is nothing to read and, like
/// edgewire's lead worker, stays awake when [`SpinPolicy`] says so (after a long sleep that
/// ended with a datagram to forward), to catch the answer without a wake-up.
fn run_relay(app: &UdpSocket, wire: &UdpSocket) -> std::io::Result<()> {
    app.set_nonblocking(true)?;
    wire.set_nonblocking(true)?;
    let mut relay = Relay {
        app,
        wire,
        client: None,
        buf: [0; 2048],
    };
    let mut policy = SpinPolicy::default();
    loop {
        let slept = Instant::now();
        // As the worker sleeps; an interrupted poll just means one more empty round.
        poll_readable([Some(app.as_raw_fd()), Some(wire.as_raw_fd())], None);
        policy.slept(slept.elapsed());
        policy.handled(relay.forward()?);
        if let Some(window) = policy.take() {
            policy.spun(stay_awake(window, || relay.forward())?);
        }
    }
}

struct Relay<'a> {
    app: &'a UdpSocket,
    wire: &'a UdpSocket,
    /// Where answers go: the last sender on `app`.
    client: Option<SocketAddr>,
    buf: [u8; 2048],
}

impl Relay<'_> {
    /// Forwards everything queued both ways; how many datagrams.
    fn forward(&mut self) -> std::io::Result<usize> {
        let mut n = 0;
        loop {
            match self.app.recv_from(&mut self.buf) {
                // A refused or full socket loses this probe; the probe side counts it.
                Ok((len, from)) => {
                    self.client = Some(from);
                    let _ = self.wire.send(&self.buf[..len]);
                    n += 1;
                }
                Err(e) if timed_out(&e) => break,
                Err(e) => return Err(e),
            }
        }
        loop {
            match self.wire.recv(&mut self.buf) {
                Ok(len) => {
                    if let Some(to) = self.client {
                        let _ = self.app.send_to(&self.buf[..len], to);
                    }
                    n += 1;
                }
                Err(e) if timed_out(&e) => break,
                // An ICMP error queued on the socket (the echo not up yet): skip it.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// Probes until the first answer: both processes are then up and listening.
fn wait_answering(session: &Session, sock: &UdpSocket) -> anyhow::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while start.elapsed() < START_TIMEOUT {
        if session.interrupted() {
            bail!("interrupted");
        }
        // Refused while the relay is not bound yet; a timeout while the echo is not.
        let answered = sock.send(&[0xff; PROBE]).and_then(|_| sock.recv(&mut buf));
        match answered {
            Ok(_) => return Ok(()),
            Err(e) if timed_out(&e) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    bail!("the floor's relay and echo did not answer within {START_TIMEOUT:?}")
}

/// One probe every `interval`; each waits up to [`PROBE_TIMEOUT`] for its own answer.
fn run_probes(
    session: &Session,
    sock: &UdpSocket,
    count: u32,
    interval: Duration,
) -> anyhow::Result<PingStats> {
    let mut rtts = Vec::with_capacity(count as usize);
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    for seq in 0..count {
        if session.interrupted() {
            bail!("interrupted");
        }
        if let Some(wait) = (start + interval * seq).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut probe = [0u8; PROBE];
        probe[..4].copy_from_slice(&seq.to_be_bytes());
        let sent = Instant::now();
        sock.send(&probe).context("sending a floor probe")?;
        while sent.elapsed() < PROBE_TIMEOUT {
            match sock.recv(&mut buf) {
                Ok(n) if n == PROBE && buf[..4] == seq.to_be_bytes() => {
                    rtts.push(sent.elapsed());
                    break;
                }
                Ok(_) => {} // a late answer to an earlier probe
                Err(e) if timed_out(&e) => break,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e).context("receiving a floor probe"),
            }
        }
    }
    Ok(stats(count, &rtts))
}

/// `ping`'s summary of `rtts` out of `transmitted` probes.
fn stats(transmitted: u32, rtts: &[Duration]) -> PingStats {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let received = u32::try_from(rtts.len()).unwrap_or(u32::MAX);
    PingStats {
        transmitted,
        received,
        min_ms: rtts.iter().copied().min().map_or(0.0, ms),
        avg_ms: if received == 0 {
            0.0
        } else {
            ms(rtts.iter().sum::<Duration>()) / f64::from(received)
        },
        max_ms: rtts.iter().copied().max().map_or(0.0, ms),
    }
}

/// Where the floor's probes go, for the progress line.
pub fn describe(hub_ip: Ipv4Addr) -> String {
    format!("UDP relay on loopback → veth → echo at {hub_ip}, no TUN, no crypto")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_summarise_like_ping() {
        let rtts = [
            Duration::from_micros(100),
            Duration::from_micros(300),
            Duration::from_micros(200),
        ];
        let s = stats(4, &rtts);
        assert_eq!((s.transmitted, s.received), (4, 3));
        assert!((s.min_ms - 0.1).abs() < 1e-9, "{s:?}");
        assert!((s.avg_ms - 0.2).abs() < 1e-9, "{s:?}");
        assert!((s.max_ms - 0.3).abs() < 1e-9, "{s:?}");
        let none = stats(2, &[]);
        assert_eq!((none.received, none.avg_ms, none.min_ms), (0, 0.0, 0.0));
    }
}
