//! The documented range of every number and duration in the configuration.
//!
//! One table, used for the global values and the per-service overrides
//! alike, so that what `sluice check` accepts is what the gateway can run:
//! no value inside these bounds overflows a `Duration`, an `Instant` or a
//! replica count anywhere in sluice. The bounds follow Knative's where
//! Knative has one (stable window up to 1 h, panic window 1–100 %, panic
//! threshold 110–1000 %, target utilization 1–100 %); the README's
//! "Limits and timeouts" section lists them all.

use std::fmt;
use std::time::Duration;

/// Inclusive bounds; `above_min` makes the lower one exclusive.
#[derive(Clone, Copy, Debug)]
pub struct Bounds<T> {
    pub min: T,
    pub max: T,
    pub above_min: bool,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = secs(3600);
const DAY: Duration = secs(24 * 3600);

const fn between<T>(min: T, max: T) -> Bounds<T> {
    Bounds {
        min,
        max,
        above_min: false,
    }
}

const fn above<T>(min: T, max: T) -> Bounds<T> {
    Bounds {
        min,
        max,
        above_min: true,
    }
}

// Autoscaler, global and per service.
pub const TICK_INTERVAL: Bounds<Duration> = between(secs(1), secs(60));
/// Knative's is 6 s–1 h; sluice allows 2 s so that demos and tests are short.
pub const STABLE_WINDOW: Bounds<Duration> = between(secs(2), HOUR);
pub const PANIC_WINDOW_PERCENTAGE: Bounds<f64> = between(1.0, 100.0);
pub const PANIC_THRESHOLD_PERCENTAGE: Bounds<f64> = between(110.0, 1000.0);
pub const TARGET_UTILIZATION: Bounds<f64> = between(0.01, 1.0);
pub const SCALE_TO_ZERO_GRACE_PERIOD: Bounds<Duration> = between(Duration::ZERO, HOUR);
pub const SCALE_RATE: Bounds<f64> = above(1.0, 1e6);
/// Knative's scale-down-delay: 0s–1h.
pub const SCALE_DOWN_DELAY: Bounds<Duration> = between(Duration::ZERO, HOUR);
/// Knative's scale-to-zero-pod-retention-period is any non-negative
/// duration; sluice bounds it like the grace period.
pub const SCALE_TO_ZERO_POD_RETENTION_PERIOD: Bounds<Duration> = between(Duration::ZERO, HOUR);
/// Knative's initial-scale: 0 (where allowed) and up; bounded like maxReplicas.
pub const INITIAL_SCALE: Bounds<u64> = between(0, 10_000);
/// Knative's activation-scale: at least 1.
pub const ACTIVATION_SCALE: Bounds<u64> = between(1, 10_000);

// A service.
pub const MIN_REPLICAS: Bounds<u64> = between(0, 10_000);
pub const MAX_REPLICAS: Bounds<u64> = between(1, 10_000);
pub const SCALE_TARGET: Bounds<f64> = between(0.01, 1e6);
pub const CONTAINER_CONCURRENCY: Bounds<u64> = between(0, 100_000);
pub const QUEUE_DEPTH: Bounds<u64> = between(1, 1_000_000);
pub const PORT: Bounds<u64> = between(1, 65_535);
/// Reading the model servers' metrics (`podMetrics`): no more often than
/// every 10 ms, which already is a request to each pod 100 times a second.
pub const POD_METRICS_INTERVAL: Bounds<Duration> = between(Duration::from_millis(10), secs(60));
pub const POD_METRICS_STALE_AFTER: Bounds<Duration> = between(Duration::from_millis(20), HOUR);
pub const POD_METRICS_TIMEOUT: Bounds<Duration> = between(MS, secs(60));

// Request timeouts, gateway-wide and per service.
pub const REQUEST_TIMEOUT: Bounds<Duration> = between(MS, DAY);
pub const QUEUE_TIMEOUT: Bounds<Duration> = between(MS, DAY);
pub const ACTIVATION_TIMEOUT: Bounds<Duration> = between(MS, DAY);
pub const CONNECT_TIMEOUT: Bounds<Duration> = between(MS, secs(300));
pub const UPSTREAM_IDLE_TIMEOUT: Bounds<Duration> = between(MS, HOUR);
pub const SHUTDOWN_GRACE_PERIOD: Bounds<Duration> = between(Duration::ZERO, HOUR);
pub const MAX_HEADER_SIZE: Bounds<u64> = between(1 << 10, 8 << 20);
pub const MAX_HEADER_COUNT: Bounds<u64> = between(8, 10_000);
pub const MODEL_PEEK_LIMIT: Bounds<u64> = between(1 << 10, 64 << 20);

// Client connections.
pub const FIRST_BYTE_TIMEOUT: Bounds<Duration> = between(MS, HOUR);
pub const HEADER_READ_TIMEOUT: Bounds<Duration> = between(MS, HOUR);
pub const IDLE_TIMEOUT: Bounds<Duration> = between(MS, DAY);
pub const HTTP2_KEEP_ALIVE_INTERVAL: Bounds<Duration> = between(MS, DAY);
pub const HTTP2_KEEP_ALIVE_TIMEOUT: Bounds<Duration> = between(MS, HOUR);
pub const MAX_CONNECTIONS: Bounds<u64> = between(1, 1_000_000);
pub const WORKERS: Bounds<u64> = between(1, 1024);
pub const TLS_HANDSHAKE_TIMEOUT: Bounds<Duration> = between(MS, HOUR);
pub const TLS_POLL_INTERVAL: Bounds<Duration> = between(MS, DAY);

// Local replicas.
pub const STARTUP_TIMEOUT: Bounds<Duration> = between(MS, DAY);
pub const STOP_GRACE_PERIOD: Bounds<Duration> = between(Duration::ZERO, HOUR);

// Tracing.
pub const SAMPLING_RATIO: Bounds<f64> = between(0.0, 1.0);

// Leader election.
pub const LEASE_TIMING: Bounds<Duration> = between(MS, HOUR);

/// How a bound is written in a message.
pub trait Shown: Copy + PartialOrd {
    fn shown(self) -> String;
}

// === impl Bounds ===

impl<T: Shown> Bounds<T> {
    pub fn contains(&self, value: T) -> bool {
        let low = if self.above_min {
            value > self.min
        } else {
            value >= self.min
        };
        // NaN fails both comparisons: never in range.
        low && value <= self.max
    }

    /// Adds `"{field}: must be ... got {value}"` when out of range.
    pub fn check(&self, field: &str, value: T, problems: &mut Vec<String>) {
        if !self.contains(value) {
            problems.push(format!("{field}: must be {self}, got {}", value.shown()));
        }
    }

    /// [`Bounds::check`] for a value that may be unset.
    pub fn check_set(&self, field: &str, value: Option<T>, problems: &mut Vec<String>) {
        if let Some(value) = value {
            self.check(field, value, problems);
        }
    }
}

impl<T: Shown> fmt::Display for Bounds<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (min, max) = (self.min.shown(), self.max.shown());
        if self.above_min {
            write!(f, "greater than {min} and at most {max}")
        } else {
            write!(f, "between {min} and {max}")
        }
    }
}

impl Shown for Duration {
    fn shown(self) -> String {
        if self.is_zero() {
            "0s".into()
        } else {
            humantime::format_duration(self).to_string()
        }
    }
}

impl Shown for f64 {
    fn shown(self) -> String {
        self.to_string()
    }
}

impl Shown for u64 {
    fn shown(self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_refuse_what_is_outside_and_nan() {
        assert!(PANIC_WINDOW_PERCENTAGE.contains(100.0));
        assert!(!PANIC_WINDOW_PERCENTAGE.contains(100.5));
        assert!(!PANIC_WINDOW_PERCENTAGE.contains(f64::NAN));
        assert!(!SCALE_RATE.contains(1.0), "the lower bound is exclusive");
        assert!(SCALE_RATE.contains(1.01));
        assert!(!SCALE_RATE.contains(f64::INFINITY));
        assert!(!STABLE_WINDOW.contains(secs(3601)));
    }

    #[test]
    fn messages_name_the_field_the_range_and_the_value() {
        let mut problems = vec![];
        STABLE_WINDOW.check("services[0].stableWindow", secs(2 * 3600), &mut problems);
        SCALE_RATE.check("autoscaler.maxScaleDownRate", f64::NAN, &mut problems);
        assert_eq!(
            problems,
            [
                "services[0].stableWindow: must be between 2s and 1h, got 2h",
                "autoscaler.maxScaleDownRate: must be greater than 1 and at most 1000000, got NaN"
            ]
        );
    }

    /// The largest value of every duration range, added to now, is an
    /// instant; added to each other, a duration: none can panic.
    #[test]
    fn the_largest_durations_cannot_overflow() {
        let now = std::time::Instant::now();
        for bound in [
            STABLE_WINDOW,
            SCALE_TO_ZERO_GRACE_PERIOD,
            SCALE_DOWN_DELAY,
            SCALE_TO_ZERO_POD_RETENTION_PERIOD,
            REQUEST_TIMEOUT,
            ACTIVATION_TIMEOUT,
            STARTUP_TIMEOUT,
            LEASE_TIMING,
        ] {
            assert!(now.checked_add(bound.max * 4).is_some());
        }
        assert!(tokio::time::Instant::now().checked_add(DAY * 4).is_some());
    }
}
