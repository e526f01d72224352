//! When a worker stays awake after sparse traffic, and for how long: an adaptive window.
//!
//! A worker that sends a request after a long sleep (a ping, a TCP SYN, a k3s API call) is
//! likely to see the answer a few hundred microseconds later. Staying awake for it saves a
//! wake-up, which on a virtual machine is a large part of an idle round trip. How long to
//! stay awake depends on the host and the traffic: on one 2-vCPU VM answers came 200–350 µs
//! after the request, and one-way traffic (an IoT gateway's telemetry, keepalives) has no
//! answer at all, so any spin is wasted CPU.
//!
//! So the window adapts, like hybrid polling: an answer caught after `t` sets the window to
//! `2t` (but shrinks it at most by half at a time); a spin that caught nothing, followed by
//! work within [`SPIN_MAX`] of its start (a late answer), sets it to twice that delay; a spin
//! that caught nothing and nothing came soon after (no answer to wait for) halves it, down to
//! [`SPIN_MIN`]. Always within [`SPIN_MIN`]..=[`SPIN_MAX`].
//!
//! Only a sleep of at least [`SPARSE`] that ends with work arms a spin, and only once, so an
//! idle device never spins and a loaded one (no sleep is that long) never does either; the
//! spin takes at most `SPIN_MAX / (SPARSE + SPIN_MAX)` of a core. Sans-IO: durations come in,
//! decisions go out; `worker.rs` and the bench's RTT floor drive it.

use std::time::{Duration, Instant};

/// A sleep at least this long means sparse traffic: the next wake-up with work arms a spin.
pub const SPARSE: Duration = Duration::from_millis(2);
/// The first window, before anything was learned.
pub const SPIN: Duration = Duration::from_micros(300);
/// The shortest window (one-way traffic ends here).
pub const SPIN_MIN: Duration = Duration::from_micros(20);
/// The longest window, and the longest delay still taken for a late answer.
pub const SPIN_MAX: Duration = Duration::from_micros(600);

/// The spin decision of one worker. Call [`SpinPolicy::slept`] after each sleep,
/// [`SpinPolicy::handled`] after each round, [`SpinPolicy::take`] when a round found nothing,
/// and [`SpinPolicy::spun`] after spinning.
#[derive(Debug, Clone)]
pub struct SpinPolicy {
    window: Duration,
    /// The last sleep was at least `SPARSE`; the next round decides whether to arm.
    after_long_sleep: bool,
    armed: bool,
    /// The last spin caught nothing: its window.
    missed: Option<Duration>,
    /// Time from a missed spin's start to the wake-up after it, until the round judges it.
    late: Option<Duration>,
}

impl Default for SpinPolicy {
    fn default() -> Self {
        Self {
            window: SPIN,
            after_long_sleep: false,
            armed: false,
            missed: None,
            late: None,
        }
    }
}

impl SpinPolicy {
    /// The worker slept this long.
    pub fn slept(&mut self, slept: Duration) {
        self.after_long_sleep = slept >= SPARSE;
        if let Some(window) = self.missed.take() {
            self.late = Some(window + slept);
        }
    }

    /// The worker's round handled this many packets.
    pub fn handled(&mut self, packets: usize) {
        if let Some(late) = self.late.take() {
            self.window = if packets > 0 && late <= SPIN_MAX {
                clamp(late * 2)
            } else {
                clamp(self.window / 2)
            };
        }
        if std::mem::take(&mut self.after_long_sleep) {
            self.armed = packets > 0;
        }
    }

    /// The window to spin for now, once per arming.
    pub fn take(&mut self) -> Option<Duration> {
        std::mem::take(&mut self.armed).then_some(self.window)
    }

    /// The spin ended: work came after this long, or (`None`) the window passed.
    pub fn spun(&mut self, caught: Option<Duration>) {
        match caught {
            Some(t) => self.window = clamp((t * 2).max(self.window / 2)),
            None => self.missed = Some(self.window),
        }
    }

    /// The current window.
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// Stays awake for up to `window`: `sched_yield` (anything runnable on this core, such as
/// the application waiting for the answer, goes first), then one `round`, until a round
/// handles something. How long that took, or `None` if the window passed; a round's error
/// ends the spin.
pub fn stay_awake<E>(
    window: Duration,
    mut round: impl FnMut() -> Result<usize, E>,
) -> Result<Option<Duration>, E> {
    let start = Instant::now();
    while start.elapsed() < window {
        std::thread::yield_now();
        if round()? > 0 {
            return Ok(Some(start.elapsed()));
        }
    }
    Ok(None)
}

fn clamp(d: Duration) -> Duration {
    d.clamp(SPIN_MIN, SPIN_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(2);
    const PING_GAP: Duration = Duration::from_millis(50);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A sleep, then rounds handling these packet counts; the window if it arms a spin.
    fn wake(p: &mut SpinPolicy, slept: Duration, rounds: &[usize]) -> Option<Duration> {
        p.slept(slept);
        for &n in rounds {
            p.handled(n);
        }
        p.take()
    }

    #[test]
    fn only_a_long_sleep_that_ends_in_work_arms_once() {
        let mut p = SpinPolicy::default();
        for _ in 0..10 {
            assert_eq!(wake(&mut p, IDLE, &[0]), None, "idle: never");
        }
        assert_eq!(wake(&mut p, PING_GAP, &[1, 1, 0]), Some(SPIN));
        assert_eq!(p.take(), None, "one spin per arming");
        for _ in 0..10 {
            assert_eq!(
                wake(&mut p, us(200), &[32, 5, 0]),
                None,
                "under load: never"
            );
        }
        assert_eq!(
            wake(&mut p, SPARSE, &[0, 3, 0]),
            None,
            "only the first round counts"
        );
        assert_eq!(wake(&mut p, SPARSE, &[2, 0]), Some(SPIN));
    }

    #[test]
    fn a_caught_answer_sets_twice_its_delay_shrinking_at_most_by_half() {
        let mut p = SpinPolicy::default();
        assert!(wake(&mut p, PING_GAP, &[1, 0]).is_some());
        p.spun(Some(us(250)));
        assert_eq!(p.window(), us(500));
        assert!(wake(&mut p, PING_GAP, &[1, 0]).is_some());
        p.spun(Some(us(10)));
        assert_eq!(p.window(), us(250), "a fast answer halves, no more");
        p.spun(Some(us(10)));
        assert_eq!(p.window(), us(125));
        p.spun(Some(us(450)));
        assert_eq!(p.window(), SPIN_MAX, "capped");
    }

    #[test]
    fn a_late_answer_grows_the_window_to_cover_it() {
        let mut p = SpinPolicy::default();
        assert_eq!(wake(&mut p, PING_GAP, &[1, 0]), Some(SPIN));
        p.spun(None);
        // The answer woke the worker 100 µs after the 300 µs window: 400 µs after the start.
        assert_eq!(
            wake(&mut p, us(100), &[1, 0]),
            None,
            "an answer does not arm"
        );
        assert_eq!(p.window(), SPIN_MAX, "2 × 400 µs, capped");

        let mut p = SpinPolicy::default();
        p.spun(Some(us(50)));
        assert_eq!(p.window(), us(150));
        p.spun(None);
        wake(&mut p, us(100), &[1]);
        assert_eq!(p.window(), us(500), "2 × (150 + 100) µs");
    }

    #[test]
    fn one_way_traffic_shrinks_the_window_to_the_minimum() {
        let mut p = SpinPolicy::default();
        let mut windows = Vec::new();
        for _ in 0..6 {
            // A datagram out every 10 ms and nothing back.
            let w = wake(&mut p, Duration::from_millis(10), &[1, 0]).expect("armed");
            windows.push(w.as_micros());
            p.spun(None);
        }
        assert_eq!(windows, [300, 150, 75, 37, 20, 20]);
        // Work long after the window is not an answer: no growth.
        p.spun(None);
        wake(&mut p, Duration::from_millis(1), &[1]);
        assert_eq!(p.window(), SPIN_MIN);
        // A wake-up with nothing to do (the idle check) shrinks as well.
        let mut p = SpinPolicy::default();
        p.spun(None);
        wake(&mut p, IDLE, &[0]);
        assert_eq!(p.window(), us(150));
    }
}
