//! Values read at scrape time from the services' live state: counts in
//! flight, queued and held, replicas, and the autoscaler's last decision.

use crate::service::{Routes, Service};
use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::Arc;

#[derive(Debug)]
pub struct LiveMetrics {
    routes: Arc<ArcSwap<Routes>>,
}

impl LiveMetrics {
    pub fn new(routes: Arc<ArcSwap<Routes>>) -> Self {
        LiveMetrics { routes }
    }
}

type Reading = fn(&Service) -> f64;

const GAUGES: [(&str, &str, Reading); 8] = [
    (
        "sluice_in_flight_requests",
        "Requests at a pod whose response body has not ended, per service",
        |s| s.dispatcher().in_flight() as f64,
    ),
    (
        "sluice_queued_requests",
        "Requests waiting for a pod slot (containerConcurrency reached or no pod ready)",
        |s| s.dispatcher().queued() as f64,
    ),
    (
        "sluice_held_requests",
        "Requests held by the activator because the service had no ready pod",
        |s| s.dispatcher().held() as f64,
    ),
    ("sluice_ready_replicas", "Pods that receive requests", |s| {
        s.dispatcher().pods().len() as f64
    }),
    (
        "sluice_desired_replicas",
        "Replicas the autoscaler wants",
        |s| f64::from(s.scaler_status().desired),
    ),
    (
        "sluice_autoscaler_panic",
        "1 while the autoscaler is in panic mode",
        |s| f64::from(u8::from(s.scaler_status().panic)),
    ),
    (
        "sluice_observed_stable_concurrency",
        "Average load over the stable window (concurrency or rps, per scaleMetric)",
        |s| s.scaler_status().stable_concurrency,
    ),
    (
        "sluice_observed_panic_concurrency",
        "Average load over the panic window (concurrency or rps, per scaleMetric)",
        |s| s.scaler_status().panic_concurrency,
    ),
];

type Count = fn(&Service) -> u64;

const COUNTERS: [(&str, &str, Count); 3] = [
    ("sluice_replica_starts", "Replica processes started", |s| {
        s.actuator().counts().read().0
    }),
    (
        "sluice_replica_stops",
        "Replicas drained and stopped",
        |s| s.actuator().counts().read().1,
    ),
    (
        "sluice_replica_restarts",
        "Replicas restarted after they exited",
        |s| s.actuator().counts().read().2,
    ),
];

impl Collector for LiveMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let routes = self.routes.load();
        let services = routes.services();
        for (name, help, read) in GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in services {
                let labels = [("service", s.name()), ("namespace", s.namespace())];
                ConstGauge::new(read(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, read) in COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in services {
                let labels = [("service", s.name()), ("namespace", s.namespace())];
                ConstCounter::new(read(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "sluice_pod_in_flight_requests",
            "Requests at one pod whose response body has not ended",
            None,
            MetricType::Gauge,
        )?;
        for s in services {
            for pod in s.dispatcher().pods() {
                let labels = [
                    ("service", s.name()),
                    ("namespace", s.namespace()),
                    ("pod", pod.addr()),
                ];
                ConstGauge::new(pod.in_flight() as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
