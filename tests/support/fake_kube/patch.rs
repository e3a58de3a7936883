//! Patches, by content type, and the resourceVersion precondition a write
//! may carry.

use super::resources::{ApiError, ResourceType};
use serde_json::Value;

/// The patch formats, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PatchType {
    Merge,
    /// Treated as a merge patch: lists are replaced, not merged by key.
    Strategic,
    Json,
    /// Server-side apply, approximated: creates when absent, else a merge
    /// patch; no field ownership.
    Apply,
}

// === impl PatchType ===

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        match content_type.split(';').next()?.trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Applies a patch to a copy of `current`, as its content type says.
pub(super) fn apply_patch(
    current: &Value,
    patch_type: PatchType,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut document = current.clone();
    if patch_type == PatchType::Json {
        let operations: json_patch::Patch = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
        json_patch::patch(&mut document, &operations)
            .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    } else {
        json_patch::merge(&mut document, &parse_patch(patch_type, body)?);
    }
    Ok(document)
}

/// A write that names a resourceVersion must name the stored one.
pub(super) fn check_precondition(
    resource: &ResourceType,
    name: &str,
    current: &Value,
    written: &Value,
) -> Result<(), ApiError> {
    let sent = written["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("");
    let stored = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("");
    if !sent.is_empty() && sent != stored {
        return Err(ApiError::conflict(resource, name));
    }
    Ok(())
}

pub(super) fn parse_patch(patch_type: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    let parsed = match patch_type {
        // An apply patch is YAML, of which JSON is a part.
        PatchType::Apply => serde_yaml_ng::from_slice(body).map_err(|e| e.to_string()),
        _ => serde_json::from_slice(body).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}
