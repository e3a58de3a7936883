//! Whether the Kubernetes API answers, per watch or call. While one fails,
//! the gateway serves with what it last knew; this says so in `/readyz`,
//! the logs and `sluice_kubernetes_api_reachable`.

use crate::metrics::KubernetesMetrics;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Mutex, PoisonError};
use tokio::time::Instant;
use tracing::{info, warn};

#[derive(Debug)]
pub struct ApiHealth {
    failing: Mutex<BTreeMap<String, Failure>>,
    metrics: KubernetesMetrics,
}

#[derive(Debug)]
struct Failure {
    since: Instant,
    error: String,
}

impl ApiHealth {
    pub fn new(metrics: KubernetesMetrics) -> Self {
        ApiHealth {
            failing: Mutex::new(BTreeMap::new()),
            metrics,
        }
    }

    /// `source` (e.g. `endpointslices kserve-inference/redwine-week4`) just
    /// failed. Logged once when it starts failing; counted every time.
    pub fn failed(&self, source: &str, operation: &'static str, error: &dyn Display) {
        self.metrics.api_error(operation);
        let mut failing = self.lock();
        let error = error.to_string();
        match failing.get_mut(source) {
            Some(failure) => failure.error = error,
            None => {
                warn!(source, %error, "Kubernetes API call failed; serving with what was last known, retrying");
                failing.insert(
                    source.to_string(),
                    Failure {
                        since: Instant::now(),
                        error,
                    },
                );
            }
        }
        self.metrics.set_api_reachable(false);
    }

    /// `source` just succeeded.
    pub fn succeeded(&self, source: &str) {
        let mut failing = self.lock();
        if let Some(failure) = failing.remove(source) {
            info!(
                source,
                after = ?failure.since.elapsed(),
                "Kubernetes API reachable again"
            );
        }
        self.metrics.set_api_reachable(failing.is_empty());
    }

    /// Forgets a source that is gone (a retired service's watch).
    pub fn forget(&self, source: &str) {
        let mut failing = self.lock();
        failing.remove(source);
        self.metrics.set_api_reachable(failing.is_empty());
    }

    pub fn is_failing(&self, source: &str) -> bool {
        self.lock().contains_key(source)
    }

    /// One line per failing source, for `/readyz` and `/status`.
    pub fn problems(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|(source, f)| {
                format!(
                    "{source}: failing for {}s: {}",
                    f.since.elapsed().as_secs(),
                    f.error
                )
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Failure>> {
        self.failing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
