//! A fixed list of pod addresses: no scaling.

use super::{Actuator, BoxFuture, Phase, ReplicaCounts, ReplicaSource, ReplicaStatus};
use crate::pods::Dispatcher;
use http::uri::Authority;
use std::sync::Arc;

#[derive(Debug)]
pub struct StaticActuator {
    dispatcher: Arc<Dispatcher>,
    counts: ReplicaCounts,
}

impl StaticActuator {
    pub fn new(dispatcher: Arc<Dispatcher>, pods: &[Authority]) -> Self {
        dispatcher.set_pods(pods);
        StaticActuator {
            dispatcher,
            counts: ReplicaCounts::default(),
        }
    }

    /// A reload changed the list: pods that remain keep their counts.
    pub fn set_pods(&self, pods: &[Authority]) {
        self.dispatcher.set_pods(pods);
    }
}

impl Actuator for StaticActuator {
    fn scale(&self, _replicas: u32) {}

    fn source(&self) -> ReplicaSource {
        ReplicaSource::Fixed
    }

    fn replicas(&self) -> Vec<ReplicaStatus> {
        self.dispatcher
            .pods()
            .iter()
            .map(|pod| ReplicaStatus {
                name: pod.addr().to_string(),
                address: pod.addr().to_string(),
                pid: None,
                sidecar_pid: None,
                phase: Phase::Ready,
                in_flight: pod.in_flight(),
                restarts: 0,
                age_seconds: pod.age().as_secs(),
            })
            .collect()
    }

    fn counts(&self) -> &ReplicaCounts {
        &self.counts
    }

    fn shutdown(&self) -> BoxFuture {
        Box::pin(async {})
    }
}
