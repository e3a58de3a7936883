//! The request path, phase by phase: route, check limits, admit to a pod,
//! forward (retrying once on a refused connection), respond.
//!
//! Every response leaves through [`respond`] or [`refuse`]; a request that
//! reached a pod holds its [`Lease`] inside the response body until that body
//! ends, so the pod's in-flight count is exact for streaming responses too.

mod body;
mod error;
mod headers;
pub mod request_id;

pub use self::body::{Completion, ResponseBody};
pub use self::error::{ProxyError, SLUICE_ERROR, SLUICE_HELD_MS};
pub use self::headers::{add_forwarding, headers_size, remove_hop_by_hop};
pub use self::request_id::X_REQUEST_ID;

use crate::config::GatewaySettings;
use crate::pods::{AdmitError, Lease, Pod};
use crate::service::Routes;
use crate::service::{Service, ServiceSettings};
use crate::upstream::{connect, BodyLimitExceeded, ClientBodyError, Connection, RequestBody};
use arc_swap::ArcSwap;
use http::header::{HeaderValue, CONTENT_LENGTH, HOST};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, warn};

/// A pod's response, with what it took to get it.
struct Forwarded {
    response: Response<Incoming>,
    lease: Lease,
    connection: Connection,
    /// True once the request body was sent to the end.
    request_sent: Arc<AtomicBool>,
}

/// What the request path reads: the routing table and the gateway's limits
/// (both swapped whole on reload, never locked), and the count of requests
/// no service took. The gateway and the sidecar each hold one.
#[derive(Debug)]
pub struct Proxy {
    pub routes: Arc<ArcSwap<Routes>>,
    pub settings: ArcSwap<GatewaySettings>,
    unrouted: Counter,
}

impl Proxy {
    pub fn new(routes: Arc<ArcSwap<Routes>>, settings: GatewaySettings, unrouted: Counter) -> Self {
        Proxy {
            routes,
            settings: ArcSwap::from_pointee(settings),
            unrouted,
        }
    }
}

/// Serves one request from a client at `client_ip`: the gateway's handler.
pub async fn proxy(
    proxy: Arc<Proxy>,
    client_ip: IpAddr,
    mut req: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let id = request_id::ensure(req.headers_mut());
    let routed = request_host(&req).and_then(|host| {
        let routes = proxy.routes.load();
        let host_name = host.as_ref().and_then(|h| h.to_str().ok());
        match routes.route(host_name, req.uri().path()) {
            Ok(service) => Ok((service.clone(), host)),
            Err(not_found) => Err(ProxyError::RouteNotFound {
                host: not_found.host,
                path: not_found.path,
            }),
        }
    });
    let mut response = match routed {
        Ok((service, host)) => proxy_to(&proxy, service, client_ip, host, req, started).await,
        Err(error) => {
            proxy.unrouted.inc();
            debug!(%error, "no route");
            ResponseBody::refusal(error, None)
        }
    };
    request_id::propagate(response.headers_mut(), id);
    response
}

/// Serves one request for the one service a sidecar has: the sidecar's handler.
pub async fn proxy_service(
    proxy: &Proxy,
    service: Arc<Service>,
    client_ip: IpAddr,
    mut req: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let id = request_id::ensure(req.headers_mut());
    let mut response = match request_host(&req) {
        Ok(host) => proxy_to(proxy, service, client_ip, host, req, started).await,
        Err(error) => refuse(service, error, started),
    };
    request_id::propagate(response.headers_mut(), id);
    response
}

/// Serves one request for a known service.
async fn proxy_to(
    proxy: &Proxy,
    service: Arc<Service>,
    client_ip: IpAddr,
    host: Option<HeaderValue>,
    req: Request<Incoming>,
    started: Instant,
) -> Response<ResponseBody> {
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let result = forward(proxy, &service, client_ip, host, req).await;
    match result {
        Ok(forwarded) => {
            debug!(
                service = service.name(), %method, %uri, status = forwarded.response.status().as_u16(),
                pod = forwarded.lease.pod().addr(), elapsed = ?started.elapsed(), "proxied"
            );
            let idle_timeout = proxy.settings.load().upstream_idle_timeout.0;
            respond(service, forwarded, idle_timeout, started)
        }
        Err(error) => {
            if error.is_clients() {
                // Any client can send these at will: not worth a warning each.
                debug!(service = service.name(), %method, %uri, error = %error, "refused");
            } else {
                warn!(service = service.name(), %method, %uri, error = %error, "refused");
            }
            refuse(service, error, started)
        }
    }
}

/// sluice's own answer to a request for `service`, counted as the service's.
pub fn refuse(
    service: Arc<Service>,
    error: ProxyError,
    started: Instant,
) -> Response<ResponseBody> {
    service.metrics().proxy_error(error.kind());
    let status = error.status().as_u16();
    ResponseBody::refusal(error, Some(Completion::new(service, None, status, started)))
}

/// Checks limits, waits for a pod, and sends the request to it.
async fn forward(
    proxy: &Proxy,
    service: &Arc<Service>,
    client_ip: IpAddr,
    host: Option<HeaderValue>,
    req: Request<Incoming>,
) -> Result<Forwarded, ProxyError> {
    // Owned snapshots: they are held across awaits for the whole request.
    let limits = proxy.settings.load_full();
    check_limits(&req, &limits)?;
    let settings = service.settings_snapshot();
    let mut request = upstream_request(
        req,
        client_ip,
        host.as_ref(),
        limits.max_request_body_size.0,
    );
    let request_sent = request.body().sent();
    let mut lease = admit(service, None, &settings).await?;
    let mut retried_elsewhere = false;
    loop {
        let pod = lease.pod().clone();
        let (mut connection, reused) = match pod
            .connections
            .take(limits.upstream_idle_timeout.0)
            .await
        {
            Some(connection) => (connection, true),
            // Boxed: a new connection is the rare case, and its future is
            // large; inline, every request's future would carry its size.
            None => match Box::pin(connect(pod.authority(), limits.connect_timeout.0)).await {
                Ok(connection) => (connection, false),
                // Nothing of the request was sent: try once more, on another pod.
                Err(error) if !retried_elsewhere => {
                    debug!(service = service.name(), pod = pod.addr(), %error, "cannot connect; retrying on another pod");
                    service.metrics().retried();
                    retried_elsewhere = true;
                    drop(lease);
                    lease = admit(service, Some(&pod), &settings).await?;
                    continue;
                }
                Err(error) => {
                    return Err(ProxyError::UpstreamConnect {
                        pod: pod.addr().to_string(),
                        reason: error.to_string(),
                    })
                }
            },
        };
        let sent = tokio::time::timeout(
            settings.request_timeout,
            connection.try_send_request(request),
        );
        match sent.await {
            Ok(Ok(response)) => {
                return Ok(Forwarded {
                    response,
                    lease,
                    connection,
                    request_sent,
                })
            }
            Ok(Err(mut error)) => match error.take_message() {
                // Never sent: a pooled connection that the pod had just
                // closed. Again, on the next one (or a new one).
                Some(unsent) if reused => request = unsent,
                _ => return Err(classify(error.into_error(), &pod)),
            },
            Err(_elapsed) => {
                return Err(ProxyError::UpstreamTimeout {
                    pod: pod.addr().to_string(),
                    timeout: settings.request_timeout,
                })
            }
        }
    }
}

/// Refuses at once what is over the gateway's limits; no pod is involved.
fn check_limits(req: &Request<Incoming>, limits: &GatewaySettings) -> Result<(), ProxyError> {
    let count_limit = limits.max_header_count;
    let count = req.headers().len();
    if count > count_limit {
        return Err(ProxyError::TooManyHeaders {
            count,
            limit: count_limit,
        });
    }
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

/// The client's response: the pod's, less hop-by-hop headers, carrying the
/// lease and the connection until its body ends.
fn respond(
    service: Arc<Service>,
    forwarded: Forwarded,
    idle_timeout: std::time::Duration,
    started: Instant,
) -> Response<ResponseBody> {
    let Forwarded {
        response,
        lease,
        connection,
        request_sent,
    } = forwarded;
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    if let Some(held) = lease.held_for() {
        // A cold start: say how long the request waited for the first pod.
        let millis = format!("{:.3}", held.as_secs_f64() * 1000.0);
        if let Ok(value) = HeaderValue::try_from(millis) {
            parts.headers.insert(SLUICE_HELD_MS, value);
        }
    }
    let completion = Completion::new(service, Some(lease), parts.status.as_u16(), started)
        .with_connection(connection, request_sent, idle_timeout);
    Response::from_parts(parts, ResponseBody::streaming(body, completion))
}

/// The host a request is for. HTTP/1, as RFC 9112 section 3.2 says: the
/// authority of an absolute-form target wins over Host; a request without
/// Host (HTTP/1.1) or with more than one is malformed; HTTP/1.0 may have
/// none, and is then routed by its path. HTTP/2: the Host header if the
/// client sent one (hyper's client sends it beside `:authority`; nginx reads
/// it first too), else `:authority`.
pub fn request_host(req: &Request<Incoming>) -> Result<Option<HeaderValue>, ProxyError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let (host, another) = (hosts.next(), hosts.next());
    if another.is_some() {
        return Err(ProxyError::BadRequest("more than one Host header".into()));
    }
    let authority = || {
        req.uri()
            .authority()
            .map(|authority| HeaderValue::from_str(authority.as_str()))
            .transpose()
            .map_err(|_| ProxyError::BadRequest("the target's authority is not valid".into()))
    };
    match req.version() {
        Version::HTTP_2 | Version::HTTP_3 => match host {
            Some(host) => Ok(Some(host.clone())),
            None => authority(),
        },
        version => {
            if host.is_none() && version == Version::HTTP_11 {
                return Err(ProxyError::BadRequest(
                    "an HTTP/1.1 request must have a Host header".into(),
                ));
            }
            Ok(authority()?.or_else(|| host.cloned()))
        }
    }
}

/// The request as a pod gets it: origin-form target, HTTP/1.1, clean headers.
fn upstream_request(
    req: Request<Incoming>,
    client_ip: IpAddr,
    host: Option<&HeaderValue>,
    body_limit: u64,
) -> Request<RequestBody> {
    let (mut parts, body) = req.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    add_forwarding(&mut parts.headers, client_ip, host);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::from(path);
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, RequestBody::new(body, body_limit))
}

fn classify(error: hyper::Error, pod: &Pod) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(BodyLimitExceeded(limit)) = e.downcast_ref::<BodyLimitExceeded>() {
            return ProxyError::BodyTooLarge { limit: *limit };
        }
        if let Some(ClientBodyError(cause)) = e.downcast_ref::<ClientBodyError>() {
            return ProxyError::BadRequest(format!(
                "the request body is malformed: {}",
                root_cause(cause)
            ));
        }
        source = e.source();
    }
    ProxyError::Upstream {
        pod: pod.addr().to_string(),
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
