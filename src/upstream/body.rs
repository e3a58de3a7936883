//! The request body as sent to a pod: streamed frame by frame from the
//! client, and cut off with [`BodyLimitExceeded`] past `maxRequestBodySize`.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client sent more than `maxRequestBodySize`.
#[derive(Debug, thiserror::Error)]
#[error("request body is over the limit of {0} bytes")]
pub struct BodyLimitExceeded(pub u64);

/// The client's body broke while it was being sent on (a malformed chunk, a
/// client that left mid-body): the client's fault, not the pod's.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0}")]
pub struct ClientBodyError(#[source] pub hyper::Error);

/// The start of a body, read before the request was routed (a gRPC call's
/// model name); sent on first.
#[derive(Clone, Debug, Default)]
pub struct Peeked {
    pub data: bytes::BytesMut,
    /// Trailers, if the body ended with them while it was read.
    pub trailers: Option<http::HeaderMap>,
}

#[derive(Debug)]
pub struct RequestBody {
    inner: Incoming,
    peeked: Option<Box<Peeked>>,
    /// 0 = unlimited.
    limit: u64,
    seen: u64,
    /// Set once the whole body has been handed to the connection: only then
    /// may the connection be reused, even if the response came first.
    sent: Arc<AtomicBool>,
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: u64) -> Self {
        let sent = Arc::new(AtomicBool::new(inner.is_end_stream()));
        RequestBody {
            inner,
            peeked: None,
            limit,
            seen: 0,
            sent,
        }
    }

    /// A body whose start was read already: `peeked` goes first.
    pub fn after(peeked: Peeked, inner: Incoming, limit: u64) -> Self {
        let mut body = RequestBody::new(inner, limit);
        if !peeked.data.is_empty() || peeked.trailers.is_some() {
            body.sent.store(false, Ordering::Release);
            body.peeked = Some(Box::new(peeked));
        }
        body
    }

    /// Becomes true when the body has been sent to the end.
    pub fn sent(&self) -> Arc<AtomicBool> {
        self.sent.clone()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(peeked) = self.peeked.as_mut() {
            if let Some(frame) = take_peeked(peeked) {
                self.seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if self.limit > 0 && self.seen > self.limit {
                    return Poll::Ready(Some(Err(BodyLimitExceeded(self.limit).into())));
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            self.peeked = None;
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            self.seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if self.limit > 0 && self.seen > self.limit {
                return Poll::Ready(Some(Err(BodyLimitExceeded(self.limit).into())));
            }
        }
        if frame.is_none() || self.inner.is_end_stream() {
            self.sent.store(true, Ordering::Release);
        }
        Poll::Ready(frame.map(|f| f.map_err(|e| ClientBodyError(e).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.peeked.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.peeked {
            None => self.inner.size_hint(),
            Some(peeked) => {
                let mut hint = self.inner.size_hint();
                let before = peeked.data.len() as u64;
                // The upper bound first: an exact hint (Content-Length) has
                // lower == upper, and a lower bound past the upper panics.
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper + before);
                }
                hint.set_lower(hint.lower() + before);
                hint
            }
        }
    }
}

/// The next frame of what was peeked: its data, then its trailers.
fn take_peeked(peeked: &mut Peeked) -> Option<Frame<Bytes>> {
    if !peeked.data.is_empty() {
        return Some(Frame::data(peeked.data.split().freeze()));
    }
    peeked.trailers.take().map(Frame::trailers)
}
