//! Knative's scale-down delay: the count applied is the largest decided
//! within the last `scaleDownDelay`, so a lower count takes effect only once
//! it has been wanted for that long (Knative keeps the same max-over-window
//! in pkg/autoscaler/scaling/autoscaler.go, its `delayWindow`). Scale up is
//! never delayed: a higher count is the window's largest at once.

use std::collections::VecDeque;
use std::time::Duration;

/// The counts decided within the last `delay`, each with when.
#[derive(Debug, Default)]
pub struct DelayWindow {
    decided: VecDeque<(Duration, u32)>,
}

impl DelayWindow {
    /// Records `wanted` at `now` and returns the count to apply: the
    /// largest wanted within `delay` before `now` (just `wanted` when
    /// `delay` is zero).
    pub fn hold(&mut self, now: Duration, delay: Duration, wanted: u32) -> u32 {
        if delay.is_zero() {
            self.decided.clear();
            return wanted;
        }
        self.decided.push_back((now, wanted));
        while self
            .decided
            .front()
            .is_some_and(|&(at, _)| now.saturating_sub(at) >= delay)
        {
            self.decided.pop_front();
        }
        // A larger count makes every smaller one before it irrelevant.
        self.decided.iter().map(|&(_, n)| n).max().unwrap_or(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_largest_wanted_within_the_delay() {
        let s = Duration::from_secs;
        // (second, wanted, applied) with a 10 s delay.
        let steps = [
            (0, 5, 5),
            (2, 2, 5),
            (9, 1, 5),
            (10, 1, 2), // 5 was wanted 10 s ago: out of the window.
            (12, 1, 1),
            (13, 4, 4), // up at once
            (14, 0, 4),
            (22, 0, 4),
            (23, 0, 0), // 4 was wanted 10 s ago
        ];
        let mut w = DelayWindow::default();
        for (t, wanted, applied) in steps {
            assert_eq!(w.hold(s(t), s(10), wanted), applied, "at {t}s");
        }
        // No delay: what is wanted, and nothing remembered.
        assert_eq!(w.hold(s(30), Duration::ZERO, 3), 3);
        assert_eq!(w.hold(s(31), s(10), 1), 1);
    }
}
