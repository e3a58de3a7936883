//! A fake Kubernetes cluster for the `kubernetes_*` tests: the model's
//! Deployment, its pods (real upstreams on loopback IPs, one port, as pod
//! IPs on a cluster) listed in its EndpointSlice, and a kubeconfig.

use super::config::{quoted, ConfigBuilder, Service};
use super::fake_kube::{deployment, endpoint_slice, EndpointSpec, FakeKube};
use super::upstream::{pods_on_one_port, Upstream};
use super::{client, eventually, get_json, send, TestGateway};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const NS: &str = "ml";
pub const DEPLOYMENT: &str = "model-predictor";
pub const HOST: &str = "model.ml.example.com";
pub const LEASE_NS: &str = "sluice-system";
pub const LEASE: &str = "sluice-autoscaler";

/// A fake cluster with the model's pods, and a kubeconfig for it.
pub struct Setup {
    pub pods: Vec<Upstream>,
    pub port: u16,
    pub fake: FakeKube,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

/// The model's Deployment at `replicas`, and the first pods at `ips` listed
/// in these states.
pub async fn setup(ips: &[&str], replicas: i64, states: &[State]) -> Setup {
    let pods = pods_on_one_port(ips).await;
    let fake = FakeKube::start().await;
    fake.apply(deployment(NS, DEPLOYMENT, replicas));
    apply_pods(&fake, &pods, states);
    let dir = tempfile::tempdir().unwrap();
    Setup {
        port: pods[0].addr.port(),
        kubeconfig: fake.write_kubeconfig(0, dir.path()),
        pods,
        fake,
        _dir: dir,
    }
}

// === impl Setup ===

impl Setup {
    /// A gateway config on this cluster's kubeconfig, without services.
    pub fn config(&self) -> ConfigBuilder {
        config(&self.kubeconfig)
    }

    /// The model's service, on its pods' port.
    pub fn model(&self) -> Service {
        model(self.port)
    }

    /// Lists the first pods in these states.
    pub fn apply_pods(&self, states: &[State]) {
        apply_pods(&self.fake, &self.pods, states);
    }

    /// The Deployment's replica count, as the fake API server holds it.
    pub fn replicas(&self) -> Option<i64> {
        self.fake.replicas(NS, DEPLOYMENT)
    }
}

/// A gateway config that reads the cluster through `kubeconfig`, with an
/// autoscaler that decides every second on a 6 s window.
pub fn config(kubeconfig: &Path) -> ConfigBuilder {
    ConfigBuilder::new()
        .autoscaler("tickInterval", "1s")
        .autoscaler("stableWindow", "6s")
        .autoscaler("scaleToZeroGracePeriod", "1s")
        .kubernetes("kubeconfig", quoted(&kubeconfig.display().to_string()))
}

/// The model's `kubernetes` service: its Deployment's pods, on `port`.
pub fn model(port: u16) -> Service {
    Service::kubernetes("model", NS, DEPLOYMENT, port)
}

/// The `kubernetes.leaderElection` value for a gateway named `identity`.
pub fn election(identity: &str) -> String {
    format!(
        "{{ enabled: true, identity: {identity}, leaseNamespace: {LEASE_NS}, \
         leaseDuration: 3s, renewDeadline: 2s, retryPeriod: 500ms }}"
    )
}

pub fn slice(endpoints: &[EndpointSpec], port: u16) -> serde_json::Value {
    endpoint_slice(NS, DEPLOYMENT, "model-predictor-x7k2p", endpoints, port)
}

pub fn ip(pod: &Upstream) -> String {
    pod.addr.ip().to_string()
}

pub type State = fn(&str, &str) -> EndpointSpec;
pub const READY: State = EndpointSpec::ready;
pub const STARTING: State = EndpointSpec::not_ready;
pub const LEAVING: State = EndpointSpec::terminating;

/// The service's slice: the first pods, named model-a, model-b, ..., in
/// these states, on the pods' port.
pub fn apply_pods(fake: &FakeKube, pods: &[Upstream], states: &[State]) {
    let names = ["model-a", "model-b", "model-c", "model-d"];
    let endpoints: Vec<EndpointSpec> = pods
        .iter()
        .zip(states)
        .zip(names)
        .map(|((pod, state), name)| state(&ip(pod), name))
        .collect();
    fake.apply(slice(&endpoints, pods[0].addr.port()));
}

pub async fn service_status(gateway: &TestGateway) -> serde_json::Value {
    let status = get_json(gateway.admin_url("/status")).await;
    status["services"][0].clone()
}

/// Waits for the autoscaler's first decision on `pods` listed, ready pods:
/// to keep them.
pub async fn decided_on(gateway: &TestGateway, pods: u64) {
    eventually(
        Duration::from_secs(10),
        "a decision on the listed pods",
        || async {
            let status = service_status(gateway).await;
            status["readyPods"] == pods && status["desired"] == pods
        },
    )
    .await;
}

pub async fn ready_pods(gateway: &TestGateway) -> u64 {
    service_status(gateway).await["readyPods"]
        .as_u64()
        .unwrap_or(0)
}

pub async fn is_leader(gateway: &TestGateway) -> bool {
    get_json(gateway.admin_url("/status")).await["leader"]["isLeader"] == true
}

/// `clients` closed loops of `/slow?ms=200` until `stop` is set.
pub fn load(
    gateway: &TestGateway,
    clients: usize,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    (0..clients)
        .map(|_| {
            let url = gateway.url("/slow?ms=200");
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = client();
                let mut codes = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    let response = send(client.get(&url).header("host", HOST)).await;
                    codes.push(response.status().as_u16());
                }
                codes
            })
        })
        .collect()
}
