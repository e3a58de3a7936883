//! The `scale` subresource of a Deployment: a view of its replicas whose
//! writes change the Deployment (bumping its resourceVersion and generation,
//! and telling its watches).

use super::patch::{apply_patch, check_precondition, PatchType};
use super::resources::{deployments, ApiError};
use super::store::{ObjectKey, Store};
use serde_json::{json, Value};

/// What a client sent to the scale subresource.
pub(super) enum ScaleWriteBody<'a> {
    Replace(Value),
    Patch(PatchType, &'a [u8]),
}

/// A successful scale write: the Scale to answer, and the replicas before
/// and after.
pub(super) struct ScaleChange {
    pub scale: Value,
    pub from: i64,
    pub to: i64,
}

// === impl Store (scale) ===

impl Store {
    pub fn get_scale(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let key = ObjectKey::new(deployments(), namespace, name);
        let deployment = self
            .get(&key)
            .ok_or_else(|| ApiError::not_found(deployments(), name))?;
        Ok(scale_of(deployment))
    }

    pub fn write_scale(
        &mut self,
        namespace: &str,
        name: &str,
        write: ScaleWriteBody<'_>,
    ) -> Result<ScaleChange, ApiError> {
        let resource = deployments();
        let key = ObjectKey::new(resource, namespace, name);
        let current = self
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let scale = match write {
            ScaleWriteBody::Replace(body) => body,
            ScaleWriteBody::Patch(patch_type, body) => {
                apply_patch(&scale_of(&current), patch_type, body)?
            }
        };
        if !matches!(scale["kind"].as_str(), None | Some("Scale")) {
            return Err(ApiError::bad_request(
                "the body of a scale write must be a Scale",
            ));
        }
        // The Scale's resourceVersion is the Deployment's: a stale one is a
        // conflict on the Deployment.
        check_precondition(resource, name, &current, &scale)?;
        let to = match &scale["spec"]["replicas"] {
            Value::Null => 0,
            replicas => replicas
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?,
        };
        if to < 0 {
            let problem = format!("Invalid value: {to}: must be greater than or equal to 0");
            return Err(ApiError::invalid(resource, name, "spec.replicas", &problem));
        }
        let from = current["spec"]["replicas"].as_i64().unwrap_or(0);
        let mut deployment = current.clone();
        deployment["spec"]["replicas"] = json!(to);
        let updated = self.update(resource, key, &current, deployment, true);
        Ok(ScaleChange {
            scale: scale_of(&updated),
            from,
            to,
        })
    }
}

/// The Scale the API server derives from a Deployment. With no deployment
/// controller here, a Deployment without status counts as converged.
pub(super) fn scale_of(deployment: &Value) -> Value {
    let metadata = &deployment["metadata"];
    let spec_replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(0);
    let status_replicas = deployment["status"]["replicas"]
        .as_i64()
        .unwrap_or(spec_replicas);
    let match_labels = deployment["spec"]["selector"]["matchLabels"].as_object();
    // Sorted by key, as `LabelSelectorAsSelector(..).String()` is.
    let mut selector: Vec<String> = match_labels
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or("")))
        .collect();
    selector.sort();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
            "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": {"replicas": spec_replicas},
        "status": {"replicas": status_replicas, "selector": selector.join(",")},
    })
}
