//! The REST verbs: list, watch, get, create, replace, patch, delete, and the
//! scale subresource.

use super::patch::PatchType;
use super::resources::{ApiError, ResourceType};
use super::routes::{json_body, json_response, ApiRequest, Body, Query, Route};
use super::scale::ScaleWriteBody;
use super::selector::Selectors;
use super::store::ObjectKey;
use super::watch::{WatchBody, WatchFilter, WatchRequest, WatchStart};
use super::{lock, Shared};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

type Answer = Result<Response<Body>, ApiError>;

/// How long a watch without `timeoutSeconds` lasts (the API server picks
/// between 30 and 60 minutes).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

pub(super) fn dispatch(shared: &Arc<Shared>, route: Route, request: ApiRequest) -> Answer {
    if let Some(error) = injected_conflict(shared, &route, &request) {
        return Err(error);
    }
    match route {
        Route::Version if request.method == Method::GET => {
            Ok(json_response(StatusCode::OK, &version_info()))
        }
        Route::Version => Err(ApiError::method_not_allowed()),
        Route::Collection {
            resource,
            namespace,
        } => collection(shared, resource, namespace, &request),
        Route::Object {
            resource,
            namespace,
            name,
        } => object(shared, resource, &namespace, &name, &request),
        Route::Scale { namespace, name } => scale(shared, &namespace, &name, &request),
    }
}

fn collection(
    shared: &Arc<Shared>,
    resource: &'static ResourceType,
    namespace: Option<String>,
    request: &ApiRequest,
) -> Answer {
    match (&request.method, namespace) {
        (&Method::GET, namespace) if request.query.watch && shared.refusing_watches() => {
            Err(ApiError::forbidden(resource, "watch", namespace.as_deref()))
        }
        (&Method::GET, namespace) if request.query.watch => {
            watch(shared, resource, namespace, &request.query)
        }
        (&Method::GET, namespace) => list(shared, resource, namespace, &request.query),
        (&Method::POST, Some(namespace)) => {
            let body = json_body(&request.body)?;
            let created = lock(&shared.store).create(resource, &namespace, body)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `conflict_next_writes`: a write answered 409 Conflict before it is tried.
fn injected_conflict(shared: &Shared, route: &Route, request: &ApiRequest) -> Option<ApiError> {
    if !matches!(request.method, Method::POST | Method::PUT | Method::PATCH) {
        return None;
    }
    let (resource, name) = match route {
        Route::Version => return None,
        Route::Collection { resource, .. } => {
            let body = json_body(&request.body).unwrap_or_default();
            (
                *resource,
                body["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        }
        Route::Object { resource, name, .. } => (*resource, name.clone()),
        Route::Scale { name, .. } => (super::resources::deployments(), name.clone()),
    };
    shared
        .take_injected_conflict()
        .then(|| ApiError::conflict(resource, &name))
}

fn list(
    shared: &Shared,
    resource: &'static ResourceType,
    namespace: Option<String>,
    query: &Query,
) -> Answer {
    let selectors = Selectors::parse(
        query.label_selector.as_deref(),
        query.field_selector.as_deref(),
    )?;
    let store = lock(&shared.store);
    let items: Vec<Value> = store
        .list(resource, namespace.as_deref(), &selectors)
        .into_iter()
        .map(|item| list_item(resource, item))
        .collect();
    let list = json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": store.resource_version.to_string()},
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list))
}

/// Items of a built-in list carry no kind or apiVersion (the typed list
/// drops them); custom resources are unstructured and keep them.
fn list_item(resource: &ResourceType, mut item: Value) -> Value {
    if !resource.custom {
        if let Some(fields) = item.as_object_mut() {
            fields.remove("kind");
            fields.remove("apiVersion");
        }
    }
    item
}

fn watch(
    shared: &Arc<Shared>,
    resource: &'static ResourceType,
    namespace: Option<String>,
    query: &Query,
) -> Answer {
    let selectors = Selectors::parse(
        query.label_selector.as_deref(),
        query.field_selector.as_deref(),
    )?;
    let start =
        match (query.send_initial_events, query.resource_version.as_deref()) {
            (Some(true), _) => WatchStart::CurrentState,
            (Some(false), None | Some("" | "0")) => WatchStart::Now,
            (_, None | Some("" | "0")) => WatchStart::CurrentState,
            (_, Some(version)) => WatchStart::After(version.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {version}"))
            })?),
        };
    let request = WatchRequest {
        filter: WatchFilter {
            resource,
            namespace,
            selectors,
        },
        start,
        bookmarks: query.allow_bookmarks,
        send_initial_events: query.send_initial_events == Some(true),
    };
    let (id, events) = lock(&shared.store).open_watch(request);
    let timeout = query
        .timeout_seconds
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let body = WatchBody::new(shared.clone(), id, events, timeout);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.boxed_unsync())
        .expect("a valid response"))
}

fn object(
    shared: &Shared,
    resource: &'static ResourceType,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> Answer {
    let key = ObjectKey::new(resource, namespace, name);
    let mut store = lock(&shared.store);
    // A write that created the object answers 201, as the API server does.
    let written = match store.get(&key) {
        Some(_) => StatusCode::OK,
        None => StatusCode::CREATED,
    };
    let (status, object) = match request.method {
        Method::GET => {
            let object = store.get(&key).cloned();
            (
                StatusCode::OK,
                object.ok_or_else(|| ApiError::not_found(resource, name))?,
            )
        }
        Method::PUT => {
            let body = json_body(&request.body)?;
            (written, store.replace(resource, namespace, name, body)?)
        }
        Method::PATCH => {
            let patch_type = PatchType::from_content_type(&request.content_type)
                .ok_or_else(ApiError::unsupported_patch)?;
            (
                written,
                store.patch(resource, namespace, name, patch_type, &request.body)?,
            )
        }
        Method::DELETE => {
            // kube-rs always sends DeleteOptions; an empty body means none.
            let options = json_body(&request.body).unwrap_or_default();
            (
                StatusCode::OK,
                store.delete(resource, namespace, name, &options)?,
            )
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(status, &object))
}

fn scale(shared: &Shared, namespace: &str, name: &str, request: &ApiRequest) -> Answer {
    let write = match request.method {
        Method::GET => {
            let scale = lock(&shared.store).get_scale(namespace, name)?;
            return Ok(json_response(StatusCode::OK, &scale));
        }
        Method::PUT => ScaleWriteBody::Replace(json_body(&request.body)?),
        Method::PATCH => {
            let patch_type = PatchType::from_content_type(&request.content_type)
                .ok_or_else(ApiError::unsupported_patch)?;
            ScaleWriteBody::Patch(patch_type, &request.body)
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    // Recorded while the store is still locked: a test that sees the new
    // replicas then also sees the write that made them.
    let mut store = lock(&shared.store);
    let change = store.write_scale(namespace, name, write)?;
    shared.record_scale_write(request.listener, namespace, name, change.from, change.to);
    drop(store);
    Ok(json_response(StatusCode::OK, &change.scale))
}

/// What `/version` answers (`Client::apiserver_version`).
fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
