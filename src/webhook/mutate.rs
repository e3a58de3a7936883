//! The admission decision, as a pure function: an AdmissionReview in, an
//! AdmissionReview response out, with a JSONPatch that injects the sidecar
//! into pods that opted in.

use crate::config::{ranges, UpstreamProtocol};
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
    // What the sidecar would refuse to start with (port 0 or past 65535, a
    // concurrency out of range) counts as unset, as what does not parse does.
    let port = |p: u64| u16::try_from(p).ok().filter(|&p| p != 0);
    let model_port = annotation(MODEL_PORT)
        .and_then(|p| p.parse::<u64>().ok())
        .and_then(port)
        .or_else(|| model["ports"][0]["containerPort"].as_u64().and_then(port))
        .unwrap_or(8080);
    // Knative's and KServe's convention: a port named `h2c` speaks HTTP/2.
    let protocol = UpstreamProtocol::from_port_name(model["ports"][0]["name"].as_str()).as_str();
    let concurrency = annotation(CONTAINER_CONCURRENCY)
        .and_then(|c| c.parse::<u64>().ok())
        .filter(|&c| ranges::CONTAINER_CONCURRENCY.contains(c))
        .unwrap_or(0);
    // The model's own readiness check becomes the sidecar's: the pod is ready
    // when the sidecar is, and the sidecar follows the model. The sidecar
    // probes `http://127.0.0.1:{port}{path}`, so the path must be absolute
    // (the kubelet adds a missing slash itself) and valid in a URI.
    let readiness_path = model["readinessProbe"]["httpGet"]["path"]
        .as_str()
        .map(|p| match p.starts_with('/') {
            true => p.to_string(),
            false => format!("/{p}"),
        })
        .filter(|p| http::uri::PathAndQuery::try_from(p.as_str()).is_ok())
        .unwrap_or_else(|| "/".to_string());

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
            { "name": "SLUICE_UPSTREAM_PROTOCOL", "value": protocol },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn injection() -> Injection {
        Injection {
            image: "sluice".into(),
            port: 8012,
            admin_port: 9091,
            pre_stop_seconds: 5,
        }
    }

    fn sidecar_env(annotations: Value, model: Value) -> Vec<(String, String)> {
        let pod = json!({
            "metadata": { "labels": { INJECT: "true" }, "annotations": annotations },
            "spec": { "containers": [model] },
        });
        let patch = patch_for(&pod, &injection()).unwrap();
        patch[0]["value"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().into(),
                    e["value"].as_str().unwrap().into(),
                )
            })
            .collect()
    }

    fn env(env: &[(String, String)], name: &str) -> String {
        env.iter().find(|(n, _)| n == name).unwrap().1.clone()
    }

    /// Found by tests/properties.rs: values a pod may carry that gave the
    /// sidecar a setting it refuses to start with (port 0, a truncated port,
    /// a concurrency out of range, a relative readiness path).
    #[test]
    fn the_sidecar_gets_only_settings_it_can_start_with() {
        for (annotations, model, upstream) in [
            (
                json!({}),
                json!({ "ports": [{ "containerPort": 0 }] }),
                "127.0.0.1:8080",
            ),
            (
                json!({}),
                json!({ "ports": [{ "containerPort": 70000 }] }),
                "127.0.0.1:8080",
            ),
            (
                json!({ MODEL_PORT: "0" }),
                json!({ "ports": [{ "containerPort": 9000 }] }),
                "127.0.0.1:9000",
            ),
            (json!({ MODEL_PORT: "65536" }), json!({}), "127.0.0.1:8080"),
            (json!({ MODEL_PORT: "9001" }), json!({}), "127.0.0.1:9001"),
        ] {
            assert_eq!(
                env(&sidecar_env(annotations, model), "SLUICE_UPSTREAM"),
                upstream
            );
        }
        for (given, expected) in [
            ("200000", "0"),
            ("18446744073709551615", "0"),
            ("100000", "100000"),
        ] {
            let sidecar = sidecar_env(json!({ CONTAINER_CONCURRENCY: given }), json!({}));
            assert_eq!(
                env(&sidecar, "SLUICE_CONTAINER_CONCURRENCY"),
                expected,
                "{given}"
            );
        }
        for (model, expected) in [
            (
                json!({ "ports": [{ "name": "h2c", "containerPort": 8081 }] }),
                "h2c",
            ),
            (
                json!({ "ports": [{ "name": "http1", "containerPort": 8080 }] }),
                "http1",
            ),
            (json!({}), "http1"),
        ] {
            let sidecar = sidecar_env(json!({}), model);
            assert_eq!(env(&sidecar, "SLUICE_UPSTREAM_PROTOCOL"), expected);
        }
        for (given, expected) in [
            ("healthz", "/healthz"),
            ("/v1/models/m", "/v1/models/m"),
            ("/a b", "/"),
        ] {
            let model = json!({ "readinessProbe": { "httpGet": { "path": given } } });
            assert_eq!(
                env(&sidecar_env(json!({}), model), "SLUICE_READINESS_PATH"),
                expected
            );
        }
    }
}
