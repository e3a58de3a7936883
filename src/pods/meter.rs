//! The time-weighted load of a service: requests in flight plus those
//! waiting in its queue, integrated over time, and the arrival count. The
//! autoscaler takes a reading every second.

use tokio::time::Instant;

#[derive(Debug)]
pub struct Meter {
    level: usize,
    last_change: Instant,
    /// Integral of `level` over time since `since`, in request-seconds.
    area: f64,
    arrivals: u64,
    since: Instant,
    /// Since the meter started: request-seconds and arrivals, never reset,
    /// so that several readers can each take differences at their own pace.
    total_area: f64,
    total_arrivals: u64,
    started: Instant,
}

/// Load over the time since the previous reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub concurrency: f64,
    pub rps: f64,
}

impl Meter {
    pub fn new(now: Instant) -> Self {
        Meter {
            level: 0,
            last_change: now,
            area: 0.0,
            arrivals: 0,
            since: now,
            total_area: 0.0,
            total_arrivals: 0,
            started: now,
        }
    }

    pub fn arrive(&mut self) {
        self.arrivals += 1;
        self.total_arrivals += 1;
    }

    /// Cumulative totals up to `now`: (seconds since the meter started,
    /// request-seconds, arrivals).
    pub fn totals(&mut self, now: Instant) -> (f64, f64, u64) {
        self.advance(now);
        let at = now.saturating_duration_since(self.started).as_secs_f64();
        (at, self.total_area, self.total_arrivals)
    }

    pub fn up(&mut self, now: Instant) {
        self.advance(now);
        self.level += 1;
    }

    pub fn down(&mut self, now: Instant) {
        self.advance(now);
        self.level = self.level.saturating_sub(1);
    }

    pub fn level(&self) -> usize {
        self.level
    }

    /// The averages since the last reading; starts a new period.
    pub fn read(&mut self, now: Instant) -> Reading {
        self.advance(now);
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64();
        let reading = if elapsed > 0.0 {
            Reading {
                concurrency: self.area / elapsed,
                rps: self.arrivals as f64 / elapsed,
            }
        } else {
            Reading {
                concurrency: self.level as f64,
                rps: 0.0,
            }
        };
        self.area = 0.0;
        self.arrivals = 0;
        self.since = now;
        reading
    }

    fn advance(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.last_change)
            .as_secs_f64();
        self.area += self.level as f64 * dt;
        self.total_area += self.level as f64 * dt;
        self.last_change = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn averages_over_time_not_over_events() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut m = Meter::new(t0);
        // Two requests for the first half second, one for the second half.
        m.arrive();
        m.up(at(0));
        m.arrive();
        m.up(at(0));
        m.down(at(500));
        let r = m.read(at(1000));
        assert!((r.concurrency - 1.5).abs() < 1e-9, "{r:?}");
        assert!((r.rps - 2.0).abs() < 1e-9);
        // The one still in flight carries over into the next second.
        let r = m.read(at(2000));
        assert!((r.concurrency - 1.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.rps, 0.0);
        // Totals are not reset by readings: 1.5 + 1.0 request-seconds, 2 arrivals.
        let (seconds, area, arrivals) = m.totals(at(2000));
        assert!((seconds - 2.0).abs() < 1e-9 && (area - 2.5).abs() < 1e-9 && arrivals == 2);
    }
}
