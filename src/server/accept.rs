//! What the accept loop does when accepting fails: back off, and say so
//! without flooding the log.
//!
//! Out of file descriptors, `accept` fails at once for as long as the
//! condition lasts; retrying at once spins a core and writes a line per
//! try. As tokio's and nginx's loops do, sluice waits before the next try
//! (5 ms, doubling to 1 s, back to 5 ms after a success) and logs at most
//! once a second, with the count of the failures it did not log. The
//! workers of one listener share that once a second.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Allows one event in `every`, and counts the ones it held back.
#[derive(Debug)]
pub struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

/// The delay before the next accept after a failure, and when to log.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
    log: Arc<Mutex<RateLimit>>,
}

/// A failure to report now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Failures since the last report that were not logged.
    pub held_back: u64,
    /// The wait before the next accept.
    pub delay: Duration,
}

/// Errors of one connection that the peer closed or reset before it was
/// accepted: the listener is fine, so the next accept follows at once.
pub fn of_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

// === impl RateLimit ===

impl RateLimit {
    pub fn new(every: Duration) -> Self {
        RateLimit {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(events held back since the last allowed one)` if this event
    /// may be reported at `now`.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let due = match self.last {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.every,
        };
        if !due {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

// === impl AcceptBackoff ===

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff::sharing(AcceptBackoff::log())
    }
}

impl AcceptBackoff {
    /// A log allowance to share among the accept loops of one listener.
    pub fn log() -> Arc<Mutex<RateLimit>> {
        Arc::new(Mutex::new(RateLimit::new(LOG_EVERY)))
    }

    /// A backoff of its own that logs under the shared allowance `log`.
    pub fn sharing(log: Arc<Mutex<RateLimit>>) -> Self {
        AcceptBackoff {
            next: FIRST_DELAY,
            log,
        }
    }

    /// An accept failed at `now`: how long to wait before the next, and
    /// whether to log this failure.
    pub fn failed(&mut self, now: Instant) -> (Duration, Option<Report>) {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        let report = (self.log.lock().unwrap_or_else(PoisonError::into_inner))
            .allow(now)
            .map(|held_back| Report { held_back, delay });
        (delay, report)
    }

    /// An accept succeeded: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.next = FIRST_DELAY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_delay_doubles_to_a_second_and_resets_on_success() {
        let now = Instant::now();
        let mut backoff = AcceptBackoff::default();
        let delays: Vec<u128> = (0..10).map(|_| backoff.failed(now).0.as_millis()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(now).0, 5 * MS);
    }

    #[test]
    fn at_most_one_report_a_second_with_the_count_held_back() {
        let t0 = Instant::now();
        let mut backoff = AcceptBackoff::default();
        let first = backoff.failed(t0).1;
        assert_eq!(
            first,
            Some(Report {
                held_back: 0,
                delay: 5 * MS
            })
        );
        // A failure every 5 ms for just under a second: none reported.
        let quiet = (1..200).filter(|i| backoff.failed(t0 + i * 5 * MS).1.is_some());
        assert_eq!(quiet.count(), 0);
        let report = backoff
            .failed(t0 + 1000 * MS)
            .1
            .expect("a report a second on");
        assert_eq!(report.held_back, 199);
        assert_eq!(report.delay, MAX_DELAY);
    }

    #[test]
    fn the_accept_loops_of_one_listener_report_once_a_second_together() {
        let t0 = Instant::now();
        let log = AcceptBackoff::log();
        let mut loops = [
            AcceptBackoff::sharing(log.clone()),
            AcceptBackoff::sharing(log),
        ];
        let reports = (0..400u32)
            .filter(|i| {
                loops[*i as usize % 2]
                    .failed(t0 + (i / 2) * 5 * MS)
                    .1
                    .is_some()
            })
            .count();
        assert_eq!(reports, 1, "two loops failing for one second: one report");
        let report = loops[1].failed(t0 + 1000 * MS).1.expect("a second on");
        assert_eq!(report.held_back, 399);
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_failing_for_ten_seconds_tries_about_twenty_times_and_logs_ten() {
        // The accept loop's shape, with an accept that always fails.
        let started = Instant::now();
        let mut backoff = AcceptBackoff::default();
        let (mut tries, mut reports) = (0, 0);
        while started.elapsed() < Duration::from_secs(10) {
            tries += 1;
            let (delay, report) = backoff.failed(Instant::now());
            reports += usize::from(report.is_some());
            tokio::time::sleep(delay).await;
        }
        // 5 ms doubling reaches 1 s after about 2.5 s; then one try a second.
        assert!((15..=20).contains(&tries), "{tries} tries");
        assert!((9..=11).contains(&reports), "{reports} reports");
    }

    #[test]
    fn errors_of_one_connection_are_told_apart_from_the_listener_s() {
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert!(of_one_connection(&reset));
        let out_of_files = io::Error::from_raw_os_error(24); // EMFILE
        assert!(!of_one_connection(&out_of_files));
    }
}
