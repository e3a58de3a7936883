//! The Kubernetes side's metrics: API errors, whether the API answers, and
//! whether this gateway leads autoscaling.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// Cheap to clone: every handle shares its value.
#[derive(Clone, Debug, Default)]
pub struct KubernetesMetrics {
    api_errors: Family<OperationLabels, Counter>,
    api_reachable: Gauge,
    leader: Gauge,
    scale_writes: Counter,
}

impl KubernetesMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = KubernetesMetrics::default();
        registry.register(
            "sluice_kubernetes_api_errors",
            "Failed calls to the Kubernetes API, by operation",
            metrics.api_errors.clone(),
        );
        registry.register(
            "sluice_kubernetes_api_reachable",
            "1 when every Kubernetes watch and call last succeeded, 0 while one fails",
            metrics.api_reachable.clone(),
        );
        registry.register(
            "sluice_leader",
            "1 when this gateway leads autoscaling (always 1 without leader election)",
            metrics.leader.clone(),
        );
        registry.register(
            "sluice_kubernetes_scale_writes",
            "Replica counts written to a Deployment's scale subresource",
            metrics.scale_writes.clone(),
        );
        metrics.api_reachable.set(1);
        metrics
    }

    pub fn api_error(&self, operation: &'static str) {
        self.api_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    pub fn set_api_reachable(&self, reachable: bool) {
        self.api_reachable.set(i64::from(reachable));
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn scale_written(&self) {
        self.scale_writes.inc();
    }
}
