//! Gauges read at scrape time from the services' live counters.

use crate::service::Routes;
use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::Arc;

#[derive(Debug)]
pub struct LiveCollector {
    routes: Arc<ArcSwap<Routes>>,
}

impl LiveCollector {
    pub fn new(routes: Arc<ArcSwap<Routes>>) -> Self {
        LiveCollector { routes }
    }
}

type Reading = fn(&crate::service::Service) -> usize;

const SERVICE_GAUGES: [(&str, &str, Reading); 3] = [
    (
        "sluice_in_flight_requests",
        "Requests at a pod whose response body has not ended, per service",
        |s| s.dispatcher().in_flight(),
    ),
    (
        "sluice_queued_requests",
        "Requests waiting for a pod slot (containerConcurrency reached or no pod ready)",
        |s| s.dispatcher().queued(),
    ),
    ("sluice_ready_replicas", "Pods that receive requests", |s| {
        s.dispatcher().pods().len()
    }),
];

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let routes = self.routes.load();
        let services = routes.services();
        for (name, help, read) in SERVICE_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in services {
                let labels = [("service", s.name()), ("namespace", s.namespace())];
                ConstGauge::new(read(s) as i64).encode(family.encode_family(&labels)?)?;
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
