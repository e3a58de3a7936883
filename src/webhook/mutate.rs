//! The admission decision, as a pure function: an AdmissionReview in, an
//! AdmissionReview response out, with a JSONPatch that injects the sidecar
//! into pods that opted in.

use base64::Engine;
use serde_json::{json, Value};

/// Pods opt in with this label or annotation set to "true".
pub const INJECT: &str = "sluice.dev/inject";
/// Set on pods already injected, so that a second pass changes nothing.
pub const INJECTED: &str = "sluice.dev/injected";
pub const CONTAINER_CONCURRENCY: &str = "sluice.dev/container-concurrency";
pub const MODEL_PORT: &str = "sluice.dev/model-port";
pub const SIDECAR_NAME: &str = "sluice-sidecar";

/// What the injected container looks like.
#[derive(Debug, Clone)]
pub struct Injection {
    pub image: String,
    pub port: u16,
    pub admin_port: u16,
    /// Seconds the sidecar keeps serving after the pod is told to stop, while
    /// its endpoint is removed.
    pub pre_stop_seconds: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReviewError {
    #[error("not an AdmissionReview: {0}")]
    Malformed(String),
}

/// Answers one AdmissionReview (admission.k8s.io/v1).
pub fn review(body: &[u8], injection: &Injection) -> Result<Value, ReviewError> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    let request = &review["request"];
    let uid = request["uid"]
        .as_str()
        .ok_or_else(|| ReviewError::Malformed("request.uid is missing".into()))?;
    let mut response = json!({ "uid": uid, "allowed": true });
    let is_pod = request["kind"]["kind"].as_str() == Some("Pod");
    if is_pod {
        if let Some(patch) = patch_for(&request["object"], injection) {
            let encoded = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(encoded);
        }
    }
    Ok(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

/// The JSONPatch that injects the sidecar, or `None` for a pod that did not
/// opt in, is already injected, or has no container to put it in front of.
pub fn patch_for(pod: &Value, injection: &Injection) -> Option<Value> {
    let metadata = &pod["metadata"];
    let opted_in = [
        &metadata["labels"][INJECT],
        &metadata["annotations"][INJECT],
    ]
    .iter()
    .any(|v| v.as_str() == Some("true"));
    let containers = pod["spec"]["containers"].as_array()?;
    let already = metadata["annotations"][INJECTED].as_str() == Some("true")
        || containers.iter().any(|c| c["name"] == SIDECAR_NAME);
    if !opted_in || already || containers.is_empty() {
        return None;
    }
    let model = &containers[0];
    let annotation = |key: &str| metadata["annotations"][key].as_str();
    let model_port = annotation(MODEL_PORT)
        .and_then(|p| p.parse::<u16>().ok())
        .or_else(|| {
            model["ports"][0]["containerPort"]
                .as_u64()
                .map(|p| p as u16)
        })
        .unwrap_or(8080);
    let concurrency = annotation(CONTAINER_CONCURRENCY)
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(0);
    // The model's own readiness check becomes the sidecar's: the pod is ready
    // when the sidecar is, and the sidecar follows the model.
    let readiness_path = model["readinessProbe"]["httpGet"]["path"]
        .as_str()
        .unwrap_or("/")
        .to_string();

    let sidecar = json!({
        "name": SIDECAR_NAME,
        "image": injection.image,
        "args": ["sidecar"],
        "env": [
            { "name": "SLUICE_LISTEN", "value": format!("0.0.0.0:{}", injection.port) },
            { "name": "SLUICE_UPSTREAM", "value": format!("127.0.0.1:{model_port}") },
            { "name": "SLUICE_ADMIN", "value": format!("0.0.0.0:{}", injection.admin_port) },
            { "name": "SLUICE_CONTAINER_CONCURRENCY", "value": concurrency.to_string() },
            { "name": "SLUICE_READINESS_PATH", "value": readiness_path },
        ],
        "ports": [
            { "name": "sluice-http", "containerPort": injection.port, "protocol": "TCP" },
            { "name": "sluice-admin", "containerPort": injection.admin_port, "protocol": "TCP" },
        ],
        "readinessProbe": { "httpGet": { "path": "/readyz", "port": injection.admin_port }, "periodSeconds": 1 },
        "livenessProbe": { "httpGet": { "path": "/healthz", "port": injection.admin_port } },
        "lifecycle": { "preStop": { "sleep": { "seconds": injection.pre_stop_seconds } } },
        "securityContext": {
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": { "drop": ["ALL"] },
        },
    });
    let mut patch = vec![json!({ "op": "add", "path": "/spec/containers/-", "value": sidecar })];
    if !model["readinessProbe"].is_null() {
        patch.push(json!({ "op": "remove", "path": "/spec/containers/0/readinessProbe" }));
    }
    if metadata["annotations"].is_object() {
        patch.push(json!({ "op": "add", "path": "/metadata/annotations/sluice.dev~1injected", "value": "true" }));
    } else {
        let mut annotations = serde_json::Map::new();
        annotations.insert(INJECTED.into(), json!("true"));
        patch.push(json!({ "op": "add", "path": "/metadata/annotations", "value": annotations }));
    }
    Some(Value::Array(patch))
}
