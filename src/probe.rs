//! HTTP readiness checks of a model server: one GET that must answer 200.

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

pub type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

/// Probed this often until the first success.
pub const STARTUP_EVERY: Duration = Duration::from_millis(50);
/// Longest one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub fn client() -> ProbeClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A client for a model server that speaks only HTTP/2 (`protocol: h2c`,
/// a gRPC server): prior knowledge, no HTTP/1.1.
pub fn http2_client() -> ProbeClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// One check: true if `uri` answers 200 within a second.
pub async fn check(client: &ProbeClient, uri: &http::Uri) -> bool {
    let attempt = tokio::time::timeout(CHECK_TIMEOUT, client.get(uri.clone()));
    matches!(attempt.await, Ok(Ok(response)) if response.status() == http::StatusCode::OK)
}

/// Checks every [`STARTUP_EVERY`] until one succeeds or `timeout` passes.
pub async fn wait_ready(client: &ProbeClient, uri: &http::Uri, timeout: Duration) -> bool {
    let until_ready = async {
        while !check(client, uri).await {
            tokio::time::sleep(STARTUP_EVERY).await;
        }
    };
    tokio::time::timeout(timeout, until_ready).await.is_ok()
}
