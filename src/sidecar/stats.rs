//! The pod's load, measured every second: what the autoscaler scrapes.

use crate::service::Service;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

pub use crate::load_report::LoadReport;

#[derive(Debug)]
pub struct Stats {
    last_second: Mutex<LoadReport>,
    last_arrival: Mutex<Instant>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            last_second: Mutex::new(LoadReport::default()),
            last_arrival: Mutex::new(Instant::now()),
        }
    }
}

impl Stats {
    pub fn arrived(&self) {
        *self
            .last_arrival
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    pub fn since_last_arrival(&self) -> Duration {
        self.last_arrival
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    pub fn report(&self, service: &Service) -> LoadReport {
        let last = *self
            .last_second
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (uptime, request_seconds, requests) = service.dispatcher().load_totals();
        LoadReport {
            in_flight: service.dispatcher().in_flight(),
            queued: service.dispatcher().queued(),
            uptime,
            request_seconds,
            requests,
            ..last
        }
    }
}

/// Reads the pod's load meter every second.
pub async fn measure(service: Arc<Service>, stats: Arc<Stats>, mut stopped: watch::Receiver<bool>) {
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    second.tick().await;
    service.dispatcher().read_load(); // start the first whole second now
    loop {
        tokio::select! {
            _ = second.tick() => {}
            _ = crate::server::stopped(&mut stopped) => return,
        }
        let reading = service.dispatcher().read_load();
        *stats
            .last_second
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = LoadReport {
            concurrency: reading.concurrency,
            rps: reading.rps,
            ..LoadReport::default()
        };
    }
}
