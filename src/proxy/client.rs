//! The pooled HTTP/1.1 client to pods, shared by every service so that a pod
//! that stays across a reload keeps its pooled connections.

use super::body::UpstreamBody;
use crate::config::GatewaySettings;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub type UpstreamClient = Client<HttpConnector, UpstreamBody>;

pub fn upstream_client(settings: &GatewaySettings) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(settings.connect_timeout.0));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.upstream_idle_timeout.0)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        // The Host header is set from the client's request, not the pod address.
        .set_host(false)
        .build(connector)
}
