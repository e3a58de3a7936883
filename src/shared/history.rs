//! The sampler behind `/history`: once a second, each service's replicas,
//! load, request rate and latency go into its own history.

use crate::history::Reading;
use crate::service::{unix_millis, Routes, Service};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// Runs until aborted. A service added later starts its history at its
/// first sample; a removed one takes its history with it.
pub async fn keep_history(routes: Arc<ArcSwap<Routes>>) {
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        second.tick().await;
        let t = unix_millis();
        for service in routes.load().services() {
            service.history().record(t, reading(service));
        }
    }
}

fn reading(service: &Service) -> Reading {
    let dispatcher = service.dispatcher();
    let scaler = service.scaler_status();
    let [p50, p99] = service.metrics().recent.take_quantiles([0.5, 0.99]);
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Reading {
        ready: count(dispatcher.pods().len()),
        desired: scaler.desired,
        in_flight: count(dispatcher.in_flight()),
        queued: count(dispatcher.queued()),
        held: count(dispatcher.held()),
        arrivals: dispatcher.load_totals().2,
        panic: scaler.panic,
        p50,
        p99,
    }
}
