//! Bodies on the way through: the request body to a pod, and the response body
//! back to the client that carries the request's lease until it ends.

use crate::pods::Lease;
use crate::service::Service;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Instant;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client sent more than `maxRequestBodySize`.
#[derive(Debug, thiserror::Error)]
#[error("request body is over the limit of {0} bytes")]
pub struct BodyLimitExceeded(pub u64);

/// Holds the client's request body until a pod actually reads it. If the
/// connection to a pod fails before the first read, the body is still here,
/// whole, and the request can be retried on another pod.
#[derive(Clone)]
pub struct BodySlot(Arc<Mutex<Option<Incoming>>>);

/// The request body as sent to a pod: streamed from the client, frame by
/// frame, and cut off with [`BodyLimitExceeded`] past the size limit.
pub struct UpstreamBody {
    slot: BodySlot,
    taken: Option<Incoming>,
    /// 0 = unlimited.
    limit: u64,
    seen: u64,
}

/// The response body to the client. When it ends, or the client goes away
/// and it is dropped, the [`Completion`] ends the request: the pod's slot is
/// freed and the request is counted.
pub struct ResponseBody {
    inner: Either<Incoming, Full<Bytes>>,
    completion: Option<Completion>,
}

/// The end of a request: its lease and what to record.
pub struct Completion {
    service: Arc<Service>,
    lease: Option<Lease>,
    status: u16,
    started: Instant,
}

// === impl BodySlot ===

impl BodySlot {
    pub fn new(body: Incoming) -> Self {
        BodySlot(Arc::new(Mutex::new(Some(body))))
    }

    /// True while no pod has read any of the body.
    pub fn is_untouched(&self) -> bool {
        self.lock().is_some()
    }

    pub fn upstream(&self, limit: u64) -> UpstreamBody {
        UpstreamBody {
            slot: self.clone(),
            taken: None,
            limit,
            seen: 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Incoming>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl UpstreamBody ===

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.taken.is_none() {
            this.taken = this.slot.lock().take();
        }
        let Some(body) = this.taken.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(body).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            this.seen += data.map_or(0, |d| d.len() as u64);
            if this.limit > 0 && this.seen > this.limit {
                return Poll::Ready(Some(Err(BodyLimitExceeded(this.limit).into())));
            }
        }
        Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => self.slot.lock().as_ref().is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => self
                .slot
                .lock()
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Body::size_hint),
        }
    }
}

// === impl ResponseBody ===

impl ResponseBody {
    pub fn streaming(body: Incoming, completion: Completion) -> Self {
        ResponseBody {
            inner: Either::Left(body),
            completion: Some(completion),
        }
    }

    /// sluice's own error response; a routed request also records its completion.
    pub fn refusal(
        error: super::ProxyError,
        completion: Option<Completion>,
    ) -> http::Response<ResponseBody> {
        error.into_response().map(|body| ResponseBody {
            inner: Either::Right(body),
            completion,
        })
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
        if !matches!(frame, Some(Ok(_))) {
            // The body ended (or failed): the request is over now, not when
            // the connection gets round to dropping us.
            self.completion = None;
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
            service,
            lease,
            status,
            started,
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let seconds = self.started.elapsed().as_secs_f64();
        self.service.metrics().request_done(self.status, seconds);
        drop(self.lease.take());
    }
}
