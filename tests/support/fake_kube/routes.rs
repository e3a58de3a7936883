//! HTTP in and out: the request log, the REST paths, the query parameters,
//! and JSON responses (a `Status` for every failure).

use super::handlers;
use super::resources::{ApiError, ResourceType};
use super::Shared;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;

pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What a path names.
#[derive(Debug)]
pub(super) enum Route {
    Version,
    /// `/apis/{g}/{v}/{plural}` (namespace `None`: all namespaces) or
    /// `/apis/{g}/{v}/namespaces/{ns}/{plural}`.
    Collection {
        resource: &'static ResourceType,
        namespace: Option<String>,
    },
    /// `/apis/{g}/{v}/namespaces/{ns}/{plural}/{name}`
    Object {
        resource: &'static ResourceType,
        namespace: String,
        name: String,
    },
    /// `/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale`
    Scale {
        namespace: String,
        name: String,
    },
}

/// The query parameters the fake understands; others are ignored, as
/// `limit` is (every list is one page, with no continue token).
#[derive(Debug, Default)]
pub(super) struct Query {
    pub watch: bool,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_bookmarks: bool,
    pub send_initial_events: Option<bool>,
}

/// A request, read whole (no request the fake serves streams its body).
pub(super) struct ApiRequest {
    pub listener: usize,
    pub method: Method,
    pub query: Query,
    pub content_type: String,
    pub body: Bytes,
}

/// Answers one HTTP request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    listener: usize,
    request: http::Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(String::new, |p| p.to_string());
    shared.log_request(listener, &parts.method, &path_and_query);
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return error_response(&ApiError::bad_request("could not read the request body"));
    };
    let request = ApiRequest {
        listener,
        method: parts.method,
        query: Query::parse(&path_and_query),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body,
    };
    let result = match route(parts.uri.path()) {
        Some(route) => handlers::dispatch(&shared, route, request),
        None => Err(ApiError::no_such_path()),
    };
    result.unwrap_or_else(|error| error_response(&error))
}

fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resource =
        |group: &str, version: &str, plural: &str| ResourceType::from_path(group, version, plural);
    Some(match segments.as_slice() {
        ["version"] => Route::Version,
        ["apis", group, version, plural] => Route::Collection {
            resource: resource(group, version, plural)?,
            namespace: None,
        },
        ["apis", group, version, "namespaces", namespace, plural] => Route::Collection {
            resource: resource(group, version, plural)?,
            namespace: Some(namespace.to_string()),
        },
        ["apis", group, version, "namespaces", namespace, plural, name] => Route::Object {
            resource: resource(group, version, plural)?,
            namespace: namespace.to_string(),
            name: name.to_string(),
        },
        ["apis", "apps", "v1", "namespaces", namespace, "deployments", name, "scale"] => {
            Route::Scale {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }
        }
        _ => return None,
    })
}

// === impl Query ===

impl Query {
    fn parse(path_and_query: &str) -> Query {
        // kube-rs writes `?&watch=true&...`; a URL parser takes that, and
        // the percent-encoding of selectors, in its stride.
        let Ok(url) = reqwest::Url::parse(&format!("http://fake-kube{path_and_query}")) else {
            return Query::default();
        };
        let mut query = Query::default();
        let is_true = |v: &str| v == "true" || v == "1";
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "watch" => query.watch = is_true(&value),
                "labelSelector" => query.label_selector = Some(value.into_owned()),
                "fieldSelector" => query.field_selector = Some(value.into_owned()),
                "resourceVersion" => query.resource_version = Some(value.into_owned()),
                "timeoutSeconds" => query.timeout_seconds = value.parse().ok(),
                "allowWatchBookmarks" => query.allow_bookmarks = is_true(&value),
                "sendInitialEvents" => query.send_initial_events = Some(is_true(&value)),
                _ => {}
            }
        }
        query
    }
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = Bytes::from(serde_json::to_vec(body).expect("JSON values serialize"));
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes).boxed_unsync())
        .expect("a valid response")
}

pub(super) fn error_response(error: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &error.to_status())
}

/// The body as JSON, or 400 as the API server answers a body it cannot decode.
pub(super) fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))
}
