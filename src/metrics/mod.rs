//! Prometheus metrics, all named `sluice_*`.
//!
//! Counters and histograms are updated on the request path through handles
//! taken once per service. Live values (in flight, queued, per pod) are read
//! from the pods' own counters at scrape time by a collector the caller
//! gives (`shared::LiveMetrics`, which knows the services), so they
//! cannot drift and a removed pod's series goes away with it.

mod connections;
mod kubernetes;
mod tasks;

pub use self::connections::{ConnectionMetrics, ListenerMetrics};
pub use self::kubernetes::KubernetesMetrics;
pub use self::tasks::TaskMetrics;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Request durations in seconds, from a fast model to a slow cold start.
const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: Arc<str>,
    pub namespace: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: Arc<str>,
    namespace: Arc<str>,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    service: Arc<str>,
    namespace: Arc<str>,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

type HistogramFamily = Family<ServiceLabels, Histogram, fn() -> Histogram>;

/// The gateway's metrics and the registry they are encoded from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
    errors: Family<ErrorLabels, Counter>,
    retries: Family<ServiceLabels, Counter>,
    unrouted: Counter,
    reloads: Family<ReloadLabels, Counter>,
    pub kubernetes: KubernetesMetrics,
    pub tasks: TaskMetrics,
    pub connections: ConnectionMetrics,
}

/// One service's handles, taken once so the request path does no registry work
/// beyond a status-code lookup.
#[derive(Clone, Debug)]
pub struct ServiceMetrics {
    labels: ServiceLabels,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    errors: Family<ErrorLabels, Counter>,
    retries: Counter,
    pub tasks: TaskMetrics,
}

// === impl Metrics ===

impl Metrics {
    pub fn new(live: impl Collector + 'static) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "sluice_requests",
            "Requests answered, by service and HTTP status code",
            requests.clone(),
        );
        let durations: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        registry.register(
            "sluice_request_duration_seconds",
            "Time from a request's arrival to the end of its response body",
            durations.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "sluice_proxy_errors",
            "Responses made by sluice itself, by error (the sluice-error header)",
            errors.clone(),
        );
        let retries = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "sluice_upstream_retries",
            "Requests retried on another pod after a refused connection",
            retries.clone(),
        );
        let unrouted = Counter::default();
        registry.register(
            "sluice_unrouted_requests",
            "Requests for no configured service, answered 404",
            unrouted.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "sluice_config_reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        let kubernetes = KubernetesMetrics::register(&mut registry);
        let tasks = TaskMetrics::register(&mut registry);
        let connections = ConnectionMetrics::register(&mut registry);
        registry.register_collector(Box::new(live));
        Metrics {
            kubernetes,
            tasks,
            connections,
            registry,
            requests,
            durations,
            errors,
            retries,
            unrouted,
            reloads,
        }
    }

    pub fn service(&self, service: &str, namespace: &str) -> ServiceMetrics {
        let labels = ServiceLabels {
            service: service.into(),
            namespace: namespace.into(),
        };
        ServiceMetrics {
            duration: self.durations.get_or_create(&labels).clone(),
            retries: self.retries.get_or_create(&labels).clone(),
            requests: self.requests.clone(),
            errors: self.errors.clone(),
            tasks: self.tasks.clone(),
            labels,
        }
    }

    /// The count of requests no service took, for the proxy to add to.
    pub fn unrouted(&self) -> Counter {
        self.unrouted.clone()
    }

    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(8 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

// === impl ServiceMetrics ===

impl ServiceMetrics {
    pub fn request_done(&self, code: u16, seconds: f64) {
        let labels = RequestLabels {
            service: self.labels.service.clone(),
            namespace: self.labels.namespace.clone(),
            code,
        };
        self.requests.get_or_create(&labels).inc();
        self.duration.observe(seconds);
    }

    pub fn proxy_error(&self, error: &'static str) {
        let labels = ErrorLabels {
            service: self.labels.service.clone(),
            namespace: self.labels.namespace.clone(),
            error,
        };
        self.errors.get_or_create(&labels).inc();
    }

    pub fn retried(&self) {
        self.retries.inc();
    }
}
