//! One pod: an address and its live load.

use crate::upstream::{Connections, SharedConnections};
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

    pub fn age(&self) -> std::time::Duration {
        self.started.elapsed()
    }
}
