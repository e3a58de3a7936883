//! A service's recent past, kept by the gateway for `/history` and the live
//! page: one sample a second (replicas, load, request rate, latency, panic)
//! and the autoscaler's decisions with their reasons. Both are bounded
//! rings, so a service that runs for weeks holds the same few hundred
//! kilobytes as one that started a minute ago.
//!
//! Plain data, no clock: the caller says when (Unix milliseconds), so the
//! rings are tested without waiting.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Ten minutes at one sample a second.
pub const SAMPLES: usize = 600;
/// At most this many decisions; once ten minutes of samples are kept,
/// decisions older than the oldest sample are dropped too.
pub const MARKS: usize = 200;

/// One second of a service, as the sampler read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Unix time in milliseconds.
    pub t: u64,
    pub ready: u32,
    pub desired: u32,
    pub in_flight: u32,
    pub queued: u32,
    pub held: u32,
    /// Requests that arrived per second since the previous sample.
    pub rps: f64,
    pub panic: bool,
    /// Median and 99th percentile, in seconds, of the requests that ended
    /// since the previous sample; `None` when none did.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// Something the autoscaler decided or noticed, with why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mark {
    /// Unix time in milliseconds.
    pub t: u64,
    /// `scale`, `activate`, `panic`, `calm`, `blind`, `seeing`, `start`, ...
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    pub reason: String,
}

/// One service's rings.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Rings>,
}

#[derive(Debug, Default)]
struct Rings {
    samples: VecDeque<Sample>,
    marks: VecDeque<Mark>,
    /// Arrivals counted up to the previous sample, and when.
    last_arrivals: Option<(u64, u64)>,
}

/// What the sampler reads of a service each second.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reading {
    pub ready: u32,
    pub desired: u32,
    pub in_flight: u32,
    pub queued: u32,
    pub held: u32,
    /// Requests arrived since the service started (a running total).
    pub arrivals: u64,
    pub panic: bool,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

// === impl History ===

impl History {
    /// Adds the sample for `t` (Unix ms); the request rate is the arrivals
    /// since the previous one over the time between them.
    pub fn record(&self, t: u64, reading: Reading) {
        let mut rings = self.lock();
        let rps = match rings.last_arrivals {
            Some((before, at)) if t > at => {
                reading.arrivals.saturating_sub(before) as f64 * 1000.0 / (t - at) as f64
            }
            _ => 0.0,
        };
        rings.last_arrivals = Some((reading.arrivals, t));
        // Once the ring is full, the oldest sample marks the horizon: a
        // decision before it goes too (not before: the autoscaler's start
        // comes before the first sample).
        if rings.samples.len() == SAMPLES {
            rings.samples.pop_front();
            let horizon = rings.samples.front().map_or(t, |s| s.t);
            while rings.marks.front().is_some_and(|m| m.t < horizon) {
                rings.marks.pop_front();
            }
        }
        rings.samples.push_back(Sample {
            t,
            ready: reading.ready,
            desired: reading.desired,
            in_flight: reading.in_flight,
            queued: reading.queued,
            held: reading.held,
            rps,
            panic: reading.panic,
            p50: reading.p50,
            p99: reading.p99,
        });
    }

    pub fn mark(&self, mark: Mark) {
        let mut rings = self.lock();
        if rings.marks.len() == MARKS {
            rings.marks.pop_front();
        }
        rings.marks.push_back(mark);
    }

    /// The samples and marks after `since` (Unix ms; 0 for all), oldest first.
    pub fn since(&self, since: u64) -> (Vec<Sample>, Vec<Mark>) {
        let rings = self.lock();
        let samples = rings.samples.iter().filter(|s| s.t > since).cloned();
        let marks = rings.marks.iter().filter(|m| m.t > since).cloned();
        (samples.collect(), marks.collect())
    }

    fn lock(&self) -> MutexGuard<'_, Rings> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
