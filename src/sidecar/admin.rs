//! The sidecar's admin port: `/readyz` follows the model and the drain,
//! `/stats` is the pod's load; `/metrics`, `/healthz` and `/status` as the
//! gateway's, for its one service.

use super::Stats;
use crate::admin::{LeaderStatus, ServiceStatus, Status};
use crate::metrics::Metrics;
use crate::service::Service;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::info;

#[derive(Clone)]
pub struct AdminState {
    pub listen: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub service: Arc<Service>,
    pub stats: Arc<Stats>,
    pub draining: Arc<AtomicBool>,
    pub model_ready: Arc<AtomicBool>,
}

/// After the first success the model is checked this often.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Failed checks in a row that make a ready model unready.
const FAILURES_TO_UNREADY: u32 = 3;

pub async fn handle<B>(
    state: AdminState,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let body = r#"{"error":"method-not-allowed"}"#.to_string();
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            body,
        ));
    }
    match req.uri().path() {
        "/readyz" => {
            let (status, body) = if state.draining.load(Ordering::Relaxed) {
                (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if !state.model_ready.load(Ordering::Relaxed) {
                (StatusCode::SERVICE_UNAVAILABLE, "model not ready\n")
            } else {
                (StatusCode::OK, "ready\n")
            };
            Ok(text(status, "text/plain", body.to_string()))
        }
        "/stats" => {
            let report = state.stats.report(&state.service);
            let body = serde_json::to_string(&report).expect("a report serializes");
            Ok(text(StatusCode::OK, "application/json", body))
        }
        "/metrics" => {
            let content_type = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
            Ok(text(StatusCode::OK, content_type, state.metrics.encode()))
        }
        "/healthz" => Ok(text(StatusCode::OK, "text/plain", "ok\n".into())),
        "/status" => {
            let status = Status {
                listen: state.listen.to_string(),
                draining: state.draining.load(Ordering::Relaxed),
                leader: LeaderStatus::default(),
                kubernetes_problems: Vec::new(),
                services: vec![ServiceStatus::of(&state.service)],
            };
            let body = serde_json::to_string_pretty(&status).expect("status serializes");
            Ok(text(StatusCode::OK, "application/json", body))
        }
        _ => {
            let body = r#"{"error":"not-found"}"#.to_string();
            Ok(text(StatusCode::NOT_FOUND, "application/json", body))
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// Checks the model's readiness: quickly until it first answers, then every
/// second, so that readiness follows the model both ways.
pub async fn probe_model(
    client: crate::probe::ProbeClient,
    uri: http::Uri,
    ready: Arc<AtomicBool>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        let ok = crate::probe::check(&client, &uri).await;
        failures = if ok { 0 } else { failures + 1 };
        // Once ready, a busy single-worker model may miss one check (it
        // waits behind predictions): only a run of failures makes it unready.
        let was_ready = ready.load(Ordering::Relaxed);
        let now_ready = ok || (was_ready && failures < FAILURES_TO_UNREADY);
        if now_ready != was_ready {
            ready.store(now_ready, Ordering::Relaxed);
            info!(ready = now_ready, "model readiness changed");
        }
        let wait = if now_ready {
            CHECK_EVERY
        } else {
            crate::probe::STARTUP_EVERY
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::server::stopped(&mut stopped) => return,
        }
    }
}
