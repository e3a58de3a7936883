//! The admin listener: /metrics, /healthz, /readyz, /status, /history and
//! the live page at /. Never served on the data listener.

mod history;
mod status;
mod table;
mod watch;

pub use self::history::{HistoryQuery, HistoryReply, ServiceHistory};
pub use self::status::{LeaderStatus, PodStatus, ServiceStatus, Status};
pub use self::table::{pods_table, services_table};
pub use self::watch::watch;

use crate::shared::Shared;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::convert::Infallible;
use std::sync::Arc;

/// The live page: one self-contained file (no CDN, no network at run time)
/// that polls /history and /status.
const LIVE_PAGE: &str = include_str!("page.html");

pub async fn handle<B>(
    shared: Arc<Shared>,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method-not-allowed"}"#.into(),
        ));
    }
    let response = match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            shared.metrics.encode(),
        ),
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => readyz(&shared),
        "/status" => {
            let status = Status::read(&shared);
            let body = serde_json::to_string_pretty(&status).expect("status serializes");
            json(StatusCode::OK, body)
        }
        "/history" => match HistoryQuery::parse(req.uri().query()) {
            Ok(query) => {
                let history = HistoryReply::read(&shared, &query);
                json(
                    StatusCode::OK,
                    serde_json::to_string(&history).expect("history serializes"),
                )
            }
            Err(why) => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "bad-query", "message": why }).to_string(),
            ),
        },
        "/" | "/ui" => text(StatusCode::OK, "text/html; charset=utf-8", LIVE_PAGE.into()),
        _ => json(StatusCode::NOT_FOUND, r#"{"error":"not-found"}"#.into()),
    };
    Ok(response)
}

/// 503 while draining, and while starting: until everything Kubernetes
/// lists to it (InferenceServices, each service's pods) has been listed
/// once, so that a new gateway in a rolling update takes no request it
/// would refuse. After that, 200 for good: with the Kubernetes API
/// unreachable requests are served with what was last known, and a service
/// added later that cannot be listed must not take every other model
/// offline. The detail lines say what is failing or still waiting.
fn readyz(shared: &Shared) -> Response<Full<Bytes>> {
    if shared.is_draining() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".into(),
        );
    }
    let waiting = not_listed(shared);
    if waiting.is_empty() {
        shared.cluster.set_listed();
    }
    let (status, mut body) = if shared.cluster.was_listed() {
        (StatusCode::OK, String::from("ready\n"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, String::from("starting\n"))
    };
    for line in waiting {
        body.push_str(&format!("{line}\n"));
    }
    for problem in shared.cluster.health().problems() {
        body.push_str(&format!("kubernetes: {problem}\n"));
    }
    text(status, "text/plain", body)
}

/// Services and pods that Kubernetes has not listed to this gateway yet.
fn not_listed(shared: &Shared) -> Vec<String> {
    let mut waiting: Vec<String> = shared
        .cluster
        .not_listed_yet()
        .map(String::from)
        .into_iter()
        .collect();
    for service in shared.routes.load().services() {
        if !service.actuator().listed() {
            waiting.push(format!(
                "pods of {}/{} not listed yet",
                service.namespace(),
                service.name()
            ));
        }
    }
    waiting
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    text(status, "application/json", body)
}

/// Why `sluice status` could not read a gateway's `/status`.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("bad admin address {admin:?}: {source}")]
    Address {
        admin: String,
        source: http::uri::InvalidUri,
    },
    #[error("cannot reach the gateway's admin at {admin}: {source}")]
    Unreachable {
        admin: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("no answer from the gateway's admin at {admin}")]
    NoAnswer { admin: String },
    #[error("{admin}/status answered {status}")]
    Answered { admin: String, status: StatusCode },
    #[error("reading /status: {0}")]
    Read(#[from] hyper::Error),
    #[error("/status is not what sluice status expects: {0}")]
    Shape(#[from] serde_json::Error),
}

/// Fetches a gateway's `/status` (for `sluice status`).
pub async fn fetch_status(admin: &str) -> Result<Status, StatusError> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let uri: http::Uri =
        format!("http://{admin}/status")
            .parse()
            .map_err(|source| StatusError::Address {
                admin: admin.into(),
                source,
            })?;
    let response = client
        .get(uri)
        .await
        .map_err(|source| StatusError::Unreachable {
            admin: admin.into(),
            source,
        })?;
    if !response.status().is_success() {
        return Err(StatusError::Answered {
            admin: admin.into(),
            status: response.status(),
        });
    }
    use http_body_util::BodyExt;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}
