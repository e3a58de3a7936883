//! `/status`: the services and their pods with live counts, as JSON.

use crate::actuator::ReplicaStatus;
use crate::service::Service;
use crate::shared::Shared;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub listen: String,
    pub draining: bool,
    /// Who leads autoscaling.
    #[serde(default)]
    pub leader: LeaderStatus,
    /// Kubernetes API watches or calls failing now, one line each.
    #[serde(default)]
    pub kubernetes_problems: Vec<String>,
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderStatus {
    /// Whether gateways elect a leader (else each one leads).
    pub election: bool,
    pub identity: String,
    /// The lease's holder as last read.
    pub holder: Option<String>,
    pub is_leader: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub name: String,
    pub namespace: String,
    pub url: String,
    pub hosts: Vec<String>,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub container_concurrency: usize,
    pub desired: u32,
    pub ready_pods: usize,
    pub in_flight: usize,
    pub queued: usize,
    pub held: usize,
    pub panic: bool,
    pub stable_concurrency: f64,
    pub panic_concurrency: f64,
    pub age_seconds: u64,
    /// The pods in the balancer.
    pub pods: Vec<PodStatus>,
    /// The replicas the actuator manages, ready or not.
    pub replicas: Vec<ReplicaStatus>,
    /// What went wrong in the service's own tasks (a panic, restarted).
    #[serde(default)]
    pub problems: Vec<String>,
    /// What sluice could not honour of the service's settings (an
    /// InferenceService's Knative annotations).
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub address: String,
    pub in_flight: usize,
    /// Requests admitted to this pod since it was added.
    pub requests: u64,
    pub age_seconds: u64,
}

impl Status {
    pub fn read(shared: &Shared) -> Status {
        let config = shared.config();
        let routes = shared.routes.load();
        let services = routes
            .services()
            .iter()
            .map(|s| ServiceStatus::of(s))
            .collect();
        let leadership = shared.cluster.leadership();
        Status {
            listen: config.listen.to_string(),
            draining: shared.is_draining(),
            leader: LeaderStatus {
                election: leadership.is_elected(),
                identity: leadership.identity().to_string(),
                holder: leadership.holder(),
                is_leader: leadership.is_leader(),
            },
            kubernetes_problems: shared.cluster.health().problems(),
            services,
        }
    }
}

impl ServiceStatus {
    pub fn of(s: &Service) -> ServiceStatus {
        let settings = s.settings();
        let pods: Vec<PodStatus> = s
            .dispatcher()
            .pods()
            .iter()
            .map(|p| PodStatus {
                address: p.addr().to_string(),
                in_flight: p.in_flight(),
                requests: p.admitted(),
                age_seconds: p.age().as_secs(),
            })
            .collect();
        let scaler = s.scaler_status();
        ServiceStatus {
            name: s.name().to_string(),
            namespace: s.namespace().to_string(),
            url: format!("http://{}", settings.hosts[0]),
            hosts: settings.hosts.clone(),
            min_replicas: settings.config.min_replicas,
            max_replicas: settings.config.max_replicas(),
            container_concurrency: settings.config.container_concurrency,
            desired: scaler.desired,
            ready_pods: pods.len(),
            in_flight: s.dispatcher().in_flight(),
            queued: s.dispatcher().queued(),
            held: s.dispatcher().held(),
            panic: scaler.panic,
            stable_concurrency: scaler.stable_concurrency,
            panic_concurrency: scaler.panic_concurrency,
            age_seconds: s.age().as_secs(),
            pods,
            replicas: s.actuator().replicas(),
            problems: s.problems(),
            warnings: settings.config.warnings.clone(),
        }
    }
}
