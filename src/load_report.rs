//! The wire format of a pod's load, as its sidecar reports it on `GET
//! /stats` and the autoscaler reads it (`metrics: pods`). Its own module so
//! that the two sides share it without importing each other.

use serde::{Deserialize, Serialize};

/// The pod's load over the last whole second, and now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    /// Time-weighted average of requests in the pod (queued in the sidecar
    /// or at the model), from arrival until the response body ended.
    pub concurrency: f64,
    /// Requests that arrived, per second.
    pub rps: f64,
    /// At the model now.
    pub in_flight: usize,
    /// Waiting in the sidecar for a slot now.
    pub queued: usize,
    /// Seconds since the sidecar started, when this report was made.
    #[serde(default)]
    pub uptime: f64,
    /// Request-seconds since the sidecar started (the integral of
    /// concurrency): two reports give the exact average between them.
    #[serde(default)]
    pub request_seconds: f64,
    /// Requests that arrived since the sidecar started.
    #[serde(default)]
    pub requests: u64,
}
