//! What the API server does to a body before a write: checks its type
//! (filling in kind and apiVersion), its namespace and name, and applies
//! defaults.

use super::resources::{ApiError, ResourceType};
use serde_json::{json, Value};

/// Checks the body is an object of this resource's type, fills in kind and
/// apiVersion when left out, and applies the API server's defaults.
pub(super) fn typed(resource: &ResourceType, mut body: Value) -> Result<Value, ApiError> {
    let Some(fields) = body.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    let api_version = resource.api_version();
    match fields.get("apiVersion").and_then(Value::as_str) {
        None => {
            fields.insert("apiVersion".into(), json!(api_version));
        }
        Some(sent) if sent == api_version => {}
        Some(sent) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({sent}) does not match \
                 the expected API version ({api_version})"
            )))
        }
    }
    match fields.get("kind").and_then(Value::as_str) {
        None => {
            fields.insert("kind".into(), json!(resource.kind));
        }
        Some(sent) if sent == resource.kind => {}
        Some(sent) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({sent}) does not match the expected kind ({})",
                resource.kind
            )))
        }
    }
    match fields.get("metadata") {
        None | Some(Value::Null) => {
            fields.insert("metadata".into(), json!({}));
        }
        Some(Value::Object(_)) => {}
        Some(_) => return Err(ApiError::bad_request("metadata must be an object")),
    }
    // Deployment defaulting (`SetDefaults_Deployment`): one replica.
    if resource.plural == "deployments" {
        if let Some(spec) = fields.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("replicas").or_insert(json!(1));
        }
    }
    Ok(body)
}

pub(super) fn set_namespace(object: &mut Value, namespace: &str) -> Result<(), ApiError> {
    match object["metadata"]["namespace"].as_str() {
        None | Some("") => object["metadata"]["namespace"] = json!(namespace),
        Some(sent) if sent == namespace => {}
        Some(_) => return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
    Ok(())
}

/// The name to create under: `metadata.name`, or `generateName` plus five
/// random characters.
pub(super) fn name_for_create(
    resource: &ResourceType,
    object: &mut Value,
) -> Result<String, ApiError> {
    let metadata = &mut object["metadata"];
    if let Some(name) = metadata["name"].as_str().filter(|n| !n.is_empty()) {
        return Ok(name.to_string());
    }
    let Some(prefix) = metadata["generateName"].as_str().filter(|p| !p.is_empty()) else {
        let problem = "Required value: name or generateName is required";
        return Err(ApiError::invalid(resource, "", "metadata.name", problem));
    };
    let suffix: String = std::iter::repeat_with(fastrand::lowercase)
        .take(5)
        .collect();
    let name = format!("{prefix}{suffix}");
    metadata["name"] = json!(name);
    Ok(name)
}
