//! The load a model server reports itself (`podMetrics`): requests running
//! and waiting in it, and how full its KV cache is. Read from every pod
//! every `interval` ([`poll`]), kept on the pod with the time it was asked
//! for, and seen by the balancer only while it is fresh ([`ServerView::of`]).

mod parse;
mod poll;

pub use self::parse::{parse, ParseError};
pub use self::poll::{poll, PollSettings};

use std::time::Duration;
use tokio::time::Instant;

/// What one answer of a model server says.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerLoad {
    /// Requests in the server's running batch.
    pub running: f64,
    /// Requests in the server's own queue.
    pub waiting: f64,
    /// The share of the KV cache in use, 0 to 1 (summed over models).
    pub kv_cache_usage: f64,
}

/// A reading, kept on its pod.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerReport {
    pub load: ServerLoad,
    /// When the server was asked.
    pub at: Instant,
    /// The pod's `admitted` count when the server was asked: the requests
    /// sluice sent since then are not in the report yet.
    pub admitted: u64,
}

/// What the balancer compares of a pod with a fresh reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerView {
    /// The server's queue, plus what sluice sent it since it said so.
    pub queue: f64,
    pub kv_cache_usage: f64,
}

// === impl ServerReport ===

impl ServerReport {
    /// Younger than `stale_after` at `now`.
    pub fn is_fresh(&self, now: Instant, stale_after: Duration) -> bool {
        now.saturating_duration_since(self.at) < stale_after
    }
}

// === impl ServerView ===

impl ServerView {
    /// The view of `report` at `now`, for a pod that has had `admitted`
    /// requests in all; `None` when the reading is `stale_after` old or
    /// older.
    pub fn of(
        report: &ServerReport,
        admitted: u64,
        now: Instant,
        stale_after: Duration,
    ) -> Option<ServerView> {
        if !report.is_fresh(now, stale_after) {
            return None;
        }
        // Sent since the report: in the server's queue or batch by now, and
        // between two reads (50 ms) the difference between those is small.
        // Without them every request of a burst would go to the pod that
        // last said it was empty.
        let sent_since = admitted.saturating_sub(report.admitted) as f64;
        Some(ServerView {
            queue: report.load.waiting + sent_since,
            kv_cache_usage: report.load.kv_cache_usage,
        })
    }
}

#[cfg(test)]
mod parse_tests;

#[cfg(test)]
mod view_tests {
    use super::*;

    fn report(waiting: f64, at: Instant, admitted: u64) -> ServerReport {
        ServerReport {
            load: ServerLoad {
                running: 1.0,
                waiting,
                kv_cache_usage: 0.5,
            },
            at,
            admitted,
        }
    }

    #[test]
    fn a_reading_is_used_until_it_is_stale() {
        let t0 = Instant::now();
        let stale_after = Duration::from_millis(500);
        let r = report(2.0, t0, 10);
        let at = |ms: u64| ServerView::of(&r, 10, t0 + Duration::from_millis(ms), stale_after);
        assert_eq!(
            at(0),
            Some(ServerView {
                queue: 2.0,
                kv_cache_usage: 0.5
            })
        );
        assert!(at(499).is_some());
        assert_eq!(at(500), None);
    }

    #[test]
    fn requests_sent_since_the_reading_join_the_queue() {
        let t0 = Instant::now();
        let r = report(2.0, t0, 10);
        let view = ServerView::of(&r, 13, t0, Duration::from_secs(1)).unwrap();
        assert_eq!(view.queue, 5.0);
    }
}
