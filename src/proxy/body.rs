//! The response body to the client. It carries the request's lease and its
//! pod connection until it ends: then the connection goes back to the pod,
//! the pod's slot is freed and the request is counted.

use super::access::Access;
use crate::pods::Lease;
use crate::service::Service;
use crate::telemetry::RequestTrace;
use crate::upstream::Connection;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct ResponseBody {
    inner: Either<Incoming, Full<Bytes>>,
    completion: Option<Completion>,
}

struct Reusable {
    connection: Connection,
    request_sent: Arc<AtomicBool>,
    idle_timeout: Duration,
}

/// The end of a request: what to give back and what to record.
pub struct Completion {
    service: Arc<Service>,
    lease: Option<Lease>,
    /// The pod connection, reusable once the response was read to the end
    /// and the request body was sent to the end.
    connection: Option<Reusable>,
    status: u16,
    started: Instant,
    /// The first byte of the pod's body has been counted (or there is no
    /// pod's body to count).
    first_byte_seen: bool,
    /// The request's spans, ended with it.
    trace: Option<RequestTrace>,
    /// The access log's line, written at the end (if the log is on).
    access: Option<Box<Access>>,
}

// === impl ResponseBody ===

impl ResponseBody {
    pub fn streaming(body: Incoming, mut completion: Completion) -> Self {
        if body.is_end_stream() {
            // No body to read (204, HEAD, Content-Length: 0): the connection
            // is free now, even if nobody ever polls this body.
            completion.reuse_connection();
        }
        ResponseBody {
            inner: Either::Left(body),
            completion: Some(completion),
        }
    }

    /// A body sluice writes itself, for no service.
    pub fn full(bytes: Bytes) -> Self {
        ResponseBody {
            inner: Either::Right(Full::new(bytes)),
            completion: None,
        }
    }

    /// sluice's own error response (a gRPC status for a gRPC call); a
    /// routed request also records its completion.
    pub fn refusal(
        error: super::ProxyError,
        dialect: super::Dialect,
        completion: Option<Completion>,
    ) -> http::Response<ResponseBody> {
        error.into_response_for(dialect).map(|body| ResponseBody {
            inner: Either::Right(body),
            completion,
        })
    }
}

/// Has the request's access log line written when its response ends, or
/// now if nothing is recorded at the end (no service took it).
pub(super) fn log_access(
    response: &mut http::Response<ResponseBody>,
    access: Box<Access>,
    started: Instant,
) {
    let status = response.status().as_u16();
    match &mut response.body_mut().completion {
        Some(completion) => completion.access = Some(access),
        None => access.log(None, status, started.elapsed(), None),
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let (Some(Ok(frame)), Some(completion)) = (&frame, &mut self.completion) {
            if !completion.first_byte_seen && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                completion.first_byte_seen = true;
                let seconds = completion.started.elapsed().as_secs_f64();
                completion.service.metrics().first_byte(seconds);
            }
        }
        let ended = match &frame {
            // The last frame of a body of known length: hyper will not poll
            // again, so this is the end.
            Some(Ok(_)) => self.inner.is_end_stream(),
            None => true,
            Some(Err(_)) => false,
        };
        match &frame {
            // The body ended: the request is over now, not when the
            // connection gets round to dropping us.
            _ if ended => {
                if let Some(mut completion) = self.completion.take() {
                    completion.reuse_connection();
                }
            }
            Some(Ok(_)) | None => {}
            // A broken body: its connection is not reused.
            Some(Err(_)) => self.completion = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl Completion ===

impl Completion {
    pub fn new(service: Arc<Service>, lease: Option<Lease>, status: u16, started: Instant) -> Self {
        Completion {
            first_byte_seen: lease.is_none(),
            service,
            lease,
            connection: None,
            status,
            started,
            trace: None,
            access: None,
        }
    }

    /// Ends the request's spans with it, recording the status answered.
    pub fn with_trace(mut self, trace: Option<RequestTrace>) -> Self {
        self.trace = trace.map(|mut trace| {
            trace.set_status(self.status);
            trace
        });
        self
    }

    /// Keeps the pod connection, to give back if the response is read to the
    /// end and `request_sent` says the request body was too.
    pub fn with_connection(
        mut self,
        connection: Connection,
        request_sent: Arc<AtomicBool>,
        idle_timeout: Duration,
    ) -> Self {
        self.connection = Some(Reusable {
            connection,
            request_sent,
            idle_timeout,
        });
        self
    }

    /// Gives the connection back to its pod, before the slot is freed so that
    /// the next request to this pod finds it. A pod that answered before
    /// reading the whole request body keeps its connection busy: not reused.
    fn reuse_connection(&mut self) {
        if let (Some(reusable), Some(lease)) = (self.connection.take(), &self.lease) {
            if reusable.request_sent.load(Ordering::Acquire) {
                lease
                    .pod()
                    .connections
                    .put(reusable.connection, reusable.idle_timeout);
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let seconds = elapsed.as_secs_f64();
        let metrics = self.service.metrics();
        metrics.request_done(self.status, seconds);
        if self
            .lease
            .as_ref()
            .is_some_and(|lease| lease.is_cold_start())
        {
            metrics.cold_start(seconds);
        }
        if let Some(access) = self.access.take() {
            let (service, lease) = (Some(self.service.name()), self.lease.as_ref());
            access.log(service, self.status, elapsed, lease);
        }
        // A connection still here was not read to the end: dropping it closes it.
        drop(self.connection.take());
        drop(self.lease.take());
        drop(self.trace.take());
    }
}
