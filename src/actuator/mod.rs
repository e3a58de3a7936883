//! Where replicas come from. The rest of sluice only asks an [`Actuator`]
//! for a number of replicas and reads back what it has; each actuator puts
//! its ready pods into the service's dispatcher itself.

mod kubernetes;
mod process;
mod static_pods;

pub use self::kubernetes::{endpoints_of, Endpoint, KubernetesActuator};
pub use self::process::ProcessActuator;
pub use self::static_pods::StaticActuator;

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

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

    /// Whether its replicas exist only because this sluice starts them (local
    /// processes): then they start at minReplicas at once. A Deployment's
    /// replicas exist without sluice and are left as they are until the
    /// autoscaler's first decision.
    fn owns_replicas(&self) -> bool {
        true
    }

    /// Whether it has learned its replicas at least once (a Kubernetes
    /// backend has listed its pods). Until every service's has, the gateway
    /// is not ready.
    fn listed(&self) -> bool {
        true
    }

    /// Whether `scale` does anything (a static list does not scale).
    fn scales(&self) -> bool;

    /// The replicas as they are now.
    fn replicas(&self) -> Vec<ReplicaStatus>;

    /// Lifetime counts of replica starts, stops and restarts.
    fn counts(&self) -> &ReplicaCounts;

    /// Drains and stops every replica it started.
    fn shutdown(&self) -> BoxFuture;
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
