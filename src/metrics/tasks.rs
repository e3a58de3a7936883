//! Panics of the long-lived tasks (see `crate::supervise`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: &'static str,
    /// Empty for the gateway's own tasks.
    service: Arc<str>,
    namespace: Arc<str>,
}

#[derive(Clone, Debug, Default)]
pub struct TaskMetrics {
    panics: Family<TaskLabels, Counter>,
}

// === impl TaskMetrics ===

impl TaskMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = TaskMetrics::default();
        registry.register(
            "sluice_task_panics",
            "Panics of long-lived tasks (each was logged and the task restarted)",
            metrics.panics.clone(),
        );
        metrics
    }

    /// A task of a service (or of the gateway, with empty names) panicked.
    pub fn panicked(&self, task: &'static str, service: &str, namespace: &str) {
        let labels = TaskLabels {
            task,
            service: service.into(),
            namespace: namespace.into(),
        };
        self.panics.get_or_create(&labels).inc();
    }
}
