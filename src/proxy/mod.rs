//! The request path, phase by phase: route, check limits, admit to a pod,
//! forward (retrying once on a refused connection), respond.
//!
//! Every response leaves through [`respond`] or [`refuse`]; a request that
//! reached a pod holds its [`Lease`] inside the response body until that body
//! ends, so the pod's in-flight count is exact for streaming responses too.

mod body;
mod client;
mod error;
mod headers;

pub use self::body::{BodySlot, Completion, ResponseBody, UpstreamBody};
pub use self::client::{upstream_client, UpstreamClient};
pub use self::error::{ProxyError, SLUICE_ERROR, SLUICE_HELD_MS};
pub use self::headers::{add_forwarding, headers_size, remove_hop_by_hop};

use self::body::BodyLimitExceeded;
use crate::config::GatewaySettings;
use crate::gateway::Shared;
use crate::pods::{AdmitError, Lease, Pod};
use crate::service::{Service, ServiceSettings};
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, HOST};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, warn};

/// What is sent to a pod, kept so that a refused connection can be retried.
struct UpstreamHead {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
}

/// Serves one request from a client at `client_ip`.
pub async fn proxy(
    shared: Arc<Shared>,
    client_ip: IpAddr,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let host = request_host(&req);
    let service = {
        let routes = shared.routes.load();
        let host_name = host.as_ref().and_then(|h| h.to_str().ok());
        match routes.route(host_name, req.uri().path()) {
            Ok(service) => service.clone(),
            Err(not_found) => {
                shared.metrics.unrouted();
                debug!(host = %not_found.host, path = %not_found.path, "no route");
                let error = ProxyError::RouteNotFound {
                    host: not_found.host,
                    path: not_found.path,
                };
                return ResponseBody::refusal(error, None);
            }
        }
    };
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let result = forward(&shared, &service, client_ip, host, req).await;
    match result {
        Ok((response, lease)) => {
            debug!(
                service = service.name(), %method, %uri, status = response.status().as_u16(),
                pod = lease.pod().addr(), elapsed = ?started.elapsed(), "proxied"
            );
            respond(service, response, lease, started)
        }
        Err(error) => {
            warn!(service = service.name(), %method, %uri, error = %error, "refused");
            service.metrics().proxy_error(error.kind());
            let status = error.status().as_u16();
            ResponseBody::refusal(error, Some(Completion::new(service, None, status, started)))
        }
    }
}

/// Checks limits, waits for a pod, and sends the request to it.
async fn forward(
    shared: &Shared,
    service: &Arc<Service>,
    client_ip: IpAddr,
    host: Option<HeaderValue>,
    req: Request<Incoming>,
) -> Result<(Response<Incoming>, Lease), ProxyError> {
    let limits = shared.settings.load();
    check_limits(&req, &limits)?;
    let settings = service.settings();
    let (head, body) = upstream_head(req, client_ip, host.as_ref());
    let body = BodySlot::new(body);
    let body_limit = limits.max_request_body_size.0;

    let mut lease = admit(service, None, &settings).await?;
    let mut retried = false;
    loop {
        let request = head.to_request(lease.pod(), body.upstream(body_limit));
        let sent = tokio::time::timeout(settings.request_timeout, shared.client().request(request));
        let error = match sent.await {
            Ok(Ok(response)) => return Ok((response, lease)),
            Ok(Err(error)) => error,
            Err(_elapsed) => {
                return Err(ProxyError::UpstreamTimeout {
                    pod: lease.pod().addr().to_string(),
                    timeout: settings.request_timeout,
                })
            }
        };
        // A connection that failed before the pod read any of the request
        // cannot have had an effect: try once more, on another pod.
        if error.is_connect() && !retried && body.is_untouched() {
            warn!(service = service.name(), pod = lease.pod().addr(), error = %root_cause(&error), "retrying on another pod");
            service.metrics().retried();
            retried = true;
            let failed = lease.pod().clone();
            drop(lease);
            lease = admit(service, Some(&failed), &settings).await?;
            continue;
        }
        return Err(classify(error, lease.pod()));
    }
}

/// Refuses at once what is over the gateway's limits; no pod is involved.
fn check_limits(req: &Request<Incoming>, limits: &GatewaySettings) -> Result<(), ProxyError> {
    let header_limit = limits.max_header_size.0;
    let size = headers_size(req.headers());
    if size as u64 > header_limit {
        return Err(ProxyError::HeadersTooLarge {
            size,
            limit: header_limit,
        });
    }
    let body_limit = limits.max_request_body_size.0;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if body_limit > 0 && declared.is_some_and(|len| len > body_limit) {
        return Err(ProxyError::BodyTooLarge { limit: body_limit });
    }
    Ok(())
}

async fn admit(
    service: &Service,
    avoid: Option<&Pod>,
    settings: &ServiceSettings,
) -> Result<Lease, ProxyError> {
    let (queue, hold) = (settings.queue_timeout, settings.activation_timeout);
    service
        .dispatcher()
        .admit(avoid, queue, hold)
        .await
        .map_err(|e| match e {
            AdmitError::QueueFull => ProxyError::QueueFull,
            AdmitError::QueueTimeout => ProxyError::QueueTimeout(queue),
            AdmitError::ActivationTimeout => ProxyError::ActivationTimeout(hold),
        })
}

/// The client's response: the pod's, less hop-by-hop headers, carrying the lease.
fn respond(
    service: Arc<Service>,
    response: Response<Incoming>,
    lease: Lease,
    started: Instant,
) -> Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    if let Some(held) = lease.held_for() {
        // A cold start: say how long the request waited for the first pod.
        parts
            .headers
            .insert(SLUICE_HELD_MS, HeaderValue::from(held.as_millis() as u64));
    }
    let completion = Completion::new(service, Some(lease), parts.status.as_u16(), started);
    Response::from_parts(parts, ResponseBody::streaming(body, completion))
}

/// The Host header, or an HTTP/2 request's `:authority`.
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    match req.headers().get(HOST) {
        Some(host) => Some(host.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    }
}

fn upstream_head(
    req: Request<Incoming>,
    client_ip: IpAddr,
    host: Option<&HeaderValue>,
) -> (UpstreamHead, Incoming) {
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    remove_hop_by_hop(&mut headers);
    add_forwarding(&mut headers, client_ip, host);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let head = UpstreamHead {
        method: parts.method,
        path,
        headers,
    };
    (head, body)
}

impl UpstreamHead {
    fn to_request(&self, pod: &Pod, body: UpstreamBody) -> Request<UpstreamBody> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(pod.authority().clone())
            .path_and_query(self.path.clone())
            .build()
            .expect("scheme, authority and path are each valid");
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

fn classify(error: hyper_util::client::legacy::Error, pod: &Pod) -> ProxyError {
    let pod = pod.addr().to_string();
    if error.is_connect() {
        return ProxyError::UpstreamConnect {
            pod,
            reason: root_cause(&error),
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(BodyLimitExceeded(limit)) = e.downcast_ref::<BodyLimitExceeded>() {
            return ProxyError::BodyTooLarge { limit: *limit };
        }
        source = e.source();
    }
    ProxyError::Upstream {
        pod,
        reason: root_cause(&error),
    }
}

/// The innermost error's message: "Connection refused (os error 111)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}
