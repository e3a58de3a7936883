//! Per-second samples of a service's load, and averages over a window.

use std::collections::VecDeque;
use std::time::Duration;

/// One second of observed load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When the second ended, as time since the autoscaler started.
    pub at: Duration,
    /// Time-weighted average of requests in flight, queued or held.
    pub concurrency: f64,
    /// Requests that arrived during the second, per second.
    pub rps: f64,
    /// Requests running or waiting at the model servers, as they report
    /// them (`scaleMetric: queue`), at the end of the second.
    pub queue: f64,
}

/// The samples of the last `keep` of time.
#[derive(Clone, Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
    keep: Duration,
    /// When load was last seen; kept when its sample is forgotten, since
    /// scale to zero waits longer than the stable window.
    last_traffic: Option<Duration>,
}

impl History {
    pub fn new(keep: Duration) -> Self {
        History {
            samples: VecDeque::new(),
            keep,
            last_traffic: None,
        }
    }

    pub fn record(&mut self, sample: Sample) {
        if sample.concurrency > 0.0 || sample.rps > 0.0 || sample.queue > 0.0 {
            self.last_traffic = Some(sample.at);
        }
        self.samples.push_back(sample);
        while self
            .samples
            .front()
            .is_some_and(|s| sample.at.saturating_sub(s.at) >= self.keep)
        {
            self.samples.pop_front();
        }
    }

    /// The mean of `metric` over samples within `window` before `now`, or
    /// `None` when there is none yet.
    pub fn average(
        &self,
        now: Duration,
        window: Duration,
        metric: impl Fn(&Sample) -> f64,
    ) -> Option<f64> {
        let within = self
            .samples
            .iter()
            .rev()
            .take_while(|s| now.saturating_sub(s.at) < window);
        let (sum, count) = within.fold((0.0, 0usize), |(sum, n), s| (sum + metric(s), n + 1));
        (count > 0).then(|| sum / count as f64)
    }

    /// When load was last seen (any request in flight or arriving).
    pub fn last_traffic(&self) -> Option<Duration> {
        self.last_traffic
    }

    pub fn set_keep(&mut self, keep: Duration) {
        self.keep = keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: u64, c: f64) -> Sample {
        Sample {
            at: Duration::from_secs(at),
            concurrency: c,
            rps: 0.0,
            queue: 0.0,
        }
    }

    #[test]
    fn averages_over_the_window_only() {
        let mut h = History::new(Duration::from_secs(60));
        for t in 1..=10 {
            h.record(s(t, if t > 6 { 4.0 } else { 1.0 }));
        }
        let now = Duration::from_secs(10);
        assert_eq!(
            h.average(now, Duration::from_secs(4), |s| s.concurrency),
            Some(4.0)
        );
        assert_eq!(
            h.average(now, Duration::from_secs(60), |s| s.concurrency),
            Some(2.2)
        );
        assert_eq!(
            History::new(Duration::from_secs(1)).average(now, now, |s| s.rps),
            None
        );
    }

    #[test]
    fn forgets_what_is_older_than_keep() {
        let mut h = History::new(Duration::from_secs(5));
        for t in 1..=20 {
            h.record(s(t, t as f64));
        }
        assert_eq!(h.samples.len(), 5);
        assert_eq!(h.last_traffic(), Some(Duration::from_secs(20)));
    }
}
