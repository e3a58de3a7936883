//! Builders for objects shaped like those a cluster holds, to `apply`.

use serde_json::{json, Map, Value};

/// One endpoint of an EndpointSlice: a pod's address and its conditions.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub ip: String,
    pub pod_name: String,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

// === impl EndpointSpec ===

impl EndpointSpec {
    /// A running pod that passes its readiness probe.
    pub fn ready(ip: &str, pod_name: &str) -> EndpointSpec {
        EndpointSpec {
            ip: ip.to_string(),
            pod_name: pod_name.to_string(),
            ready: true,
            serving: true,
            terminating: false,
        }
    }

    /// A pod that runs but does not (yet) pass its readiness probe.
    pub fn not_ready(ip: &str, pod_name: &str) -> EndpointSpec {
        EndpointSpec {
            ready: false,
            serving: false,
            ..EndpointSpec::ready(ip, pod_name)
        }
    }

    /// A pod shutting down: no longer ready, still serving until it exits.
    pub fn terminating(ip: &str, pod_name: &str) -> EndpointSpec {
        EndpointSpec {
            ready: false,
            serving: true,
            terminating: true,
            ..EndpointSpec::ready(ip, pod_name)
        }
    }
}

/// An apps/v1 Deployment whose pods are labelled `app: {name}`.
pub fn deployment(namespace: &str, name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "kserve-container",
                        "image": "registry.example.com/model-server:1.0",
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    }],
                },
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
    })
}

/// A discovery.k8s.io/v1 EndpointSlice of `service`, as the endpointslice
/// controller writes it.
pub fn endpoint_slice(
    namespace: &str,
    service: &str,
    slice_name: &str,
    endpoints: &[EndpointSpec],
    port: u16,
) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|endpoint| {
            json!({
                "addresses": [endpoint.ip],
                "conditions": {
                    "ready": endpoint.ready,
                    "serving": endpoint.serving,
                    "terminating": endpoint.terminating,
                },
                "targetRef": {"kind": "Pod", "namespace": namespace, "name": endpoint.pod_name},
                "nodeName": "node-1",
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    })
}

/// A serving.kserve.io/v1beta1 InferenceService; `predictor` is the whole
/// `spec.predictor`, e.g.
/// `{"minReplicas": 0, "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://..."}}`.
pub fn inference_service(
    namespace: &str,
    name: &str,
    annotations: &[(&str, &str)],
    predictor: Value,
) -> Value {
    let annotations: Map<String, Value> = annotations
        .iter()
        .map(|(key, value)| (key.to_string(), json!(value)))
        .collect();
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"predictor": predictor},
    })
}
