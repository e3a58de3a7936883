//! The request path, phase by phase: route, check limits, admit to a pod,
//! forward (retrying once on a refused connection), respond.
//!
//! Every response leaves through [`respond`] or [`refuse`]; a request that
//! reached a pod holds its [`Lease`] inside the response body until that body
//! ends, so the pod's in-flight count is exact for streaming responses too.

mod access;
mod body;
mod error;
mod forward;
pub mod grpc;
mod headers;
mod openai;
mod peek;
pub mod request_id;
mod send;
mod upgrade;

pub use self::body::{Completion, ResponseBody};
pub use self::error::{Dialect, ProxyError, SLUICE_ERROR, SLUICE_HELD_MS};
pub use self::headers::{add_forwarding, headers_size, remove_hop_by_hop};
pub use self::request_id::X_REQUEST_ID;

use self::forward::{forward, forward_within, Forwarded};
use crate::config::GatewaySettings;
use crate::server::Tunnels;
use crate::service::Routes;
use crate::service::Service;
use crate::telemetry::{RequestTrace, Telemetry};
use arc_swap::ArcSwap;
use http::header::{HeaderValue, HOST};
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// What the request path reads: the routing table and the gateway's limits
/// (both swapped whole on reload, never locked), and the count of requests
/// no service took. The gateway and the sidecar each hold one.
#[derive(Debug)]
pub struct Proxy {
    pub routes: Arc<ArcSwap<Routes>>,
    pub settings: ArcSwap<GatewaySettings>,
    /// Upgraded connections (WebSockets) open through this proxy.
    pub tunnels: Arc<Tunnels>,
    unrouted: Counter,
    /// Set with `tracing.otlp`: requests get spans and trace context.
    telemetry: Option<Arc<Telemetry>>,
}

impl Proxy {
    pub fn new(routes: Arc<ArcSwap<Routes>>, settings: GatewaySettings, unrouted: Counter) -> Self {
        Proxy {
            routes,
            settings: ArcSwap::from_pointee(settings),
            tunnels: Arc::default(),
            unrouted,
            telemetry: None,
        }
    }

    /// Traces every request through `telemetry` (fixed for the proxy's life).
    pub fn with_telemetry(mut self, telemetry: Option<Arc<Telemetry>>) -> Self {
        self.telemetry = telemetry;
        self
    }

    pub fn telemetry(&self) -> Option<&Arc<Telemetry>> {
        self.telemetry.as_ref()
    }

    /// The request's trace, when tracing is on.
    fn trace(&self, req: &Request<Incoming>, id: &HeaderValue) -> Option<RequestTrace> {
        let trace = self.telemetry.as_ref()?.request(req.headers());
        trace.describe(req.method(), req.uri().path(), id);
        Some(trace)
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
    let access = access::Access::capture(&req, &id, client_ip);
    let mut trace = proxy.trace(&req, &id);
    let mut routed = request_host(&req).and_then(|host| {
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
    // A host that names no service: a KServe v2 gRPC call by the model its
    // first message names, an OpenAI-style call by its body's `model`.
    // (The dialect is asked only here, off the routed path: `proxy_to`
    // asks for itself.)
    let unrouted = matches!(routed, Err(ProxyError::RouteNotFound { .. }));
    let dialect = if routed.is_err() {
        Dialect::of(&req)
    } else {
        Dialect::Json
    };
    if unrouted && dialect == Dialect::Grpc {
        if let Some(service) = grpc::route_by_model(&proxy, &mut req).await {
            routed = request_host(&req).map(|host| (service, host));
        }
    } else if unrouted && dialect == Dialect::OpenAi {
        let path = req.uri().path();
        if req.method() == Method::POST && crate::routing::names_model_in_body(path) {
            // The gateway's limits first: nothing is read of a request
            // they refuse anyway.
            let within_limits = forward::check_limits(&req, &proxy.settings.load());
            routed = match within_limits {
                Ok(()) => match openai::route_by_body_model(&proxy, &mut req).await {
                    Ok(service) => request_host(&req).map(|host| (service, host)),
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
        } else if req.method() == Method::GET && crate::routing::is_model_list(path) {
            let mut response = openai::model_list(&proxy);
            request_id::propagate(response.headers_mut(), id);
            if let Some(access) = access {
                body::log_access(&mut response, access, started);
            }
            return response;
        }
    }
    let mut response = match routed {
        Ok((service, host)) => {
            proxy_to(&proxy, service, client_ip, host, req, started, trace).await
        }
        Err(error) => {
            proxy.unrouted.inc();
            debug!(%error, "no route");
            if let Some(trace) = trace.as_mut().filter(|t| t.is_recording()) {
                trace.set_status(dialect.status(&error));
                trace.set_error(error.kind(), error.to_string());
            }
            ResponseBody::refusal(error, dialect, None)
        }
    };
    request_id::propagate(response.headers_mut(), id);
    if let Some(access) = access {
        body::log_access(&mut response, access, started);
    }
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
    let access = access::Access::capture(&req, &id, client_ip);
    let trace = proxy.trace(&req, &id);
    let mut response = match request_host(&req) {
        Ok(host) => proxy_to(proxy, service, client_ip, host, req, started, trace).await,
        Err(error) => refuse(service, error, started, Dialect::of(&req), trace),
    };
    request_id::propagate(response.headers_mut(), id);
    if let Some(access) = access {
        body::log_access(&mut response, access, started);
    }
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
    mut trace: Option<RequestTrace>,
) -> Response<ResponseBody> {
    let (method, uri) = (req.method().clone(), req.uri().clone());
    // The whole dialect is asked only if sluice answers itself (below).
    let grpc = grpc::is_grpc(req.headers());
    let dialect = || {
        if grpc {
            Dialect::Grpc
        } else {
            Dialect::of_path(uri.path())
        }
    };
    if let Some(trace) = &trace {
        trace.routed(service.namespace(), service.name());
    }
    let deadline = if grpc {
        grpc::timeout(req.headers())
    } else {
        None
    };
    let result = match deadline {
        None => forward(proxy, &service, client_ip, host, req, None, &mut trace).await,
        // Boxed whole: only calls with a deadline pay for the timer, and
        // the others' futures hold no second `forward`.
        Some(limit) => {
            Box::pin(forward_within(
                limit, proxy, &service, client_ip, host, req, &mut trace,
            ))
            .await
        }
    };
    match result {
        Ok(forwarded) => {
            debug!(
                service = service.name(), %method, %uri, status = forwarded.response.status().as_u16(),
                pod = forwarded.lease.pod().addr(), elapsed = ?started.elapsed(), "proxied"
            );
            let idle_timeout = proxy.settings.load().upstream_idle_timeout.0;
            respond(
                service,
                forwarded,
                idle_timeout,
                started,
                &proxy.tunnels,
                trace,
            )
        }
        Err(error) => {
            if error.is_clients() {
                // Any client can send these at will: not worth a warning each.
                debug!(service = service.name(), %method, %uri, error = %error, "refused");
            } else {
                warn!(service = service.name(), %method, %uri, error = %error, "refused");
            }
            refuse(service, error, started, dialect(), trace)
        }
    }
}

/// sluice's own answer to a request for `service`, counted as the service's.
pub fn refuse(
    service: Arc<Service>,
    error: ProxyError,
    started: Instant,
    dialect: Dialect,
    mut trace: Option<RequestTrace>,
) -> Response<ResponseBody> {
    service.metrics().proxy_error(error.kind());
    let status = dialect.status(&error);
    if let Some(trace) = trace.as_mut().filter(|t| t.is_recording()) {
        trace.set_error(error.kind(), error.to_string());
    }
    let completion = Completion::new(service, None, status, started).with_trace(trace);
    ResponseBody::refusal(error, dialect, Some(completion))
}

/// The client's response: the pod's, less hop-by-hop headers, carrying the
/// lease and the connection until its body ends.
fn respond(
    service: Arc<Service>,
    forwarded: Forwarded,
    idle_timeout: Duration,
    started: Instant,
    tunnels: &Arc<Tunnels>,
    trace: Option<RequestTrace>,
) -> Response<ResponseBody> {
    let Forwarded {
        mut response,
        lease,
        connection,
        request_sent,
        upgrade,
    } = forwarded;
    let switching = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    let pod_side = (switching && upgrade.is_some()).then(|| hyper::upgrade::on(&mut response));
    let (mut parts, body) = response.into_parts();
    let switched_to = parts.headers.get(http::header::UPGRADE).cloned();
    remove_hop_by_hop(&mut parts.headers);
    if let (Some(upgrade), Some(pod_side)) = (upgrade, pod_side) {
        // The client is told what the pod switched to; the tunnel holds the
        // request in flight from here.
        upgrade.answer_client(&mut parts, switched_to);
        upgrade.tunnel(pod_side, lease, tunnels);
        let completion =
            Completion::new(service, None, parts.status.as_u16(), started).with_trace(trace);
        return Response::from_parts(parts, ResponseBody::streaming(body, completion));
    }
    if let Some(held) = lease.held_for() {
        // A cold start: say how long the request waited for the first pod.
        let millis = format!("{:.3}", held.as_secs_f64() * 1000.0);
        if let Ok(value) = HeaderValue::try_from(millis) {
            parts.headers.insert(SLUICE_HELD_MS, value);
        }
    }
    let mut completion =
        Completion::new(service, Some(lease), parts.status.as_u16(), started).with_trace(trace);
    if let Some(connection) = connection {
        completion = completion.with_connection(connection, request_sent, idle_timeout);
    }
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
