//! One try at sending a request to a pod: over a pooled HTTP/1.1
//! connection, as a stream on the pod's shared HTTP/2 connection, or on a
//! connection of its own for an upgrade; and what a failed try means.

use super::{add_forwarding, remove_hop_by_hop, ProxyError};
use crate::config::{GatewaySettings, UpstreamProtocol};
use crate::pods::Pod;
use crate::upstream::{
    connect, connect_for_upgrade, connect_h2, BodyLimitExceeded, ClientBodyError, ConnectError,
    Connection, Peeked, RequestBody,
};
use http::header::{HeaderValue, HOST};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::time::Duration;

/// One try at a pod: its answer, or the request back untouched when no
/// connection could be made (then it may go to another pod).
pub(super) enum Attempt {
    Answered(Response<Incoming>, Option<Connection>),
    CannotConnect(Request<RequestBody>, ConnectError),
}

/// Sends the request over an idle HTTP/1.1 connection to the pod, or a new one.
pub(super) async fn send_http1(
    pod: &Pod,
    mut request: Request<RequestBody>,
    limits: &GatewaySettings,
    timeout: Duration,
) -> Result<Attempt, ProxyError> {
    loop {
        let (mut connection, reused) =
            match pod.connections.take(limits.upstream_idle_timeout.0).await {
                Some(connection) => (connection, true),
                // Boxed: a new connection is the rare case, and its future is
                // large; inline, every request's future would carry its size.
                None => match Box::pin(connect(pod.authority(), limits.connect_timeout.0)).await {
                    Ok(connection) => (connection, false),
                    Err(error) => return Ok(Attempt::CannotConnect(request, error)),
                },
            };
        let sent = tokio::time::timeout(timeout, connection.try_send_request(request));
        match sent.await {
            Ok(Ok(response)) => return Ok(Attempt::Answered(response, Some(connection))),
            Ok(Err(mut error)) => match error.take_message() {
                // Never sent: a pooled connection that the pod had just
                // closed. Again, on the next one (or a new one).
                Some(unsent) if reused => request = unsent,
                _ => return Err(classify(error.into_error(), pod)),
            },
            Err(_elapsed) => return Err(upstream_timeout(pod, timeout)),
        }
    }
}

/// Sends a request that asks to upgrade on a new connection of its own,
/// which is never pooled: after a 101 it belongs to the tunnel.
pub(super) async fn send_upgrade(
    pod: &Pod,
    request: Request<RequestBody>,
    limits: &GatewaySettings,
    timeout: Duration,
) -> Result<Attempt, ProxyError> {
    let connecting = connect_for_upgrade(pod.authority(), limits.connect_timeout.0);
    let mut connection = match Box::pin(connecting).await {
        Ok(connection) => connection,
        Err(error) => return Ok(Attempt::CannotConnect(request, error)),
    };
    let sent = tokio::time::timeout(timeout, connection.send_request(request));
    match sent.await {
        Ok(Ok(response)) => Ok(Attempt::Answered(response, None)),
        Ok(Err(error)) => Err(classify(error, pod)),
        Err(_elapsed) => Err(upstream_timeout(pod, timeout)),
    }
}

/// Sends the request as a stream on this thread's HTTP/2 connection to the
/// pod, opening it first if there is none.
pub(super) async fn send_h2c(
    pod: &Pod,
    mut request: Request<RequestBody>,
    limits: &GatewaySettings,
    timeout: Duration,
) -> Result<Attempt, ProxyError> {
    if request.uri().authority().is_none() {
        // No Host to carry over: the pod's own address is the authority.
        let path = request.uri().path_and_query().cloned();
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(pod.authority().clone());
        parts.path_and_query = path.or_else(|| Some(PathAndQuery::from_static("/")));
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    loop {
        let connecting = connect_h2(pod.authority(), limits.connect_timeout.0);
        let (mut connection, shared) = match pod.streams.get_or_connect(connecting).await {
            Ok(open) => open,
            Err(error) => return Ok(Attempt::CannotConnect(request, error)),
        };
        let sent = tokio::time::timeout(timeout, connection.try_send_request(request));
        match sent.await {
            Ok(Ok(response)) => return Ok(Attempt::Answered(response, None)),
            Ok(Err(mut error)) => match error.take_message() {
                // Never sent: the shared connection had just closed (a
                // GOAWAY, or the pod went away). Again, on a new one.
                Some(unsent) if shared => {
                    pod.streams.forget();
                    request = unsent;
                }
                _ => return Err(classify(error.into_error(), pod)),
            },
            Err(_elapsed) => return Err(upstream_timeout(pod, timeout)),
        }
    }
}

pub(super) fn upstream_timeout(pod: &Pod, timeout: Duration) -> ProxyError {
    ProxyError::UpstreamTimeout {
        pod: pod.addr().to_string(),
        timeout,
    }
}

pub(super) fn classify(error: hyper::Error, pod: &Pod) -> ProxyError {
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

/// The request as a pod gets it, with clean headers: HTTP/1.1 with an
/// origin-form target; or HTTP/2 with the client's host as `:authority`
/// (and no Host header, as RFC 9113 section 8.3.1 asks).
pub(super) fn upstream_request(
    req: Request<Incoming>,
    client_ip: IpAddr,
    host: Option<&HeaderValue>,
    body_limit: u64,
    protocol: UpstreamProtocol,
) -> Request<RequestBody> {
    let (mut parts, body) = req.into_parts();
    // What routing read of the body already goes first.
    let body = match parts.extensions.remove::<Peeked>() {
        None => RequestBody::new(body, body_limit),
        Some(peeked) => RequestBody::after(peeked, body, body_limit),
    };
    remove_hop_by_hop(&mut parts.headers);
    add_forwarding(&mut parts.headers, &parts.extensions, client_ip, host);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match protocol {
        UpstreamProtocol::Http1 => {
            parts.uri = Uri::from(path);
            parts.version = Version::HTTP_11;
        }
        UpstreamProtocol::H2c => {
            let authority = (parts.headers.remove(HOST))
                .and_then(|host| http::uri::Authority::try_from(host.as_bytes()).ok());
            let mut target = http::uri::Parts::default();
            if authority.is_some() {
                target.scheme = Some(Scheme::HTTP);
            }
            target.authority = authority;
            target.path_and_query = Some(path.clone());
            // Without an authority, `send_h2c` uses the pod's.
            parts.uri = Uri::from_parts(target).unwrap_or_else(|_| Uri::from(path));
            parts.version = Version::HTTP_2;
        }
    }
    Request::from_parts(parts, body)
}
