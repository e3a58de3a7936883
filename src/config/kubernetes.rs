//! The configuration of sluice on Kubernetes: the `kubernetes` backend of a
//! service, and the gateway-wide `kubernetes:` section (client, leader
//! election, KServe InferenceServices).

use super::{Dur, MetricsSource};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Pods of a Deployment: replicas through its `scale` subresource, ready pods
/// from the EndpointSlices of its Service. The namespace is the service's.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesBackend {
    pub deployment: String,
    /// The Service whose EndpointSlices list the pods (label
    /// `kubernetes.io/service-name`); unset: the deployment's name.
    #[serde(default)]
    pub service: Option<String>,
    /// The pods' port requests go to (the sidecar's, when one is injected).
    pub port: u16,
}

impl KubernetesBackend {
    pub fn service_name(&self) -> &str {
        self.service.as_deref().unwrap_or(&self.deployment)
    }
}

/// Gateway-wide Kubernetes settings. Read at start; a reload that changes
/// them is logged and takes effect on restart.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KubernetesSettings {
    /// A kubeconfig file; unset: in-cluster, else `$KUBECONFIG` or
    /// `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    pub leader_election: LeaderElection,
    pub inference_services: InferenceServices,
}

/// Several gateway replicas elect one autoscaling leader through a
/// `coordination.k8s.io/v1` Lease. Only the leader changes replica counts;
/// any gateway may raise a service from zero when it holds a request.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LeaderElection {
    pub enabled: bool,
    pub lease_name: String,
    /// Unset: the namespace sluice runs in (in-cluster), else the
    /// kubeconfig context's.
    pub lease_namespace: Option<String>,
    /// This gateway's name in the Lease; unset: `$POD_NAME`, else the host
    /// name, with a random suffix.
    pub identity: Option<String>,
    /// How long a lease is good for without renewal (client-go's default).
    pub lease_duration: Dur,
    /// A leader that could not renew for this long stops scaling. Shorter
    /// than the lease, so it stops before anyone else may take over.
    pub renew_deadline: Dur,
    /// How often the lease is renewed or tried.
    pub retry_period: Dur,
}

/// KServe InferenceServices that opt in with the annotation
/// `sluice.dev/autoscale: "true"` become services of this gateway.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct InferenceServices {
    pub enabled: bool,
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    /// The predictor pods' port (KServe's default container port); an
    /// InferenceService may say otherwise with `sluice.dev/port`.
    pub port: u16,
    /// Where the load is read; `sluice.dev/metrics` overrides it.
    pub metrics: MetricsSource,
    /// The sidecars' admin port, for `metrics: pods`.
    pub pod_metrics_port: u16,
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            enabled: false,
            lease_name: "sluice-autoscaler".into(),
            lease_namespace: None,
            identity: None,
            lease_duration: Dur(Duration::from_secs(15)),
            renew_deadline: Dur(Duration::from_secs(10)),
            retry_period: Dur(Duration::from_secs(2)),
        }
    }
}

impl Default for InferenceServices {
    fn default() -> Self {
        InferenceServices {
            enabled: false,
            namespaces: Vec::new(),
            port: 8080,
            metrics: MetricsSource::Gateway,
            pod_metrics_port: 9091,
        }
    }
}
