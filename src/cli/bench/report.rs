//! The end of a run: the table (implementations side by side, edgewire's ratios, notes on
//! what the rows mean) or the same as JSON, and the figures' formats shared with the
//! progress lines.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::rounds::Ratio;
use super::{
    err, ok, BenchArgs, Measure, Results, Test, MTU, SMALL_UDP, STEAL_RETRIES, STEAL_WORTH_NAMING,
};
use crate::cli::traffic::{Generator, PingStats, UdpRate};

/// The table: one column per implementation (the RTT floor last), one row per figure and
/// the host's steal; then edgewire's per-round ratios, notes on the rows, and every failure
/// with its reason.
pub(super) fn table(
    args: &BenchArgs,
    generator: Generator,
    all: &[Results],
    ratios: &[Ratio],
) -> String {
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
        .any(|r| ok(&r.udp).is_some_and(|u| u.carried_pps.is_some()));
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
        for f in r.failed() {
            let first_line = f.message.lines().next().unwrap_or_default();
            let _ = writeln!(errors, "  {} / {}: {first_line}", r.label, f.name);
        }
    }
    if !errors.is_empty() {
        out.push_str("\nfailed:\n");
        out.push_str(&errors);
    }
    out
}

/// The same as [`table`] for machines: numbers as numbers, a test that did not run as
/// `null`, failures under each result's `errors`.
pub(super) fn to_json(
    args: &BenchArgs,
    generator: Generator,
    all: &[Results],
    ratios: &[Ratio],
) -> Value {
    let host = host_facts();
    let results: Vec<Value> = all
        .iter()
        .filter(|r| !r.is_floor())
        .map(|r| {
            let errors: serde_json::Map<String, Value> = r
                .failed()
                .map(|f| (f.key.to_owned(), Value::String(f.message.to_owned())))
                .collect();
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
            "error": err(&f.rtt),
            "host_steal_pct": f.steal_pct,
        })),
    })
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

fn cell<T>(m: &Measure<T>, f: impl Fn(&T) -> String) -> String {
    match m {
        None => "-".to_owned(),
        Some(Ok(v)) => f(v),
        Some(Err(_)) => "failed".to_owned(),
    }
}

/// A measurement's value as JSON; `null` when it did not run or failed.
fn json_measure<T>(m: &Measure<T>, f: impl Fn(&T) -> Value) -> Value {
    ok(m).map_or(Value::Null, f)
}

/// A bit rate as the table and the demo show it.
pub fn fmt_bps(bps: &f64) -> String {
    if *bps >= 1e9 {
        format!("{:.2} Gbit/s", bps / 1e9)
    } else {
        format!("{:.0} Mbit/s", bps / 1e6)
    }
}

pub(super) fn fmt_pps(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.2} Mpps", pps / 1e6)
    } else {
        format!("{:.1} kpps", pps / 1e3)
    }
}

pub(super) fn fmt_udp(u: &UdpRate) -> String {
    let carried = u
        .carried_pps
        .map(|c| format!("{} carried by the tunnel, ", fmt_pps(c)))
        .unwrap_or_default();
    format!("{carried}{} received", fmt_pps(u.received_pps))
}

pub(super) fn fmt_rtt(p: &PingStats) -> String {
    format!(
        "avg {:.3} ms, max {:.3} ms ({}/{} replies)",
        p.avg_ms, p.max_ms, p.received, p.transmitted
    )
}
