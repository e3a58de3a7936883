//! Forwarding a routed request: the gateway's limits, the wait for a pod
//! (admission), and then the exchange with it, retried once on another pod
//! when it could not be connected to.

use super::send::{send_h2c, send_http1, send_upgrade, upstream_request, Attempt};
use super::{grpc, headers_size, upgrade, Proxy, ProxyError};
use crate::config::{GatewaySettings, UpstreamProtocol};
use crate::pods::{AdmitError, Lease, Pod};
use crate::service::{Service, ServiceSettings};
use crate::telemetry::RequestTrace;
use crate::upstream::Connection;
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::debug;

/// A pod's response, with what it took to get it.
pub(super) struct Forwarded {
    pub(super) response: Response<Incoming>,
    pub(super) lease: Lease,
    /// An HTTP/1.1 connection, to give back when the response ends (an
    /// HTTP/2 stream needs nothing given back).
    pub(super) connection: Option<Connection>,
    /// True once the request body was sent to the end.
    pub(super) request_sent: Arc<AtomicBool>,
    /// The client's side of an upgrade it asked for.
    pub(super) upgrade: Option<upgrade::Requested>,
}

/// [`forward`], bounded by a gRPC call's `limit`.
pub(super) async fn forward_within(
    limit: Duration,
    proxy: &Proxy,
    service: &Arc<Service>,
    client_ip: IpAddr,
    host: Option<HeaderValue>,
    req: Request<Incoming>,
    trace: &mut Option<RequestTrace>,
) -> Result<Forwarded, ProxyError> {
    let until = tokio::time::Instant::now() + limit;
    let bounded = forward(proxy, service, client_ip, host, req, Some(until), trace);
    match tokio::time::timeout_at(until, bounded).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ProxyError::DeadlineExceeded(limit)),
    }
}

/// Checks limits, waits for a pod, and sends the request to it. A gRPC
/// call's `deadline` is passed on to the pod as what is left of it.
pub(super) async fn forward(
    proxy: &Proxy,
    service: &Arc<Service>,
    client_ip: IpAddr,
    host: Option<HeaderValue>,
    req: Request<Incoming>,
    deadline: Option<tokio::time::Instant>,
    trace: &mut Option<RequestTrace>,
) -> Result<Forwarded, ProxyError> {
    // Owned snapshots: they are held across awaits for the whole request.
    let limits = proxy.settings.load_full();
    check_limits(&req, &limits)?;
    let settings = service.settings_snapshot();
    let lease = admit(service, None, &settings, trace.as_ref()).await?;
    // Boxed, and the request rewritten for the pod only now: a request
    // waiting for a pod (held at zero, queued) then carries only the wait's
    // state and the request as it came, not the exchange's (most of a
    // request's future) nor the headers the pod gets (which grow its map).
    let exchange = Exchange {
        service,
        client_ip,
        host,
        limits,
        settings,
        deadline,
    };
    Box::pin(exchange.run(req, lease, trace)).await
}

/// A request's exchange with its pod, once it has a lease.
struct Exchange<'a> {
    service: &'a Arc<Service>,
    client_ip: IpAddr,
    host: Option<HeaderValue>,
    limits: Arc<GatewaySettings>,
    settings: Arc<ServiceSettings>,
    deadline: Option<tokio::time::Instant>,
}

impl Exchange<'_> {
    /// Sends the request to the lease's pod (once more to another pod if
    /// it could not connect).
    async fn run(
        self,
        mut req: Request<Incoming>,
        mut lease: Lease,
        trace: &mut Option<RequestTrace>,
    ) -> Result<Forwarded, ProxyError> {
        let (service, limits, settings) = (self.service, &self.limits, &self.settings);
        let protocol = settings.config.protocol;
        // Upgrades are HTTP/1.1's; to an h2c pod the request goes without one.
        let upgrade = match protocol {
            UpstreamProtocol::Http1 => upgrade::requested(&mut req),
            UpstreamProtocol::H2c => None,
        };
        let mut request = upstream_request(
            req,
            self.client_ip,
            self.host.as_ref(),
            limits.max_request_body_size.0,
            protocol,
        );
        if let Some(upgrade) = &upgrade {
            upgrade.ask_pod(&mut request);
        }
        let request_sent = request.body().sent();
        let mut retried_elsewhere = false;
        loop {
            // What is left of a gRPC call's deadline, as of this attempt (a
            // retry may have waited for its second pod).
            if let Some(deadline) = self.deadline {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                (request.headers_mut()).insert(grpc::GRPC_TIMEOUT, grpc::timeout_value(left));
            }
            let pod = lease.pod().clone();
            let timeout = settings.request_timeout;
            if let Some(trace) = trace.as_mut() {
                trace.upstream(pod.addr(), request.headers_mut());
            }
            let attempt = match protocol {
                _ if upgrade.is_some() => send_upgrade(&pod, request, limits, timeout).await?,
                UpstreamProtocol::Http1 => send_http1(&pod, request, limits, timeout).await?,
                // Boxed: an HTTP/2 exchange's state is nearly 3 KiB, and
                // inline it would make every HTTP/1 exchange that large.
                UpstreamProtocol::H2c => Box::pin(send_h2c(&pod, request, limits, timeout)).await?,
            };
            match attempt {
                Attempt::Answered(response, connection) => {
                    return Ok(Forwarded {
                        response,
                        lease,
                        connection,
                        request_sent,
                        upgrade,
                    })
                }
                // Nothing of the request was sent: try once more, on another pod.
                Attempt::CannotConnect(unsent, error) if !retried_elsewhere => {
                    debug!(service = service.name(), pod = pod.addr(), %error, "cannot connect; retrying on another pod");
                    service.metrics().retried();
                    retried_elsewhere = true;
                    request = unsent;
                    drop(lease);
                    lease = admit(service, Some(&pod), settings, trace.as_ref()).await?;
                }
                Attempt::CannotConnect(_, error) => {
                    return Err(ProxyError::UpstreamConnect {
                        pod: pod.addr().to_string(),
                        reason: error.to_string(),
                    })
                }
            }
        }
    }
}

/// Refuses at once what is over the gateway's limits; no pod is involved.
pub(super) fn check_limits(
    req: &Request<Incoming>,
    limits: &GatewaySettings,
) -> Result<(), ProxyError> {
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
    trace: Option<&RequestTrace>,
) -> Result<Lease, ProxyError> {
    let (queue, hold) = (settings.queue_timeout, settings.activation_timeout);
    let since = trace.map(|_| SystemTime::now());
    let lease = service
        .dispatcher()
        .admit(avoid, queue, hold)
        .await
        .map_err(|e| match e {
            AdmitError::QueueFull => ProxyError::QueueFull,
            AdmitError::QueueTimeout => ProxyError::QueueTimeout(queue),
            AdmitError::ActivationTimeout => ProxyError::ActivationTimeout(hold),
        })?;
    if let (Some(trace), Some(since)) = (trace, since) {
        trace.admitted(since, lease.pod().addr(), lease.held_for());
    }
    if let Some(held) = lease.held_for() {
        service.metrics().held(held.as_secs_f64());
    }
    Ok(lease)
}

/// What a request waiting for a pod carries: its future lives in hyper's
/// slot for the connection's request (one allocation per connection, moved
/// once per request), so it is kept free of what only an exchange needs.
#[cfg(test)]
mod future_size {
    use super::*;
    use std::future::Future;

    fn size4<A, B, C, D, F: Future>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    fn size7<A, B, C, D, E, G, H, F: Future>(_: fn(A, B, C, D, E, G, H) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_waiting_request_holds_no_exchange_state() {
        let (forward, admit) = (size7(forward), size4(admit));
        let (http1, h2c) = (size4(send_http1), size4(send_h2c));
        // Inline, either exchange would make `forward` at least its size
        // plus the wait's.
        assert!(
            forward < admit + http1,
            "forward {forward} B, admit {admit} B, HTTP/1 exchange {http1} B"
        );
        assert!(
            forward < h2c,
            "forward {forward} B, HTTP/2 exchange {h2c} B"
        );
    }
}
