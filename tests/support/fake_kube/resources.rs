//! What the fake serves: four resource types, each with the registry
//! behaviour its strategy has in the real API server, and errors shaped
//! exactly as the API server's `Status` objects.

use serde_json::{json, Value};

/// One resource type and how its registry strategy treats writes.
#[derive(Debug)]
pub(super) struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// A custom resource (CRD) is stored unstructured: list items keep their
    /// kind and apiVersion, and strategic merge patch is refused.
    pub custom: bool,
    /// Writes to the main resource keep the stored status (there is a
    /// `/status` subresource), and a create drops the status it was sent.
    pub status_subresource: bool,
    /// `metadata.generation` starts at 1 and counts changes to anything but
    /// metadata and status.
    pub tracks_generation: bool,
    /// A PUT to an absent name creates it (`AllowCreateOnUpdate`).
    pub create_on_update: bool,
    /// A PUT without `metadata.resourceVersion` overwrites whatever is stored
    /// (`AllowUnconditionalUpdate`); otherwise it is 422 Invalid.
    pub unconditional_update: bool,
}

pub(super) static RESOURCES: [ResourceType; 4] = [
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        custom: false,
        status_subresource: true,
        tracks_generation: true,
        create_on_update: false,
        unconditional_update: true,
    },
    ResourceType {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        custom: false,
        status_subresource: false,
        tracks_generation: true,
        create_on_update: false,
        unconditional_update: true,
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        custom: false,
        status_subresource: false,
        tracks_generation: false,
        create_on_update: true,
        unconditional_update: false,
    },
    ResourceType {
        group: "serving.kserve.io",
        version: "v1beta1",
        kind: "InferenceService",
        plural: "inferenceservices",
        custom: true,
        status_subresource: true,
        tracks_generation: true,
        create_on_update: false,
        unconditional_update: false,
    },
];

pub(super) fn deployments() -> &'static ResourceType {
    &RESOURCES[0]
}

// === impl ResourceType ===

impl ResourceType {
    pub fn from_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn from_type(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
        RESOURCES
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
    }

    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// `leases.coordination.k8s.io`, as the API server names a resource in
    /// its error messages.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    /// The `details` of a Status about one object of this resource. Its
    /// `kind` is the plural: the API server puts the resource there.
    fn details(&self, name: &str) -> Value {
        json!({"name": name, "group": self.group, "kind": self.plural})
    }
}

/// A failure, answered as the API server answers it: a `Status` body with
/// the same HTTP code.
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    pub code: u16,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

// === impl ApiError ===

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String, details: Option<Value>) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details,
        }
    }

    pub fn not_found(resource: &ResourceType, name: &str) -> ApiError {
        let message = format!("{} \"{name}\" not found", resource.qualified());
        Self::new(404, "NotFound", message, Some(resource.details(name)))
    }

    pub fn already_exists(resource: &ResourceType, name: &str) -> ApiError {
        let message = format!("{} \"{name}\" already exists", resource.qualified());
        Self::new(409, "AlreadyExists", message, Some(resource.details(name)))
    }

    /// The optimistic-concurrency failure: the write named a stale
    /// resourceVersion.
    pub fn conflict(resource: &ResourceType, name: &str) -> ApiError {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            resource.qualified()
        );
        Self::new(409, "Conflict", message, Some(resource.details(name)))
    }

    /// 422 Invalid on one field, as the API server's validation reports it.
    pub fn invalid(resource: &ResourceType, name: &str, field: &str, problem: &str) -> ApiError {
        let message = format!(
            "{} \"{name}\" is invalid: {field}: {problem}",
            resource.qualified()
        );
        let mut details = resource.details(name);
        details["causes"] =
            json!([{"reason": "FieldValueInvalid", "message": problem, "field": field}]);
        Self::new(422, "Invalid", message, Some(details))
    }

    pub fn expired(requested: u64, oldest: u64) -> ApiError {
        let message = format!("too old resource version: {requested} ({oldest})");
        Self::new(410, "Expired", message, None)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(400, "BadRequest", message.into(), None)
    }

    /// A patch that cannot be applied to the object.
    pub fn unprocessable(message: String) -> ApiError {
        Self::new(422, "Invalid", message, None)
    }

    pub fn unsupported_patch() -> ApiError {
        let message = "the body of the request was in an unknown format - accepted media types \
                       include: application/json-patch+json, application/merge-patch+json, \
                       application/apply-patch+yaml";
        Self::new(415, "UnsupportedMediaType", message.into(), None)
    }

    pub fn method_not_allowed() -> ApiError {
        let message = "the server does not allow this method on the requested resource";
        Self::new(405, "MethodNotAllowed", message.into(), None)
    }

    /// A path the server has no handler for.
    pub fn no_such_path() -> ApiError {
        let message = "the server could not find the requested resource";
        Self::new(404, "NotFound", message.into(), Some(json!({})))
    }

    /// What RBAC answers a verb it does not allow.
    pub fn forbidden(resource: &ResourceType, verb: &str, namespace: Option<&str>) -> ApiError {
        let within = namespace.map_or(String::from(" at the cluster scope"), |ns| {
            format!(" in the namespace \"{ns}\"")
        });
        let message = format!(
            "{} is forbidden: User \"system:serviceaccount:sluice-system:sluice\" cannot {verb} resource \"{}\" in API group \"{}\"{within}",
            resource.qualified(),
            resource.plural,
            resource.group
        );
        Self::new(
            403,
            "Forbidden",
            message,
            Some(json!({"group": resource.group, "kind": resource.plural})),
        )
    }

    pub fn internal(message: &str) -> ApiError {
        let message = format!("Internal error occurred: {message}");
        Self::new(500, "InternalError", message, None)
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// What a DELETE answers once the object is gone (built-in and custom
/// resources alike, as the generic registry does without
/// `ReturnDeletedObject`).
pub(super) fn deleted_status(resource: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = resource.details(name);
    details["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
