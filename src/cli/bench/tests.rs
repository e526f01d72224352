use super::report::{fmt_pps, table, to_json};
use super::retry::{quietest, Attempt};
use super::rounds::{merge_rounds, ratios};
use super::*;
use crate::cli::traffic::UdpRate;
use serde_json::{json, Value};

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

/// The table's first line that starts with `name` ("" if none).
fn row<'t>(table: &'t str, name: &str) -> &'t str {
    table
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
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
    let avg = row(&t, "ping RTT avg");
    assert!(
        avg.ends_with("0.055 ms"),
        "the floor is the last column: {t}"
    );
    assert!(t.contains("relay floor: the same pings"), "{t}");
    let steal = row(&t, "host steal");
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
    assert_eq!(
        r["errors"],
        json!({"tcp_reverse": "iperf3 -R: connection reset"})
    );
    let failures: Vec<usize> = sample().iter().map(Results::failures).collect();
    assert_eq!(failures, [1, 1, 0], "the floor's column failed nothing");
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
