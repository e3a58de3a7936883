//! The `kubernetes` actuator: a Deployment's replica count through its
//! `scale` subresource ([`super::scale`]), its ready pods from its Service's
//! EndpointSlices ([`super::endpoints`]).

mod endpoints;
mod scale;

pub use self::endpoints::{endpoints_of, Endpoint};

use self::endpoints::PodSource;
use self::scale::{ScaleTarget, Wanted};
use crate::actuator::{
    Actuator, BoxFuture, Context, Phase, ReplicaCounts, ReplicaSource, ReplicaStatus,
};
use crate::config::{KubernetesBackend, MetricsSource};
use crate::pods::Dispatcher;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

#[derive(Debug)]
pub struct KubernetesActuator {
    target: Arc<ScaleTarget>,
    dispatcher: Arc<Dispatcher>,
    /// As last listed; `None` until the first list.
    endpoints: Arc<Mutex<Option<Vec<Endpoint>>>>,
    wanted: watch::Sender<Option<Wanted>>,
    counts: ReplicaCounts,
    tasks: Vec<JoinHandle<()>>,
}

impl KubernetesActuator {
    /// Starts watching the pods and keeping the scale. Must run in the runtime.
    pub fn new(context: &Context, backend: &KubernetesBackend) -> Self {
        let service = context.service;
        let namespace = &service.namespace;
        let stats_port =
            (service.metrics == MetricsSource::Pods).then_some(service.pod_metrics_port);
        let (cluster, dispatcher) = (context.cluster.clone(), context.dispatcher.clone());
        let (zero_hold, activation_timeout) = (context.zero_hold, context.activation_timeout);
        let target = Arc::new(ScaleTarget {
            cluster,
            namespace: namespace.to_string(),
            deployment: backend.deployment.clone(),
            pods: PodSource {
                namespace: namespace.to_string(),
                service: backend.service_name().to_string(),
                port: backend.port,
                stats_port,
            },
            replicas: AtomicI64::new(-1),
            activating: AtomicBool::new(false),
            zero_hold,
            activation_timeout,
            dispatcher: dispatcher.clone(),
        });
        let endpoints = Arc::new(Mutex::new(None));
        let (wanted, decisions) = watch::channel(None);
        let tasks = vec![
            tokio::spawn(endpoints::watch(
                target.cluster.clone(),
                target.pods.clone(),
                dispatcher.clone(),
                endpoints.clone(),
            )),
            tokio::spawn(scale::keep(target.clone(), decisions)),
        ];
        KubernetesActuator {
            target,
            dispatcher,
            endpoints,
            wanted,
            counts: ReplicaCounts::default(),
            tasks,
        }
    }

    fn lock_endpoints(&self) -> std::sync::MutexGuard<'_, Option<Vec<Endpoint>>> {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The Deployment's replica count as last read or written.
    pub fn deployment_replicas(&self) -> Option<u32> {
        u32::try_from(self.target.replicas.load(Ordering::Relaxed)).ok()
    }
}

impl Actuator for KubernetesActuator {
    /// A decision. Repeating the same one only refreshes it (a leader
    /// writes only fresh decisions); a new one wakes the writer.
    fn scale(&self, replicas: u32) {
        let now = Some(Wanted {
            replicas,
            at: Instant::now(),
        });
        self.wanted.send_if_modified(|last| {
            let changed = last.map(|w| w.replicas) != Some(replicas);
            *last = now;
            changed
        });
    }

    /// The autoscaler cannot decide now: its last decision is withdrawn, so
    /// that it is not written later on what may have been stale.
    fn no_decision(&self) {
        self.wanted.send_replace(None);
    }

    /// Raises the Deployment from zero to one, from any gateway; leaves any
    /// other count alone, and leaves the decisions to the autoscaler.
    fn activate(&self, _replicas: u32) {
        if self.target.activating.swap(true, Ordering::AcqRel) {
            return;
        }
        let target = self.target.clone();
        tokio::spawn(async move {
            scale::raise_from_zero(&target).await;
            target.activating.store(false, Ordering::Release);
        });
    }

    fn source(&self) -> ReplicaSource {
        ReplicaSource::Existing
    }

    fn listed(&self) -> bool {
        self.lock_endpoints().is_some()
    }

    fn replicas(&self) -> Vec<ReplicaStatus> {
        let pods = self.dispatcher.pods();
        let endpoints = self.lock_endpoints();
        endpoints
            .iter()
            .flatten()
            .map(|e| {
                let pod = pods.iter().find(|p| p.authority() == &e.address);
                ReplicaStatus {
                    name: e.pod.clone(),
                    address: e.address.to_string(),
                    pid: None,
                    sidecar_pid: None,
                    phase: match (e.ready, e.terminating) {
                        (_, true) => Phase::Draining,
                        (true, _) => Phase::Ready,
                        (false, _) => Phase::Starting,
                    },
                    in_flight: pod.map_or(0, |p| p.in_flight()),
                    restarts: 0,
                    age_seconds: pod.map_or(0, |p| p.age().as_secs()),
                }
            })
            .collect()
    }

    fn counts(&self) -> &ReplicaCounts {
        &self.counts
    }

    /// The autoscaler decides only on pods it has listed and can watch. (A
    /// failing scale read or write blinds nothing: it is retried, reported,
    /// and only the leader's writes depend on it.)
    fn unhealthy(&self) -> Option<String> {
        let source = self.target.pods.health_source();
        if self.lock_endpoints().is_none() {
            return Some(format!("{source}: not listed yet"));
        }
        self.target
            .cluster
            .health()
            .is_failing(&source)
            .then(|| format!("{source} is failing"))
    }

    /// Stops watching; the Deployment keeps its replicas (they are not ours
    /// to stop: another gateway, or the user, may still want them).
    fn shutdown(&self) -> BoxFuture {
        for task in &self.tasks {
            task.abort();
        }
        let health = self.target.cluster.health();
        health.forget(&self.target.pods.health_source());
        health.forget(&self.target.health_source());
        Box::pin(async {})
    }
}

impl Drop for KubernetesActuator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
