//! Writes as the generic registry and each resource's strategy make them:
//! server-set metadata, status kept behind a status subresource,
//! generation, resourceVersion preconditions, and updates that change
//! nothing not counting as writes (etcd skips them).

use super::decode::{name_for_create, set_namespace, typed};
use super::patch::{apply_patch, check_precondition, parse_patch, PatchType};
use super::resources::{deleted_status, ApiError, ResourceType};
use super::store::{ObjectKey, Store};
use serde_json::{json, Value};

/// Metadata the server owns: a write cannot change it.
const SYSTEM_METADATA: [&str; 5] = [
    "uid",
    "creationTimestamp",
    "generation",
    "name",
    "namespace",
];

// === impl Store (writes) ===

impl Store {
    pub fn create(
        &mut self,
        resource: &'static ResourceType,
        namespace: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut object = typed(resource, body)?;
        set_namespace(&mut object, namespace)?;
        let name = name_for_create(resource, &mut object)?;
        if !object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .is_empty()
        {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let key = ObjectKey::new(resource, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(resource, &name));
        }
        Ok(self.insert_new(resource, key, object, true))
    }

    pub fn replace(
        &mut self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut object = typed(resource, body)?;
        set_namespace(&mut object, namespace)?;
        let sent_name = object["metadata"]["name"].as_str().unwrap_or("");
        if sent_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({sent_name}) does not match the name on the URL ({name})"
            )));
        }
        let key = ObjectKey::new(resource, namespace, name);
        let Some(current) = self.objects.get(&key).cloned() else {
            if !resource.create_on_update {
                return Err(ApiError::not_found(resource, name));
            }
            return Ok(self.insert_new(resource, key, object, true));
        };
        let unconditional = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .is_empty();
        if unconditional && !resource.unconditional_update {
            let problem = "Invalid value: 0x0: must be specified for an update";
            return Err(ApiError::invalid(
                resource,
                name,
                "metadata.resourceVersion",
                problem,
            ));
        }
        check_precondition(resource, name, &current, &object)?;
        Ok(self.update(resource, key, &current, object, true))
    }

    pub fn patch(
        &mut self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        if patch_type == PatchType::Strategic && resource.custom {
            return Err(ApiError::unsupported_patch());
        }
        let key = ObjectKey::new(resource, namespace, name);
        let Some(current) = self.objects.get(&key).cloned() else {
            if patch_type != PatchType::Apply {
                return Err(ApiError::not_found(resource, name));
            }
            let mut object = typed(resource, parse_patch(patch_type, body)?)?;
            set_namespace(&mut object, namespace)?;
            object["metadata"]["name"] = json!(name);
            return Ok(self.insert_new(resource, key, object, true));
        };
        let patched = typed(resource, apply_patch(&current, patch_type, body)?)?;
        check_precondition(resource, name, &current, &patched)?;
        Ok(self.update(resource, key, &current, patched, true))
    }

    /// Deletes at once (no finalizers, no grace period) and answers the
    /// Status the API server answers.
    pub fn delete(
        &mut self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        options: &Value,
    ) -> Result<Value, ApiError> {
        let key = ObjectKey::new(resource, namespace, name);
        let current = self
            .objects
            .get(&key)
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let preconditions = &options["preconditions"];
        for field in ["resourceVersion", "uid"] {
            if let Some(wanted) = preconditions[field].as_str() {
                if current["metadata"][field].as_str() != Some(wanted) {
                    return Err(ApiError::conflict(resource, name));
                }
            }
        }
        let deleted = self.commit_delete(resource, &key).expect("checked above");
        let uid = deleted["metadata"]["uid"].as_str().unwrap_or("");
        Ok(deleted_status(resource, name, uid))
    }

    /// The test's own write, as the cluster's controllers would make it:
    /// create, or overwrite unconditionally, status included.
    pub fn apply_from_test(&mut self, resource: &'static ResourceType, object: Value) -> Value {
        let mut object = typed(resource, object).unwrap_or_else(|e| panic!("apply: {e:?}"));
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        object["metadata"]["namespace"] = json!(namespace);
        let name = object["metadata"]["name"]
            .as_str()
            .expect("apply: metadata.name")
            .to_string();
        let key = ObjectKey::new(resource, &namespace, &name);
        match self.objects.get(&key).cloned() {
            Some(current) => self.update(resource, key, &current, object, false),
            None => self.insert_new(resource, key, object, false),
        }
    }

    /// Commits `new` over `current` as an update does. Server-owned metadata
    /// stays; behind a status subresource (`keep_status`), so does status;
    /// generation counts changes; a write that changes nothing is no write.
    pub(super) fn update(
        &mut self,
        resource: &'static ResourceType,
        key: ObjectKey,
        current: &Value,
        mut new: Value,
        keep_status: bool,
    ) -> Value {
        let (old_metadata, metadata) = (&current["metadata"], &mut new["metadata"]);
        for field in SYSTEM_METADATA {
            match old_metadata.get(field) {
                Some(value) => metadata[field] = value.clone(),
                None => remove(metadata, field),
            }
        }
        metadata["resourceVersion"] = old_metadata["resourceVersion"].clone();
        if keep_status && resource.status_subresource {
            match current.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => remove(&mut new, "status"),
            }
        }
        if resource.tracks_generation && content(&new) != content(current) {
            let generation = old_metadata["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        if new == *current {
            return new;
        }
        self.commit_write(resource, key, new)
    }

    fn insert_new(
        &mut self,
        resource: &'static ResourceType,
        key: ObjectKey,
        mut object: Value,
        drop_status: bool,
    ) -> Value {
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
        metadata["creationTimestamp"] = json!(now_rfc3339());
        metadata["namespace"] = json!(key.namespace);
        metadata["name"] = json!(key.name);
        remove(metadata, "resourceVersion");
        if resource.tracks_generation {
            metadata["generation"] = json!(1);
        } else {
            remove(metadata, "generation");
        }
        if drop_status && resource.status_subresource {
            remove(&mut object, "status");
        }
        self.commit_write(resource, key, object)
    }
}

/// What generation counts: everything but metadata and status.
fn content(object: &Value) -> Value {
    let mut content = object.clone();
    remove(&mut content, "metadata");
    remove(&mut content, "status");
    content
}

fn remove(object: &mut Value, field: &str) {
    if let Some(fields) = object.as_object_mut() {
        fields.remove(field);
    }
}

/// Now, in the API server's format: RFC 3339, whole seconds, UTC.
fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .expect("now is in range")
        .to_string()
}
