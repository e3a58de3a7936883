//! Prometheus metrics, all named `sluice_*`.
//!
//! Counters and histograms are updated on the request path through handles
//! taken once per service. Live values (in flight, queued, per pod) are read
//! from the pods' own counters at scrape time by a collector the caller
//! gives (`shared::LiveMetrics`, which knows the services), so they
//! cannot drift and a removed pod's series goes away with it.

mod connections;
mod kubernetes;
mod recent;
mod tasks;
mod tls;

pub use self::connections::{ConnectionMetrics, ListenerMetrics};
pub use self::kubernetes::KubernetesMetrics;
pub use self::recent::RecentDurations;
pub use self::tasks::TaskMetrics;
pub use self::tls::TlsMetrics;

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

/// Cold starts and holds, in seconds: from a warm process to a large model's pull.
const COLD_START_BUCKETS: [f64; 15] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
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
    first_bytes: HistogramFamily,
    cold_starts: HistogramFamily,
    holds: HistogramFamily,
    errors: Family<ErrorLabels, Counter>,
    retries: Family<ServiceLabels, Counter>,
    pod_metrics_failures: Family<ServiceLabels, Counter>,
    unrouted: Counter,
    reloads: Family<ReloadLabels, Counter>,
    pub kubernetes: KubernetesMetrics,
    pub tasks: TaskMetrics,
    pub connections: ConnectionMetrics,
    pub tls: TlsMetrics,
}

/// One service's handles, taken once so the request path does no registry work
/// beyond a status-code lookup.
#[derive(Clone, Debug)]
pub struct ServiceMetrics {
    labels: ServiceLabels,
    requests: Family<RequestLabels, Counter>,
    /// The `code="200"` counter, taken once: nearly every request lands here, and
    /// the family lookup costs two label clones, a hash and a lock.
    ok: Counter,
    duration: Histogram,
    first_byte: Histogram,
    cold_start: Histogram,
    held: Histogram,
    /// This service's latest durations, for the live page's quantiles.
    pub recent: Arc<RecentDurations>,
    errors: Family<ErrorLabels, Counter>,
    retries: Counter,
    /// Reads of a pod's model server (`podMetrics`) that gave no reading.
    pub pod_metrics_failures: Counter,
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
        let first_bytes: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        registry.register(
            "sluice_time_to_first_byte_seconds",
            "Time from a request's arrival to the first byte of its pod's response body (a language model's first token)",
            first_bytes.clone(),
        );
        let cold_starts: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(COLD_START_BUCKETS));
        registry.register(
            "sluice_cold_start_seconds",
            "From the arrival of the request that found no replica ready to the end of its response",
            cold_starts.clone(),
        );
        let holds: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(COLD_START_BUCKETS));
        registry.register(
            "sluice_held_duration_seconds",
            "Time a request was held by the activator until a pod took it",
            holds.clone(),
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
        let pod_metrics_failures = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "sluice_pod_metrics_failures",
            "Reads of a model server's own metrics (podMetrics) that gave no reading: no answer in time, an error status, or text without the configured metrics",
            pod_metrics_failures.clone(),
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
        let tls = TlsMetrics::register(&mut registry);
        registry.register_collector(Box::new(live));
        Metrics {
            kubernetes,
            tasks,
            connections,
            tls,
            registry,
            requests,
            durations,
            first_bytes,
            cold_starts,
            holds,
            errors,
            retries,
            pod_metrics_failures,
            unrouted,
            reloads,
        }
    }

    pub fn service(&self, service: &str, namespace: &str) -> ServiceMetrics {
        let labels = ServiceLabels {
            service: service.into(),
            namespace: namespace.into(),
        };
        let ok = self
            .requests
            .get_or_create(&RequestLabels {
                service: labels.service.clone(),
                namespace: labels.namespace.clone(),
                code: 200,
            })
            .clone();
        ServiceMetrics {
            ok,
            duration: self.durations.get_or_create(&labels).clone(),
            first_byte: self.first_bytes.get_or_create(&labels).clone(),
            cold_start: self.cold_starts.get_or_create(&labels).clone(),
            held: self.holds.get_or_create(&labels).clone(),
            recent: Arc::default(),
            retries: self.retries.get_or_create(&labels).clone(),
            pod_metrics_failures: self.pod_metrics_failures.get_or_create(&labels).clone(),
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
        self.duration.observe(seconds);
        self.recent.observe(seconds);
        if code == 200 {
            self.ok.inc();
            return;
        }
        let labels = RequestLabels {
            service: self.labels.service.clone(),
            namespace: self.labels.namespace.clone(),
            code,
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// The first byte of a pod's response body is on its way to the client.
    pub fn first_byte(&self, seconds: f64) {
        self.first_byte.observe(seconds);
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

    /// A request that was held for the first pod got its pod.
    pub fn held(&self, seconds: f64) {
        self.held.observe(seconds);
    }

    /// The request that found the service at zero has been answered.
    pub fn cold_start(&self, seconds: f64) {
        self.cold_start.observe(seconds);
    }
}
