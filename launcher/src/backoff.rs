//! Restart delays for k3s: exponential from a base (1 s in production), capped at 60 × base,
//! back to the base after a run that stayed up for `reset_after` (10 minutes).

use std::time::Duration;

pub const DEFAULT_BASE: Duration = Duration::from_secs(1);
pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    reset_after: Duration,
    next: Duration,
}

impl Backoff {
    /// `base` is clamped to at least 1 ms.
    pub fn new(base: Duration, reset_after: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Self {
            base,
            cap: base.saturating_mul(60),
            reset_after,
            next: base,
        }
    }

    /// The delay before the next start, after a run that lasted `ran_for`.
    pub fn after_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.reset_after {
            self.next = self.base;
        }
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.cap);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_to_sixty_then_reset_after_ten_minutes_healthy() {
        let mut b = Backoff::new(DEFAULT_BASE, DEFAULT_RESET_AFTER);
        let short = Duration::from_secs(3);
        let delays: Vec<u64> = (0..9).map(|_| b.after_exit(short).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        // 9:59 healthy is not enough, 10:00 is.
        assert_eq!(b.after_exit(Duration::from_secs(599)).as_secs(), 60);
        assert_eq!(b.after_exit(Duration::from_secs(600)).as_secs(), 1);
        assert_eq!(b.after_exit(short).as_secs(), 2);
    }

    #[test]
    fn scaled_base_for_tests() {
        let mut b = Backoff::new(Duration::from_millis(100), DEFAULT_RESET_AFTER);
        let d: Vec<u128> = (0..4)
            .map(|_| b.after_exit(Duration::ZERO).as_millis())
            .collect();
        assert_eq!(d, [100, 200, 400, 800]);
        assert_eq!(
            Backoff::new(Duration::ZERO, DEFAULT_RESET_AFTER).after_exit(Duration::ZERO),
            Duration::from_millis(1)
        );
    }
}
