//! Where replicas come from. The rest of sluice only asks an [`Actuator`]
//! for a number of replicas and reads back what it has; each actuator puts
//! its ready pods into the service's dispatcher itself.

mod kubernetes;
mod process;
mod static_pods;

pub use self::kubernetes::{endpoints_of, Endpoint, KubernetesActuator};
pub use self::process::ProcessActuator;
pub use self::static_pods::StaticActuator;

use crate::config::ServiceConfig;
use crate::kubernetes::Cluster;
use crate::pods::Dispatcher;
use crate::supervise::PanicReports;
use http::uri::Authority;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What an actuator is built from, beyond its own backend's settings.
pub struct Context<'a> {
    pub service: &'a ServiceConfig,
    pub dispatcher: &'a Arc<Dispatcher>,
    pub cluster: &'a Arc<Cluster>,
    /// Where a replica task's panic is reported.
    pub panics: &'a Arc<PanicReports>,
    /// The service's: a local replica's sidecar never times out first.
    pub request_timeout: Duration,
    pub queue_timeout: Duration,
    /// How long a request may be held for a first pod.
    pub activation_timeout: Duration,
    /// The stable window plus the scale-to-zero grace: how long a count
    /// raised from zero by another gateway is left once its pod is ready.
    pub zero_hold: Duration,
}

/// The actuator the service's backend asks for.
pub fn for_service(context: &Context) -> Arc<dyn Actuator> {
    let backend = &context.service.backend;
    if let Some(kubernetes) = &backend.kubernetes {
        Arc::new(KubernetesActuator::new(context, kubernetes))
    } else if let Some(process) = &backend.process {
        Arc::new(ProcessActuator::new(context, process))
    } else {
        let addresses: Vec<Authority> = backend
            .static_pods
            .iter()
            .flatten()
            .filter_map(|addr| addr.parse().ok())
            .collect();
        Arc::new(StaticActuator::new(context.dispatcher.clone(), &addresses))
    }
}

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Actuator: Send + Sync + std::fmt::Debug {
    /// Asks for `replicas` replicas. Returns at once; the actuator converges
    /// in the background.
    fn scale(&self, replicas: u32);

    /// A request is held and no replica is ready: make sure `replicas` are
    /// coming. Unlike `scale`, any gateway may do this (not only the leader).
    fn activate(&self, replicas: u32) {
        self.scale(replicas);
    }

    /// The autoscaler cannot decide now (it cannot see the replicas): an
    /// actuator that writes decisions later drops the last one.
    fn no_decision(&self) {}

    /// Why the actuator cannot see or change its replicas right now (e.g. the
    /// Kubernetes API is unreachable). While it says so, the autoscaler does
    /// not scale down on what may be stale knowledge.
    fn unhealthy(&self) -> Option<String> {
        None
    }

    /// Whether it has learned its replicas at least once (a Kubernetes
    /// backend has listed its pods). Until every service's has, the gateway
    /// is not ready.
    fn listed(&self) -> bool {
        true
    }

    /// What its replicas are.
    fn source(&self) -> ReplicaSource;

    /// The replicas as they are now.
    fn replicas(&self) -> Vec<ReplicaStatus>;

    /// Lifetime counts of replica starts, stops and restarts.
    fn counts(&self) -> &ReplicaCounts;

    /// Drains and stops every replica it started.
    fn shutdown(&self) -> BoxFuture;
}

/// What an actuator's replicas are, which decides how they are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaSource {
    /// A fixed list of addresses: `scale` does nothing.
    Fixed,
    /// Started by this sluice (local processes): they exist only because
    /// it starts them, so they start at minReplicas at once.
    Started,
    /// Existing without sluice (a Deployment's pods): left as they are
    /// until the autoscaler's first decision on what it observed.
    Existing,
}

impl ReplicaSource {
    /// Whether `scale` does anything.
    pub fn scales(self) -> bool {
        self != ReplicaSource::Fixed
    }

    /// Whether the replicas exist only because this sluice starts them.
    pub fn owned(self) -> bool {
        self == ReplicaSource::Started
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Started, not yet answering its readiness check.
    Starting,
    /// Receiving requests.
    Ready,
    /// No new requests; finishing those in flight before it stops.
    Draining,
    /// Exited unexpectedly; restarting after a backoff.
    Crashed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub name: String,
    pub address: String,
    /// The process id, for a local replica that is running.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The process id of its sidecar, if it has one.
    #[serde(default)]
    pub sidecar_pid: Option<u32>,
    pub phase: Phase,
    pub in_flight: usize,
    pub restarts: u64,
    pub age_seconds: u64,
}

#[derive(Debug, Default)]
pub struct ReplicaCounts {
    pub starts: AtomicU64,
    pub stops: AtomicU64,
    pub restarts: AtomicU64,
}

impl ReplicaCounts {
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.starts.load(Ordering::Relaxed),
            self.stops.load(Ordering::Relaxed),
            self.restarts.load(Ordering::Relaxed),
        )
    }
}
