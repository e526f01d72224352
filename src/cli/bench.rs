//! `edgewire bench`: two namespaces joined by a veth, a tunnel between them (edgewire, and
//! any other UAPI implementation given with `--impl`), and the same measurements for each,
//! side by side: one TCP stream, several streams, the reverse direction, 64-byte UDP
//! packets per second under overload, and idle ping RTT.
//!
//! Progress goes to stderr while it runs; the table (or `--json`) to stdout at the end.
//! Everything is created through a [`Session`], so it is removed on every path, Ctrl-C
//! included.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Value};

use super::floor;
use super::netns::{self, Ns, Session, Veth};
use super::steal;
use super::traffic::{self, Generator, PingStats, Rig, UdpRate};
use super::tunnels::{self, Addressing, Implementation};

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
        usize::from(self.error.is_some())
            + [
                self.tcp1.as_ref().map(|r| r.is_err()),
                self.tcpn.as_ref().map(|r| r.is_err()),
            ]
            .into_iter()
            .chain([self.reverse.as_ref().map(|r| r.is_err())])
            .chain([
                self.udp.as_ref().map(|r| r.is_err()),
                self.rtt.as_ref().map(|r| r.is_err()),
            ])
            .filter(|f| *f == Some(true))
            .count()
    }
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

/// A measurement's value, if it ran and succeeded.
fn ok<T>(m: &Measure<T>) -> Option<&T> {
    m.as_ref()?.as_ref().ok()
}

/// One implementation's rounds as one result: each figure's median, the highest ping max,
/// and any failure (a tunnel or test that failed in one round counts as failed).
fn merge_rounds(mut rounds: Vec<Results>) -> Results {
    if rounds.len() <= 1 {
        return rounds.pop().unwrap_or_default();
    }
    let first = &rounds[0];
    Results {
        label: first.label.clone(),
        command: first.command.clone(),
        error: rounds.iter().find_map(|r| r.error.clone()),
        first_reply_s: rounds
            .iter()
            .filter_map(|r| r.first_reply_s)
            .reduce(f64::max),
        tcp1: median_measure(rounds.iter().map(|r| &r.tcp1), |v| *v),
        tcpn: median_measure(rounds.iter().map(|r| &r.tcpn), |v| *v),
        reverse: median_measure(rounds.iter().map(|r| &r.reverse), |v| *v),
        udp: median_measure(rounds.iter().map(|r| &r.udp), |u| u.received_pps).map(|m| {
            m.map(|mut u| {
                // The carried rate's own median, not the one of the round picked above.
                let carried = rounds.iter().filter_map(|r| ok(&r.udp)?.carried_pps);
                u.carried_pps = lower_median(carried.collect(), |c| *c);
                u
            })
        }),
        rtt: median_measure(rounds.iter().map(|r| &r.rtt), |p| p.avg_ms).map(|m| {
            m.map(|mut p| {
                let oks = rounds.iter().filter_map(|r| ok(&r.rtt));
                p.max_ms = oks.clone().map(|q| q.max_ms).fold(p.max_ms, f64::max);
                p.min_ms = oks.clone().map(|q| q.min_ms).fold(p.min_ms, f64::min);
                p.transmitted = oks.clone().map(|q| q.transmitted).sum();
                p.received = oks.map(|q| q.received).sum();
                p
            })
        }),
        steal_pct: rounds.iter().filter_map(|r| r.steal_pct).reduce(f64::max),
    }
}

/// The first failure among `ms`, else the element with the median `key` (for an even count
/// the lower of the middle two: a real measurement, not an average of two); `None` if no
/// round ran the test.
fn median_measure<'a, T: Clone + 'a>(
    ms: impl Iterator<Item = &'a Measure<T>>,
    key: impl Fn(&T) -> f64,
) -> Measure<T> {
    let mut oks = Vec::new();
    for m in ms {
        match m {
            Some(Err(e)) => return Some(Err(e.clone())),
            Some(Ok(v)) => oks.push(v.clone()),
            None => {}
        }
    }
    lower_median(oks, key).map(Ok)
}

/// The element with the median `key`, the lower of the middle two for an even count;
/// `None` for none.
fn lower_median<T>(mut values: Vec<T>, key: impl Fn(&T) -> f64) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| key(a).total_cmp(&key(b)));
    Some(values.swap_remove((values.len() - 1) / 2))
}

/// Runs one test with a progress line before and after; returns its outcome and the host's
/// steal during it, which the line after names when it was high enough to matter. With
/// `--max-steal`, a test that succeeded while the host took more than that runs again, up to
/// [`STEAL_RETRIES`] more times, and the attempt with the least steal is kept.
fn step<T>(
    args: &BenchArgs,
    tag: &str,
    name: &str,
    show: impl Fn(&T) -> String,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> (Result<T, String>, Option<f64>) {
    let attempt = |n: u32| -> Attempt<T> {
        if n == 0 {
            progress(&format!("{tag}: {name} …"));
        } else {
            progress(&format!(
                "{tag}: {name}, again: the host took more than {} % (attempt {}/{}) …",
                args.max_steal.unwrap_or_default(),
                n + 1,
                STEAL_RETRIES + 1
            ));
        }
        let (result, steal_pct) = steal::during(&mut f);
        let steal = match steal_pct {
            Some(p) if p >= STEAL_WORTH_NAMING => format!(" (host steal {p:.0} %)"),
            _ => String::new(),
        };
        match result {
            Ok(v) => {
                progress(&format!("{tag}: ✓ {name}: {}{steal}", show(&v)));
                Ok((v, steal_pct))
            }
            Err(e) => {
                progress(&format!("{tag}: ✗ {name}: {e:#}{steal}"));
                Err((format!("{e:#}"), steal_pct))
            }
        }
    };
    quietest(args.max_steal, attempt)
}

/// One attempt at a test: its value or error, and the host's steal during it.
type Attempt<T> = Result<(T, Option<f64>), (String, Option<f64>)>;

/// Attempt 0, then more (up to [`STEAL_RETRIES`]) while the quietest success so far had more
/// steal than `max_steal`; returns that quietest success, or the first failure.
fn quietest<T>(
    max_steal: Option<f64>,
    mut attempt: impl FnMut(u32) -> Attempt<T>,
) -> (Result<T, String>, Option<f64>) {
    let stolen = |p: Option<f64>| p.unwrap_or(0.0);
    let (mut kept, mut kept_steal) = match attempt(0) {
        Ok(ok) => ok,
        Err((e, steal_pct)) => return (Err(e), steal_pct),
    };
    for n in 1..=STEAL_RETRIES {
        if max_steal.is_none_or(|max| stolen(kept_steal) <= max) {
            break;
        }
        match attempt(n) {
            Ok((v, steal_pct)) if stolen(steal_pct) < stolen(kept_steal) => {
                (kept, kept_steal) = (v, steal_pct);
            }
            Ok(_) => {}
            // A failure is a result, not noise: it is reported, not retried away.
            Err((e, steal_pct)) => return (Err(e), steal_pct),
        }
    }
    (Ok(kept), kept_steal)
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

pub fn fmt_bps(bps: &f64) -> String {
    if *bps >= 1e9 {
        format!("{:.2} Gbit/s", bps / 1e9)
    } else {
        format!("{:.0} Mbit/s", bps / 1e6)
    }
}

fn fmt_pps(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.2} Mpps", pps / 1e6)
    } else {
        format!("{:.1} kpps", pps / 1e3)
    }
}

fn fmt_udp(u: &UdpRate) -> String {
    let carried = u
        .carried_pps
        .map(|c| format!("{} carried by the tunnel, ", fmt_pps(c)))
        .unwrap_or_default();
    format!("{carried}{} received", fmt_pps(u.received_pps))
}

fn fmt_rtt(p: &PingStats) -> String {
    format!(
        "avg {:.3} ms, max {:.3} ms ({}/{} replies)",
        p.avg_ms, p.max_ms, p.received, p.transmitted
    )
}

fn cell<T>(m: &Measure<T>, f: impl Fn(&T) -> String) -> String {
    match m {
        None => "-".to_owned(),
        Some(Ok(v)) => f(v),
        Some(Err(_)) => "failed".to_owned(),
    }
}

/// What the table's first line says about the host.
struct HostFacts {
    kernel: String,
    cpus: usize,
    /// The kernel's default TCP congestion control; the bench's namespaces inherit it, so
    /// every implementation's TCP tests run with it (iperf3 and the built-in generator
    /// alike). It matters on a contended host (docs/PERFORMANCE.md, "Congestion control").
    tcp_congestion: Option<String>,
}

fn host_facts() -> HostFacts {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    HostFacts {
        kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        tcp_congestion: read("/proc/sys/net/ipv4/tcp_congestion_control"),
    }
}

/// Rows of cells as text columns: the first left-aligned, the others right-aligned.
fn grid(rows: &[(String, Vec<String>)]) -> String {
    let first = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0) + 2;
    let columns = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.1.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
                + 2
        })
        .collect();
    let mut out = String::new();
    for (name, cells) in rows {
        let _ = write!(out, "{name:<first$}");
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(out, "{c:>w$}");
        }
        out.push('\n');
    }
    out
}

/// One implementation's figures over another's: per round (where the two ran back to back)
/// and then the median over the rounds, so a host whose load drifts from minute to minute
/// skews the comparison less than a ratio of two medians would.
#[derive(Debug, PartialEq)]
struct Ratio {
    base: String,
    against: String,
    tcp1: Option<f64>,
    tcpn: Option<f64>,
    reverse: Option<f64>,
    /// 64-byte UDP, received.
    udp: Option<f64>,
}

/// `base`'s ratios against each of `against` (indices into `rounds`, one `Vec` of rounds per
/// implementation). Rounds where either side failed a test are left out of that test's.
fn ratios(rounds: &[Vec<Results>], base: usize, against: &[usize]) -> Vec<Ratio> {
    let Some(b) = rounds.get(base) else {
        return Vec::new();
    };
    against
        .iter()
        .filter_map(|&i| rounds.get(i))
        .map(|o| {
            let paired = |f: fn(&Results) -> Option<f64>| {
                let per_round = b
                    .iter()
                    .zip(o)
                    .filter_map(|(x, y)| Some((f(x)?, f(y)?)))
                    .filter(|(_, y)| *y > 0.0)
                    .map(|(x, y)| x / y)
                    .collect();
                lower_median(per_round, |r| *r)
            };
            Ratio {
                base: b.first().map(|r| r.label.clone()).unwrap_or_default(),
                against: o.first().map(|r| r.label.clone()).unwrap_or_default(),
                tcp1: paired(|r| ok(&r.tcp1).copied()),
                tcpn: paired(|r| ok(&r.tcpn).copied()),
                reverse: paired(|r| ok(&r.reverse).copied()),
                udp: paired(|r| ok(&r.udp).map(|u| u.received_pps)),
            }
        })
        .collect()
}

fn table(args: &BenchArgs, generator: Generator, all: &[Results], ratios: &[Ratio]) -> String {
    let host = host_facts();
    let mut rows: Vec<(String, Vec<String>)> = vec![
        (String::new(), all.iter().map(|r| r.label.clone()).collect()),
        (
            Test::Tcp1.label(args),
            all.iter().map(|r| cell(&r.tcp1, fmt_bps)).collect(),
        ),
        (
            Test::TcpN.label(args),
            all.iter().map(|r| cell(&r.tcpn, fmt_bps)).collect(),
        ),
        (
            Test::Reverse.label(args),
            all.iter().map(|r| cell(&r.reverse, fmt_bps)).collect(),
        ),
        (
            format!("{}, carried", Test::Udp.label(args)),
            all.iter()
                .map(|r| cell(&r.udp, |u| u.carried_pps.map_or("-".into(), fmt_pps)))
                .collect(),
        ),
        (
            format!("{}, received", Test::Udp.label(args)),
            all.iter()
                .map(|r| cell(&r.udp, |u| fmt_pps(u.received_pps)))
                .collect(),
        ),
        (
            format!("{}, sent", Test::Udp.label(args)),
            all.iter()
                .map(|r| cell(&r.udp, |u| fmt_pps(u.sent_pps)))
                .collect(),
        ),
        (
            "ping RTT avg".into(),
            all.iter()
                .map(|r| cell(&r.rtt, |p| format!("{:.3} ms", p.avg_ms)))
                .collect(),
        ),
        (
            "ping RTT max".into(),
            all.iter()
                .map(|r| cell(&r.rtt, |p| format!("{:.3} ms", p.max_ms)))
                .collect(),
        ),
        (
            if args.rounds > 1 {
                "host steal, worst round".into()
            } else {
                "host steal".into()
            },
            all.iter()
                .map(|r| r.steal_pct.map_or("-".into(), |p| format!("{p:.1} %")))
                .collect(),
        ),
    ];
    for (i, r) in all.iter().enumerate() {
        if r.error.is_some() {
            for row in rows.iter_mut().skip(1) {
                row.1[i] = "no tunnel".into();
            }
        }
    }
    let mut rounds = if args.rounds > 1 {
        format!(", median of {} interleaved rounds", args.rounds)
    } else {
        String::new()
    };
    if let Some(max) = args.max_steal {
        let _ = write!(
            rounds,
            ",\ntests run again (up to {STEAL_RETRIES} more times, the quietest kept) while host steal > {max} %"
        );
    }
    let mut out = format!(
        "\nedgewire bench: {} s per throughput test, {}, tunnel MTU {MTU}, Linux {}, {} CPU(s), TCP congestion control {}{rounds}\n\n",
        args.duration,
        generator.name(),
        host.kernel,
        host.cpus,
        host.tcp_congestion.as_deref().unwrap_or("unknown"),
    );
    out.push_str(&grid(&rows));
    if let Some(first) = ratios.first() {
        let how = if args.rounds > 1 {
            format!("round by round, median of {}", args.rounds)
        } else {
            "one round".to_owned()
        };
        let _ = writeln!(
            out,
            "\n{} ÷ each other implementation, measured back to back ({how}):\n",
            first.base
        );
        let cells = |f: fn(&Ratio) -> Option<f64>| -> Vec<String> {
            ratios
                .iter()
                .map(|r| f(r).map_or("-".into(), |x| format!("{x:.2}×")))
                .collect()
        };
        out.push_str(&grid(&[
            (
                String::new(),
                ratios.iter().map(|r| r.against.clone()).collect(),
            ),
            (Test::Tcp1.label(args), cells(|r| r.tcp1)),
            (Test::TcpN.label(args), cells(|r| r.tcpn)),
            (Test::Reverse.label(args), cells(|r| r.reverse)),
            (
                format!("{}, received", Test::Udp.label(args)),
                cells(|r| r.udp),
            ),
        ]));
    }
    let counted = all
        .iter()
        .any(|r| matches!(&r.udp, Some(Ok(u)) if u.carried_pps.is_some()));
    if counted {
        out.push_str(
            "\ncarried: datagrams the tunnel delivered into the receiving namespace (an nftables \
             input counter);\nreceived: what the receiving application read. The difference \
             was dropped in its socket buffer.\n",
        );
    }
    if all.iter().any(Results::is_floor) {
        out.push_str(
            "\nrelay floor: the same pings through a plain UDP relay (no TUN, no crypto) that \
             sleeps and wakes as\nedgewire's workers do: what the wake-ups alone cost on this \
             machine.\n",
        );
    }
    if all
        .iter()
        .any(|r| r.steal_pct.is_some_and(|p| p >= STEAL_WORTH_NAMING))
    {
        out.push_str(
            "\nhost steal: the share of CPU time the hypervisor gave to other guests during \
             the tests (/proc/stat).\nWhere it is high, the figures measure the host's \
             neighbours as much as the tunnel.\n",
        );
    }
    let mut errors = String::new();
    for r in all {
        let named = [
            ("tunnel", r.error.as_ref().map(|e| Err::<(), _>(e.clone()))),
            (
                "TCP, 1 stream",
                r.tcp1
                    .as_ref()
                    .map(|m| m.as_ref().map(|_| ()).map_err(Clone::clone)),
            ),
            (
                "TCP, streams",
                r.tcpn
                    .as_ref()
                    .map(|m| m.as_ref().map(|_| ()).map_err(Clone::clone)),
            ),
            (
                "TCP, reverse",
                r.reverse
                    .as_ref()
                    .map(|m| m.as_ref().map(|_| ()).map_err(Clone::clone)),
            ),
            (
                "UDP",
                r.udp
                    .as_ref()
                    .map(|m| m.as_ref().map(|_| ()).map_err(Clone::clone)),
            ),
            (
                "ping",
                r.rtt
                    .as_ref()
                    .map(|m| m.as_ref().map(|_| ()).map_err(Clone::clone)),
            ),
        ];
        for (what, m) in named {
            if let Some(Err(e)) = m {
                let _ = writeln!(
                    errors,
                    "  {} / {what}: {}",
                    r.label,
                    e.lines().next().unwrap_or_default()
                );
            }
        }
    }
    if !errors.is_empty() {
        out.push_str("\nfailed:\n");
        out.push_str(&errors);
    }
    out
}

fn json_measure<T>(m: &Measure<T>, f: impl Fn(&T) -> Value) -> Value {
    match m {
        Some(Ok(v)) => f(v),
        _ => Value::Null,
    }
}

fn to_json(args: &BenchArgs, generator: Generator, all: &[Results], ratios: &[Ratio]) -> Value {
    let host = host_facts();
    let results: Vec<Value> = all
        .iter()
        .filter(|r| !r.is_floor())
        .map(|r| {
            let mut errors = serde_json::Map::new();
            let named = [
                ("tunnel", r.error.clone()),
                (
                    "tcp_1",
                    r.tcp1.as_ref().and_then(|m| m.as_ref().err().cloned()),
                ),
                (
                    "tcp_n",
                    r.tcpn.as_ref().and_then(|m| m.as_ref().err().cloned()),
                ),
                (
                    "tcp_reverse",
                    r.reverse.as_ref().and_then(|m| m.as_ref().err().cloned()),
                ),
                (
                    "udp64",
                    r.udp.as_ref().and_then(|m| m.as_ref().err().cloned()),
                ),
                (
                    "rtt",
                    r.rtt.as_ref().and_then(|m| m.as_ref().err().cloned()),
                ),
            ];
            for (k, e) in named {
                if let Some(e) = e {
                    errors.insert(k.to_owned(), Value::String(e));
                }
            }
            json!({
                "name": r.label,
                "command": r.command,
                "ok": r.failures() == 0,
                "first_reply_s": r.first_reply_s,
                "tcp_1_stream_bps": json_measure(&r.tcp1, |v| json!(v)),
                "tcp_n_streams_bps": json_measure(&r.tcpn, |v| json!(v)),
                "tcp_reverse_bps": json_measure(&r.reverse, |v| json!(v)),
                "udp64_received_pps": json_measure(&r.udp, |u| json!(u.received_pps)),
                "udp64_carried_pps": json_measure(&r.udp, |u| json!(u.carried_pps)),
                "udp64_sent_pps": json_measure(&r.udp, |u| json!(u.sent_pps)),
                "rtt_avg_ms": json_measure(&r.rtt, |p| json!(p.avg_ms)),
                "rtt_max_ms": json_measure(&r.rtt, |p| json!(p.max_ms)),
                "rtt_min_ms": json_measure(&r.rtt, |p| json!(p.min_ms)),
                "pings_sent": json_measure(&r.rtt, |p| json!(p.transmitted)),
                "pings_received": json_measure(&r.rtt, |p| json!(p.received)),
                "host_steal_pct": r.steal_pct,
                "errors": errors,
            })
        })
        .collect();
    json!({
        "duration_s": args.duration,
        "rounds": args.rounds,
        "max_steal_pct": args.max_steal,
        "streams": args.streams,
        "udp_payload_bytes": SMALL_UDP,
        "mtu": MTU,
        "generator": generator.name(),
        "kernel": host.kernel,
        "cpus": host.cpus,
        "tcp_congestion_control": host.tcp_congestion,
        "results": results,
        // Per-round ratios' medians (see `Ratio`); empty without edgewire or --impl.
        "ratios": ratios.iter().map(|r| json!({
            "base": r.base,
            "against": r.against,
            "tcp_1_stream": r.tcp1,
            "tcp_n_streams": r.tcpn,
            "tcp_reverse": r.reverse,
            "udp64_received": r.udp,
        })).collect::<Vec<_>>(),
        "rtt_floor": all.iter().find(|r| r.is_floor()).map(|f| json!({
            "command": f.command,
            "avg_ms": json_measure(&f.rtt, |p| json!(p.avg_ms)),
            "max_ms": json_measure(&f.rtt, |p| json!(p.max_ms)),
            "min_ms": json_measure(&f.rtt, |p| json!(p.min_ms)),
            "probes_sent": json_measure(&f.rtt, |p| json!(p.transmitted)),
            "probes_answered": json_measure(&f.rtt, |p| json!(p.received)),
            "error": f.rtt.as_ref().and_then(|m| m.as_ref().err().cloned()),
            "host_steal_pct": f.steal_pct,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> BenchArgs {
        BenchArgs {
            duration: 2,
            json: true,
            impls: vec![],
            no_edgewire: false,
            no_floor: false,
            offload: Offload::On,
            generator: Generator::Builtin,
            streams: 4,
            pings: 5,
            rounds: 1,
            max_steal: None,
        }
    }

    fn sample() -> Vec<Results> {
        vec![
            Results {
                label: "edgewire".into(),
                command: "edgewire up {iface}.conf".into(),
                first_reply_s: Some(0.2),
                tcp1: Some(Ok(5.5e9)),
                tcpn: Some(Ok(6.1e9)),
                reverse: Some(Err("iperf3 -R: connection reset".into())),
                udp: Some(Ok(UdpRate {
                    sent_pps: 400e3,
                    carried_pps: Some(320e3),
                    received_pps: 210e3,
                    secs: 8.0,
                })),
                rtt: Some(Ok(PingStats {
                    transmitted: 5,
                    received: 5,
                    min_ms: 0.05,
                    avg_ms: 0.07,
                    max_ms: 0.2,
                })),
                steal_pct: Some(12.25),
                ..Results::default()
            },
            Results {
                label: "wireguard-go".into(),
                error: Some("no reply".into()),
                ..Results::default()
            },
            Results {
                label: FLOOR_LABEL.into(),
                command: "plain UDP relay".into(),
                rtt: Some(Ok(PingStats {
                    transmitted: 5,
                    received: 5,
                    min_ms: 0.04,
                    avg_ms: 0.055,
                    max_ms: 0.1,
                })),
                ..Results::default()
            },
        ]
    }

    #[test]
    fn table_has_a_column_per_implementation_and_lists_failures() {
        let t = table(&args(), Generator::Builtin, &sample(), &[]);
        assert!(t.contains("edgewire") && t.contains("wireguard-go"), "{t}");
        assert!(t.contains(", TCP congestion control "), "{t}");
        assert!(
            t.contains("5.50 Gbit/s")
                && t.contains("320.0 kpps")
                && t.contains("210.0 kpps")
                && t.contains("0.070 ms")
                && t.contains("carried: datagrams the tunnel delivered"),
            "{t}"
        );
        assert!(t.contains("no tunnel"), "{t}");
        assert!(
            t.contains("edgewire / TCP, reverse: iperf3 -R: connection reset"),
            "{t}"
        );
        assert!(t.contains("wireguard-go / tunnel: no reply"), "{t}");
        let avg = t
            .lines()
            .find(|l| l.starts_with("ping RTT avg"))
            .unwrap_or_default();
        assert!(
            avg.ends_with("0.055 ms"),
            "the floor is the last column: {t}"
        );
        assert!(t.contains("relay floor: the same pings"), "{t}");
        let steal = t
            .lines()
            .find(|l| l.starts_with("host steal"))
            .unwrap_or_default();
        assert!(
            steal.contains("12.2 %") && steal.ends_with('-'),
            "steal where measured: {t}"
        );
        assert!(t.contains("host steal: the share of CPU time"), "{t}");
        let mut calm = sample();
        calm[0].steal_pct = Some(0.4);
        let t = table(&args(), Generator::Builtin, &calm, &[]);
        assert!(
            t.contains("0.4 %") && !t.contains("host steal: the share"),
            "{t}"
        );
    }

    #[test]
    fn json_has_numbers_nulls_and_errors() {
        let v = to_json(&args(), Generator::Builtin, &sample(), &[]);
        let r = &v["results"][0];
        assert_eq!(r["tcp_1_stream_bps"], json!(5.5e9));
        assert_eq!(r["tcp_reverse_bps"], Value::Null);
        assert_eq!(r["udp64_received_pps"], json!(210e3));
        assert_eq!(r["udp64_carried_pps"], json!(320e3));
        assert_eq!(r["ok"], json!(false));
        assert_eq!(v["results"][1]["errors"]["tunnel"], json!("no reply"));
        assert_eq!(v["mtu"], json!(1420));
        // The floor is not an implementation: its own object, not a result.
        assert_eq!(v["results"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["rtt_floor"]["avg_ms"], json!(0.055));
        assert_eq!(v["rtt_floor"]["probes_answered"], json!(5));
        assert_eq!(v["rtt_floor"]["error"], Value::Null);
        assert_eq!(r["host_steal_pct"], json!(12.25));
        assert_eq!(v["rtt_floor"]["host_steal_pct"], Value::Null);
        // The host's own setting, as the namespaces inherit it: present wherever TCP is.
        let cc = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
            .map(|s| json!(s.trim()))
            .unwrap_or(Value::Null);
        assert_eq!(v["tcp_congestion_control"], cc);
    }

    #[test]
    fn rounds_merge_to_medians_and_keep_failures() {
        let round = |tcp1: f64, pps: f64, avg: f64, max: f64| Results {
            label: "edgewire".into(),
            first_reply_s: Some(avg),
            tcp1: Some(Ok(tcp1)),
            udp: Some(Ok(UdpRate {
                sent_pps: pps * 2.0,
                // Ordered unlike `received_pps`, so its median comes from another round.
                carried_pps: Some(1e6 - pps),
                received_pps: pps,
                secs: 8.0,
            })),
            rtt: Some(Ok(PingStats {
                transmitted: 5,
                received: 5,
                min_ms: avg / 2.0,
                avg_ms: avg,
                max_ms: max,
            })),
            ..Results::default()
        };
        let mut bad = round(1e9, 1e3, 0.3, 0.3);
        bad.tcpn = Some(Err("iperf3 failed".into()));
        bad.steal_pct = Some(30.0);
        let m = merge_rounds(vec![
            round(3e9, 100e3, 0.2, 0.5),
            round(5e9, 300e3, 0.1, 0.9),
            bad,
            round(4e9, 200e3, 0.4, 0.6),
        ]);
        // Lower median of 1, 3, 4, 5 = 3; of the rates 1k, 100k, 200k, 300k = 100k.
        assert_eq!(m.tcp1, Some(Ok(3e9)));
        let udp = m.udp.unwrap().unwrap();
        assert_eq!((udp.received_pps, udp.sent_pps), (100e3, 200e3));
        // Carried 999k, 900k, 800k, 700k (the failed round's UDP counts): lower median 800k.
        assert_eq!(udp.carried_pps, Some(800e3));
        let p = m.rtt.unwrap().unwrap();
        assert_eq!((p.avg_ms, p.max_ms, p.min_ms), (0.2, 0.9, 0.05));
        assert_eq!((p.transmitted, p.received), (20, 20));
        assert_eq!(m.tcpn, Some(Err("iperf3 failed".into())));
        assert_eq!(m.reverse, None);
        assert_eq!(m.first_reply_s, Some(0.4));
        assert_eq!(m.steal_pct, Some(30.0), "the worst round's steal");
        // One round is passed through unchanged.
        assert_eq!(
            merge_rounds(vec![round(2e9, 1.0, 0.1, 0.2)]).tcp1,
            Some(Ok(2e9))
        );
    }

    #[test]
    fn ratios_pair_rounds_then_take_the_median() {
        let round = |label: &str, tcp1: f64, pps: f64| Results {
            label: label.into(),
            tcp1: Some(Ok(tcp1)),
            udp: Some(Ok(UdpRate {
                sent_pps: pps,
                carried_pps: None,
                received_pps: pps,
                secs: 8.0,
            })),
            ..Results::default()
        };
        // The host slows down from round to round; both sides of each round feel it alike.
        let ours = vec![
            round("edgewire", 4e9, 200e3),
            round("edgewire", 2e9, 100e3),
            round("edgewire", 1e9, 60e3),
        ];
        let mut theirs = vec![
            round("gotatun", 1e9, 100e3),
            round("gotatun", 0.4e9, 40e3),
            round("gotatun", 0.5e9, 30e3),
        ];
        theirs[1].tcp1 = Some(Err("iperf3 failed".into()));
        let silent = vec![Results {
            label: "wireguard-go".into(),
            error: Some("no reply".into()),
            ..Results::default()
        }];
        let r = ratios(&[ours, theirs, silent], 0, &[1, 2]);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].base.as_str(), r[0].against.as_str()),
            ("edgewire", "gotatun")
        );
        // TCP: rounds 1 and 3 only (4×, 2×), lower median 2×. The ratio of the medians,
        // 2 / 0.5, would say 4×.
        assert_eq!(r[0].tcp1, Some(2.0));
        // UDP: 2×, 2.5×, 2× → 2×.
        assert_eq!(r[0].udp, Some(2.0));
        assert_eq!(r[0].tcpn, None, "not measured: no ratio");
        assert_eq!(r[1].tcp1, None, "no tunnel: no ratio");

        let t = table(&args(), Generator::Builtin, &sample(), &r);
        assert!(
            t.contains("edgewire ÷ each other implementation, measured back to back (one round)"),
            "{t}"
        );
        let tcp1 = t
            .lines()
            .rfind(|l| l.starts_with("TCP, 1 stream"))
            .unwrap_or_default();
        assert!(tcp1.contains("2.00×") && tcp1.ends_with('-'), "{t}");
        let v = to_json(&args(), Generator::Builtin, &sample(), &r);
        assert_eq!(v["ratios"][0]["against"], json!("gotatun"));
        assert_eq!(v["ratios"][0]["tcp_1_stream"], json!(2.0));
        assert_eq!(v["ratios"][1]["udp64_received"], Value::Null);
        assert_eq!(
            to_json(&args(), Generator::Builtin, &sample(), &[])["ratios"],
            json!([])
        );
    }

    #[test]
    fn max_steal_keeps_the_quietest_attempt_and_never_hides_a_failure() {
        // (value, steal) per attempt, in order.
        let run = |max: Option<f64>, seq: Vec<Attempt<u32>>| {
            let mut seq = seq.into_iter();
            let mut tried = 0;
            let got = quietest(max, |n| {
                assert_eq!(n, tried, "attempts are numbered in order");
                tried += 1;
                seq.next().unwrap_or(Err(("ran out".into(), None)))
            });
            (got, tried)
        };
        let noisy = || {
            vec![
                Ok((1, Some(40.0))),
                Ok((2, Some(25.0))),
                Ok((3, Some(30.0))),
                Ok((4, Some(20.0))),
            ]
        };
        // Off: one attempt, whatever its steal.
        assert_eq!(run(None, noisy()), ((Ok(1), Some(40.0)), 1));
        // Never under 10 %: all four attempts, the quietest kept.
        assert_eq!(run(Some(10.0), noisy()), ((Ok(4), Some(20.0)), 4));
        // Under 26 % after the second: stops there.
        assert_eq!(run(Some(26.0), noisy()), ((Ok(2), Some(25.0)), 2));
        // Quiet at once, or no steal figure at all (no /proc/stat): one attempt.
        assert_eq!(
            run(Some(5.0), vec![Ok((7, Some(1.0)))]),
            ((Ok(7), Some(1.0)), 1)
        );
        assert_eq!(run(Some(5.0), vec![Ok((7, None))]), ((Ok(7), None), 1));
        // A failure, first or on a retry, is the result.
        let failed = vec![Ok((1, Some(40.0))), Err(("iperf3 died".into(), Some(2.0)))];
        assert_eq!(
            run(Some(10.0), failed),
            ((Err("iperf3 died".into()), Some(2.0)), 2)
        );
        assert_eq!(
            run(Some(10.0), vec![Err(("no route".into(), None))]),
            ((Err("no route".into()), None), 1)
        );
        assert!(parse_pct("12.5").is_ok() && parse_pct("101").is_err() && parse_pct("x").is_err());
    }

    #[test]
    fn labels_stay_unique() {
        let done = vec!["wireguard-go".to_owned()];
        assert_eq!(
            unique_label(&done, "wireguard-go".into()),
            "wireguard-go #2"
        );
        assert_eq!(unique_label(&done, "edgewire".into()), "edgewire");
        assert_eq!(fmt_bps(&812e6), "812 Mbit/s");
        assert_eq!(fmt_pps(1.5e6), "1.50 Mpps");
    }
}
