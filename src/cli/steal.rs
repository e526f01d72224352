//! Steal time: CPU time the hypervisor gave to someone else while this guest's vCPUs had
//! work (`/proc/stat`, the `cpu` line's 8th field). On a shared VM it is what turns a good
//! minute into a bad one for every implementation alike, so `edgewire bench` reports it next
//! to the figures it may have spoiled.

/// The machine-wide CPU counters at one moment, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    steal: u64,
    total: u64,
}

impl CpuTimes {
    /// Now, or `None` where `/proc/stat` has no steal field (not Linux, or a kernel before
    /// 2.6.11) or cannot be read.
    pub fn now() -> Option<CpuTimes> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        Self::parse(text.lines().next()?)
    }

    /// `cpu  user nice system idle iowait irq softirq steal [guest guest_nice]`. The guest
    /// fields are already counted in user and nice, so they are left out of the total.
    fn parse(line: &str) -> Option<CpuTimes> {
        let mut fields = line.split_ascii_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let values: Vec<u64> = fields
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        if values.len() < 8 {
            return None;
        }
        Some(CpuTimes {
            steal: values[7],
            total: values.iter().sum(),
        })
    }

    /// Per cent of all CPU time since `earlier` that was stolen; `None` if no time passed.
    pub fn steal_pct_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let steal = self.steal.checked_sub(earlier.steal)?;
        (total > 0).then(|| steal as f64 * 100.0 / total as f64)
    }
}

/// Runs `f` and returns what it returned with the steal during it.
pub fn during<T>(f: impl FnOnce() -> T) -> (T, Option<f64>) {
    let before = CpuTimes::now();
    let value = f();
    let pct = before
        .zip(CpuTimes::now())
        .and_then(|(b, a)| a.steal_pct_since(&b));
    (value, pct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn parses_the_cpu_line_and_leaves_guest_time_out() {
        let t = CpuTimes::parse("cpu  161111 0 102635 7704429 983 0 17437 14471 50 0").unwrap();
        assert_eq!(t.steal, 14471);
        assert_eq!(
            t.total,
            161111 + 102635 + 7704429 + 983 + 17437 + 14471,
            "guest time is part of user time already"
        );
    }

    #[test]
    fn rejects_what_is_not_a_full_cpu_line() {
        assert_eq!(CpuTimes::parse("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 3 4"), None, "no steal field");
        assert_eq!(CpuTimes::parse("cpu  1 2 3 4 5 6 x 8"), None);
        assert_eq!(CpuTimes::parse(""), None);
    }

    #[test]
    fn steal_is_a_share_of_all_cpu_time_in_between() {
        let a = CpuTimes::parse("cpu  100 0 100 700 0 0 0 100").unwrap();
        let b = CpuTimes::parse("cpu  150 0 150 750 0 0 0 150").unwrap();
        assert_eq!(b.steal_pct_since(&a), Some(25.0));
        assert_eq!(a.steal_pct_since(&a), None, "no time passed");
        assert_eq!(a.steal_pct_since(&b), None, "counters never run backwards");
    }

    #[test]
    fn reads_this_machines_counters() {
        if Path::new("/proc/stat").exists() {
            let (value, pct) = during(|| 7);
            assert_eq!(value, 7);
            if let Some(p) = pct {
                assert!((0.0..=100.0).contains(&p), "{p}");
            }
            assert!(CpuTimes::now().is_some(), "/proc/stat has a steal field");
        }
    }
}
