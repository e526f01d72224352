//! One test with its progress lines, run again (`--max-steal`) while the hypervisor took
//! more of the CPU than the user allows: the attempt with the least steal is kept, and a
//! failure is reported, never retried away.

use super::{progress, BenchArgs, STEAL_RETRIES, STEAL_WORTH_NAMING};
use crate::cli::steal;

/// Runs one test with a progress line before and after; returns its outcome and the host's
/// steal during it, which the line after names when it was high enough to matter. With
/// `--max-steal`, a test that succeeded while the host took more than that runs again, up to
/// [`STEAL_RETRIES`] more times, and the attempt with the least steal is kept.
pub(super) fn step<T>(
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
pub(super) type Attempt<T> = Result<(T, Option<f64>), (String, Option<f64>)>;

/// Attempt 0, then more (up to [`STEAL_RETRIES`]) while the quietest success so far had more
/// steal than `max_steal`; returns that quietest success, or the first failure.
pub(super) fn quietest<T>(
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
