//! `edgewire bench`: two namespaces joined by a veth, a tunnel between them (edgewire, and
//! any other UAPI implementation given with `--impl`), and the same measurements for each,
//! side by side: one TCP stream, several streams, the reverse direction, 64-byte UDP
//! packets per second under overload, and idle ping RTT.
//!
//! Progress goes to stderr while it runs; the table (or `--json`) to stdout at the end.
//! Everything is created through a [`Session`], so it is removed on every path, Ctrl-C
//! included.
//!
//! This file runs the measurements; `retry.rs` runs one again while the host is busy,
//! `rounds.rs` combines the rounds and takes ratios, `report.rs` writes the table and the
//! JSON.

mod report;
mod retry;
mod rounds;
#[cfg(test)]
mod tests;

use std::time::Duration;

use anyhow::bail;

use super::floor;
use super::netns::{self, Ns, Session, Veth};
use super::traffic::{self, Generator, PingStats, Rig, UdpRate};
use super::tunnels::{self, Addressing, Implementation};
use report::{fmt_rtt, fmt_udp, table, to_json};
use retry::step;
use rounds::{merge_rounds, ratios};

pub use report::fmt_bps;

/// The tunnel MTU of every measurement (wg-quick's default on a 1500-byte underlay).
pub const MTU: u32 = 1420;
/// Payload of the small-packet test (IoT traffic is small).
const SMALL_UDP: usize = 64;
/// The column of the RTT floor.
const FLOOR_LABEL: &str = "relay floor";
/// Steal (per cent of CPU time) from which a progress line and the table point it out.
const STEAL_WORTH_NAMING: f64 = 1.0;
/// How many more times `--max-steal` runs a test the host's neighbours disturbed.
const STEAL_RETRIES: u32 = 3;
/// How long a tunnel may take to pass its first ping.
const FIRST_TRAFFIC: Duration = Duration::from_secs(15);

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Seconds per throughput test.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also measure another UAPI implementation: a command line in which `{iface}` is the
    /// interface name, e.g. 'wireguard-go -f {iface}', 'gotatun-cli -f {iface}',
    /// 'boringtun-cli -f --disable-drop-privileges {iface}' (as root outside sudo, boringtun
    /// cannot drop privileges). It must stay in the foreground. Repeatable.
    #[arg(long = "impl", value_name = "CMD")]
    pub impls: Vec<String>,
    /// Leave edgewire itself out (measure only the --impl commands).
    #[arg(long)]
    pub no_edgewire: bool,
    /// Leave out the RTT floor: the same pings through a plain UDP relay (no TUN, no crypto)
    /// that sleeps and wakes as edgewire's workers do, i.e. what the wake-ups alone cost here.
    #[arg(long)]
    pub no_floor: bool,
    /// edgewire's kernel offloads: `on` (whatever the kernel has), `off`
    /// (EDGEWIRE_OFFLOAD=off, the fallback paths), or `both` (measured twice).
    #[arg(long, value_enum, default_value_t = Offload::On)]
    pub offload: Offload,
    /// Traffic generator: iperf3 when installed (auto), or the built-in one.
    #[arg(long, value_enum, default_value_t = Generator::Auto)]
    pub generator: Generator,
    /// Connections in the multi-stream test.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=128))]
    pub streams: u32,
    /// Echo requests in the RTT test (one every 0.05 s).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub pings: u32,
    /// Repeat the whole run this many times and report each figure's median (ping max: the
    /// highest seen). Every round runs test by test, each test on every implementation back
    /// to back (A B C, A B C, …), and edgewire's ratios to the others are taken per round
    /// before their median: on a shared virtual machine one minute can be a third slower
    /// than the next, and this keeps the comparison fair.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Run a test again, up to 3 more times, keeping the attempt with the least steal, when
    /// the hypervisor took more than this per cent of the CPU time during it (other guests'
    /// load measured as the tunnel's). Off by default.
    #[arg(long, value_name = "PCT", value_parser = parse_pct)]
    pub max_steal: Option<f64>,
}

fn parse_pct(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a percentage from 0 to 100")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Offload {
    On,
    Off,
    Both,
}

/// The tests of a round, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    Tcp1,
    TcpN,
    Reverse,
    Udp,
    Rtt,
}

impl Test {
    const ALL: [Test; 5] = [Test::Tcp1, Test::TcpN, Test::Reverse, Test::Udp, Test::Rtt];

    /// What the test measures, as the table's rows name it.
    fn label(self, args: &BenchArgs) -> String {
        match self {
            Test::Tcp1 => "TCP, 1 stream".to_owned(),
            Test::TcpN => format!("TCP, {} streams", args.streams),
            Test::Reverse => "TCP, reverse".to_owned(),
            Test::Udp => format!("UDP {SMALL_UDP} B"),
            Test::Rtt => "ping RTT".to_owned(),
        }
    }

    /// The label with how long the test runs, as the progress lines name it.
    fn name(self, args: &BenchArgs) -> String {
        let (label, d) = (self.label(args), args.duration);
        match self {
            Test::Udp => format!("{label} under overload, {d} s"),
            Test::Rtt => format!("{label}, {} × 0.05 s", args.pings),
            _ => format!("{label}, {d} s"),
        }
    }
}

/// One measurement: not run, a value, or why it failed.
type Measure<T> = Option<Result<T, String>>;

/// A measurement's value, if it ran and succeeded.
fn ok<T>(m: &Measure<T>) -> Option<&T> {
    m.as_ref()?.as_ref().ok()
}

/// Why a measurement failed, if it ran and failed.
fn err<T>(m: &Measure<T>) -> Option<&str> {
    m.as_ref()?.as_ref().err().map(String::as_str)
}

/// Everything measured for one implementation.
#[derive(Default)]
struct Results {
    label: String,
    command: String,
    /// Why the tunnel never passed traffic (then nothing else was measured).
    error: Option<String>,
    first_reply_s: Option<f64>,
    tcp1: Measure<f64>,
    tcpn: Measure<f64>,
    reverse: Measure<f64>,
    udp: Measure<UdpRate>,
    rtt: Measure<PingStats>,
    /// Per cent of the CPU time the hypervisor gave elsewhere during these tests; merged
    /// rounds keep the worst.
    steal_pct: Option<f64>,
}

impl Results {
    /// The RTT floor's column, not an implementation (no `--impl` label has a space).
    fn is_floor(&self) -> bool {
        self.label == FLOOR_LABEL
    }

    fn failures(&self) -> usize {
        self.failed().count()
    }

    /// Every failure: the tunnel's, then each test's, in the order they run.
    fn failed(&self) -> impl Iterator<Item = Failure<'_>> {
        [
            ("tunnel", "tunnel", self.error.as_deref()),
            ("tcp_1", "TCP, 1 stream", err(&self.tcp1)),
            ("tcp_n", "TCP, streams", err(&self.tcpn)),
            ("tcp_reverse", "TCP, reverse", err(&self.reverse)),
            ("udp64", "UDP", err(&self.udp)),
            ("rtt", "ping", err(&self.rtt)),
        ]
        .into_iter()
        .filter_map(|(key, name, message)| {
            Some(Failure {
                key,
                name,
                message: message?,
            })
        })
    }
}

/// One failed measurement of a [`Results`].
struct Failure<'a> {
    /// Its key under `errors` in `--json`.
    key: &'static str,
    /// How the table's list of failures names it.
    name: &'static str,
    message: &'a str,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let mut impls = Vec::new();
    if !args.no_edgewire {
        match args.offload {
            Offload::On => impls.push(Implementation::Edgewire { offload_off: false }),
            Offload::Off => impls.push(Implementation::Edgewire { offload_off: true }),
            Offload::Both => {
                impls.push(Implementation::Edgewire { offload_off: false });
                impls.push(Implementation::Edgewire { offload_off: true });
            }
        }
    }
    impls.extend(
        args.impls
            .iter()
            .map(|c| Implementation::Command(c.clone())),
    );
    if impls.is_empty() {
        bail!("nothing to measure: --no-edgewire needs at least one --impl 'CMD {{iface}}'");
    }
    let needs_wg = impls
        .iter()
        .any(|i| matches!(i, Implementation::Command(_)));
    netns::check_basics(if needs_wg { &["ping", "wg"] } else { &["ping"] })?;
    let generator = args.generator.resolve()?;

    let session = Session::start("bench")?;
    let hub_ns = session.netns("hub")?;
    let gw_ns = session.netns("gw")?;
    let veth = session.veth(&hub_ns, &gw_ns)?;
    let tests = Test::ALL.len();
    progress(&format!(
        "edgewire bench: {} implementation(s) × {tests} tests{}, {} s per throughput test, generator {}, \
         tunnel MTU {MTU}; namespaces {} ↔ {} ({} ↔ {})",
        impls.len(),
        if args.no_floor { "" } else { " and the RTT floor" },
        args.duration,
        generator.name(),
        hub_ns.name,
        gw_ns.name,
        veth.a_ip,
        veth.b_ip
    ));
    let mut labels: Vec<String> = Vec::new();
    for imp in &impls {
        let label = unique_label(&labels, imp.label());
        labels.push(label);
    }
    let bench = Bench {
        session: &session,
        args: &args,
        generator,
        hub_ns: &hub_ns,
        gw_ns: &gw_ns,
        veth: &veth,
    };
    // rounds[i] = implementation i's results, one per round; the floor's come last.
    let mut rounds: Vec<Vec<Results>> = impls.iter().map(|_| Vec::new()).collect();
    let mut floor_rounds = Vec::new();
    for round in 1..=args.rounds {
        let in_round = |tag: String| {
            if args.rounds > 1 {
                format!("[round {round}/{}] {tag}", args.rounds)
            } else {
                tag
            }
        };
        let mut this: Vec<Results> = labels
            .iter()
            .zip(&impls)
            .map(|(label, imp)| Results {
                label: label.clone(),
                command: imp.command_line("{iface}"),
                ..Results::default()
            })
            .collect();
        // Test by test, every implementation back to back: a comparison never spans more
        // than one test's worth of minutes of a shared host's changing load.
        for test in Test::ALL {
            for (i, imp) in impls.iter().enumerate() {
                let r = &mut this[i];
                if r.error.is_some() {
                    continue; // its tunnel failed earlier in this round
                }
                let tag = in_round(format!("[{}/{}] {}", i + 1, impls.len(), labels[i]));
                let first = round == 1 && test == Test::ALL[0];
                if let Err(e) = bench.measure(imp, test, (&tag, first), r) {
                    progress(&format!("{tag}: ✗ {e:#}"));
                    r.error = Some(format!("{e:#}"));
                }
            }
        }
        for (i, r) in this.into_iter().enumerate() {
            rounds[i].push(r);
        }
        if !args.no_floor {
            floor_rounds.push(bench.floor(&in_round("floor".to_owned())));
        }
    }
    drop(session);
    if !args.no_floor {
        rounds.push(floor_rounds);
    }
    // edgewire (the first column, offloads as asked) against every --impl.
    let ratios = if args.no_edgewire {
        Vec::new()
    } else {
        let others: Vec<usize> = (0..impls.len())
            .filter(|&i| matches!(impls[i], Implementation::Command(_)))
            .collect();
        ratios(&rounds, 0, &others)
    };
    let all: Vec<Results> = rounds.into_iter().map(merge_rounds).collect();

    let failures: usize = all.iter().map(Results::failures).sum();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&args, generator, &all, &ratios))
                .unwrap_or_default()
        );
    } else {
        print!("{}", table(&args, generator, &all, &ratios));
    }
    if failures > 0 {
        bail!("{failures} measurement(s) failed (see above)");
    }
    Ok(())
}

/// What every measurement of a run shares.
struct Bench<'a> {
    session: &'a Session,
    args: &'a BenchArgs,
    generator: Generator,
    hub_ns: &'a Ns,
    gw_ns: &'a Ns,
    veth: &'a Veth,
}

impl Bench<'_> {
    /// Brings `imp` up on both ends, runs one test, brings it down. `verbose`: also say how
    /// it starts (said once per implementation; every later start is the same).
    fn measure(
        &self,
        imp: &Implementation,
        test: Test,
        (tag, verbose): (&str, bool),
        r: &mut Results,
    ) -> anyhow::Result<()> {
        let session = self.session;
        let addr = Addressing::GUIDE;
        let (hub_cfg, gw_cfg) = tunnels::guide_configs(addr, self.veth.a_ip, Some(MTU))?;
        let (hub_if, gw_if) = (session.unique("ewh"), session.unique("ewg"));
        if verbose {
            progress(&format!(
                "{tag}: starting `{}` in both namespaces",
                imp.command_line(&hub_if)
            ));
        }
        let dir = session.dir();
        let hub = tunnels::start(session, imp, self.hub_ns, &hub_if, &hub_cfg, dir)?;
        let gw = match tunnels::start(session, imp, self.gw_ns, &gw_if, &gw_cfg, dir) {
            Ok(t) => t,
            Err(e) => {
                tunnels::stop(session, &hub);
                return Err(e);
            }
        };
        let outcome = self.run_test(addr, test, (tag, verbose), r);
        tunnels::stop(session, &gw);
        tunnels::stop(session, &hub);
        outcome
    }

    /// The RTT floor (`super::floor`): the ping test's count and spacing through a plain
    /// relay.
    fn floor(&self, tag: &str) -> Results {
        let args = self.args;
        let name = format!(
            "RTT floor, {} × 0.05 s: {}",
            args.pings,
            floor::describe(self.veth.a_ip)
        );
        let (rtt, steal_pct) = step(args, tag, &name, fmt_rtt, || {
            floor::relay_rtt(
                self.session,
                (self.hub_ns, self.veth.a_ip),
                (self.gw_ns, self.veth.b_ip),
                args.pings,
                Duration::from_millis(50),
            )
        });
        Results {
            label: FLOOR_LABEL.to_owned(),
            command: "plain UDP relay in edgewire bench (no TUN, no crypto)".to_owned(),
            rtt: Some(answered(rtt, "probes answered")),
            steal_pct,
            ..Results::default()
        }
    }

    /// Waits for the tunnel's first reply, then runs `test` on it; the test's outcome and
    /// the host's steal during it go into `r`.
    fn run_test(
        &self,
        addr: Addressing,
        test: Test,
        (tag, verbose): (&str, bool),
        r: &mut Results,
    ) -> anyhow::Result<()> {
        let (session, args, gw_ns) = (self.session, self.args, self.gw_ns);
        let first = tunnels::wait_traffic(session, gw_ns, addr.hub, FIRST_TRAFFIC)?;
        let first_s = first.as_secs_f64();
        r.first_reply_s = Some(r.first_reply_s.map_or(first_s, |s| s.max(first_s)));
        if verbose {
            progress(&format!(
                "{tag}: ✓ tunnel passes traffic (first reply after {first_s:.2} s)"
            ));
        }
        let name = test.name(args);
        let d = args.duration;
        let steal_pct = if test == Test::Rtt {
            let (rtt, steal_pct) = step(args, tag, &name, fmt_rtt, || {
                traffic::ping(session, gw_ns, addr.hub, args.pings, 0.05)
            });
            r.rtt = Some(answered(rtt, "echo replies"));
            steal_pct
        } else {
            let rig = Rig::start(
                session,
                self.generator,
                (self.hub_ns, addr.hub),
                (gw_ns, addr.gateway),
            )?;
            let steal_pct = if test == Test::Udp {
                let (udp, steal_pct) = step(args, tag, &name, fmt_udp, || rig.udp(d, SMALL_UDP));
                r.udp = Some(udp);
                steal_pct
            } else {
                let (streams, reverse, slot) = match test {
                    Test::TcpN => (args.streams, false, &mut r.tcpn),
                    Test::Reverse => (1, true, &mut r.reverse),
                    _ => (1, false, &mut r.tcp1),
                };
                let (bps, steal_pct) =
                    step(args, tag, &name, fmt_bps, || rig.tcp(d, streams, reverse));
                *slot = Some(bps);
                steal_pct
            };
            rig.stop();
            steal_pct
        };
        if let Some(p) = steal_pct {
            r.steal_pct = Some(r.steal_pct.map_or(p, |q| q.max(p)));
        }
        Ok(())
    }
}

/// An RTT test in which nothing came back is a failure ("0 of N `what`"), not a 0 ms RTT.
fn answered(rtt: Result<PingStats, String>, what: &str) -> Result<PingStats, String> {
    match rtt {
        Ok(p) if p.received == 0 => Err(format!("0 of {} {what}", p.transmitted)),
        other => other,
    }
}

fn progress(line: &str) {
    eprintln!("{line}");
}

fn unique_label(done: &[String], label: String) -> String {
    let n = done
        .iter()
        .filter(|l| **l == label || l.starts_with(&format!("{label} #")))
        .count();
    if n == 0 {
        label
    } else {
        format!("{label} #{}", n + 1)
    }
}
