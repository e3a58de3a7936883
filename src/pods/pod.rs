//! One pod: an address and its live load.

use super::server_load::{ServerReport, ServerView};
use crate::upstream::{Connections, SharedConnections};
use arc_swap::ArcSwapOption;
use http::uri::Authority;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

#[derive(Debug)]
pub struct Pod {
    authority: Authority,
    /// Requests admitted to this pod whose response body has not ended.
    /// Written only under the dispatcher's lock; read freely.
    pub(super) in_flight: AtomicUsize,
    /// Requests admitted to this pod, ever.
    pub(super) admitted: AtomicU64,
    /// When the balancer last picked this pod (a sequence number): the tie-breaker.
    pub(super) last_pick: AtomicU64,
    /// Removed from its service: finishes what it has, gets nothing new.
    pub(super) retired: AtomicBool,
    /// Idle connections to this pod, reused by the next requests.
    pub connections: Connections,
    /// HTTP/2 connections to this pod (a service with `protocol: h2c`).
    pub streams: SharedConnections,
    /// Where the pod's sidecar reports its load (`/stats`), if it has one.
    stats: Mutex<Option<Authority>>,
    /// The model server's last reading of its own load (`podMetrics`):
    /// written by one task every interval, read by the balancer at every
    /// pick, so a swap of a pointer rather than a lock.
    server: ArcSwapOption<ServerReport>,
    started: Instant,
}

// === impl Pod ===

impl Pod {
    pub fn new(authority: Authority) -> Self {
        Pod {
            authority,
            in_flight: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            last_pick: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            connections: Connections::default(),
            streams: SharedConnections::default(),
            stats: Mutex::new(None),
            server: ArcSwapOption::empty(),
            started: Instant::now(),
        }
    }

    /// `host:port`, as configured.
    pub fn addr(&self) -> &str {
        self.authority.as_str()
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Says where the pod's sidecar reports its load.
    pub fn set_stats_addr(&self, addr: Option<Authority>) {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = addr;
    }

    pub fn stats_addr(&self) -> Option<Authority> {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_server_report(&self, report: ServerReport) {
        self.server.store(Some(std::sync::Arc::new(report)));
    }

    pub fn server_report(&self) -> Option<ServerReport> {
        self.server.load().as_deref().copied()
    }

    /// The server's load as the balancer compares it, if its reading is
    /// younger than `stale_after` at `now`.
    pub fn server_view(
        &self,
        now: tokio::time::Instant,
        stale_after: std::time::Duration,
    ) -> Option<ServerView> {
        let report = self.server.load();
        ServerView::of(report.as_deref()?, self.admitted(), now, stale_after)
    }

    pub fn age(&self) -> std::time::Duration {
        self.started.elapsed()
    }
}
