//! Several rounds of the same tests as one result: each figure's median, and edgewire's
//! ratios to the other implementations taken round by round (where the two ran back to
//! back) before their median.

use super::{ok, Measure, Results};

/// One implementation's rounds as one result: each figure's median, the highest ping max,
/// and any failure (a tunnel or test that failed in one round counts as failed).
pub(super) fn merge_rounds(mut rounds: Vec<Results>) -> Results {
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
pub(super) fn lower_median<T>(mut values: Vec<T>, key: impl Fn(&T) -> f64) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| key(a).total_cmp(&key(b)));
    Some(values.swap_remove((values.len() - 1) / 2))
}

/// One implementation's figures over another's: per round (where the two ran back to back)
/// and then the median over the rounds, so a host whose load drifts from minute to minute
/// skews the comparison less than a ratio of two medians would.
#[derive(Debug, PartialEq)]
pub(super) struct Ratio {
    pub(super) base: String,
    pub(super) against: String,
    pub(super) tcp1: Option<f64>,
    pub(super) tcpn: Option<f64>,
    pub(super) reverse: Option<f64>,
    /// 64-byte UDP, received.
    pub(super) udp: Option<f64>,
}

/// `base`'s ratios against each of `against` (indices into `rounds`, one `Vec` of rounds per
/// implementation). Rounds where either side failed a test are left out of that test's.
pub(super) fn ratios(rounds: &[Vec<Results>], base: usize, against: &[usize]) -> Vec<Ratio> {
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
