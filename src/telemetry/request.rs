//! One request's spans: `request` (server), and under it `queue` (the wait
//! for a pod's slot), `activation` (the part of it spent held while the
//! service had no pod) and `upstream` (client: the call to the pod, until
//! its response body ends).

use super::headers::HeaderInjector;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanKind, Status, TraceContextExt, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};
use std::time::{Duration, SystemTime};

/// Ended when the request is: dropped with its response body. One pointer
/// wide, so that an untraced request's futures and body carry no more than
/// a `None`.
pub struct RequestTrace(Box<Spans>);

struct Spans {
    tracer: SdkTracer,
    /// Holds the `request` span: the parent of the others.
    cx: Context,
    upstream: Option<Span>,
    status: Option<u16>,
    error: Option<(&'static str, String)>,
}

impl RequestTrace {
    pub(super) fn start(tracer: &SdkTracer, parent: &Context) -> Self {
        let span = tracer.build_with_context(
            SpanBuilder::from_name("request").with_kind(SpanKind::Server),
            parent,
        );
        RequestTrace(Box::new(Spans {
            tracer: tracer.clone(),
            cx: parent.with_span(span),
            upstream: None,
            status: None,
            error: None,
        }))
    }

    /// Whether this request's spans are exported (sampled).
    pub fn is_recording(&self) -> bool {
        self.0.cx.span().is_recording()
    }

    /// The request's method, target and id, and the service it went to.
    pub fn describe(&self, method: &http::Method, path: &str, request_id: &http::HeaderValue) {
        let span = self.0.cx.span();
        if !span.is_recording() {
            return;
        }
        span.set_attributes([
            KeyValue::new("http.request.method", method.as_str().to_owned()),
            KeyValue::new("url.path", path.to_owned()),
            KeyValue::new(
                "sluice.request_id",
                String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
            ),
        ]);
    }

    /// The route: the service the request is for.
    pub fn routed(&self, namespace: &str, name: &str) {
        let span = self.0.cx.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new(
                "sluice.service",
                format!("{namespace}/{name}"),
            ));
        }
    }

    /// A slot on `pod` was granted; the wait began at `since`, and `held`
    /// of it was spent with no pod at all (a cold start).
    pub fn admitted(&self, since: SystemTime, pod: &str, held: Option<Duration>) {
        if !self.is_recording() {
            return;
        }
        let now = SystemTime::now();
        let mut queue = self.child("queue", SpanKind::Internal, since);
        queue.set_attribute(KeyValue::new("sluice.pod", pod.to_owned()));
        if let Some(held) = held {
            let held_ms = held.as_secs_f64() * 1000.0;
            queue.set_attribute(KeyValue::new("sluice.held_ms", held_ms));
            let start = now.checked_sub(held).unwrap_or(since).max(since);
            let mut activation = self.child("activation", SpanKind::Internal, start);
            activation.end_with_timestamp(now);
        }
        queue.end_with_timestamp(now);
    }

    /// The call to the pod starts (once, however often it is sent): the
    /// pod's request gets its trace context, naming the upstream span as
    /// its parent.
    pub fn upstream(&mut self, pod: &str, headers: &mut http::HeaderMap) {
        let spans = &mut *self.0;
        let span = spans.upstream.get_or_insert_with(|| {
            let mut span = spans.tracer.build_with_context(
                SpanBuilder::from_name("upstream").with_kind(SpanKind::Client),
                &spans.cx,
            );
            if span.is_recording() {
                span.set_attribute(KeyValue::new("server.address", pod.to_owned()));
            }
            span
        });
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }

    /// The status sluice answered with.
    pub fn set_status(&mut self, status: u16) {
        self.0.status = Some(status);
    }

    /// sluice answered itself: its error's kind and message.
    pub fn set_error(&mut self, kind: &'static str, message: String) {
        self.0.error = Some((kind, message));
    }

    fn child(&self, name: &'static str, kind: SpanKind, start: SystemTime) -> Span {
        let builder = SpanBuilder::from_name(name)
            .with_kind(kind)
            .with_start_time(start);
        self.0.tracer.build_with_context(builder, &self.0.cx)
    }
}

impl Drop for RequestTrace {
    fn drop(&mut self) {
        let span = self.0.cx.span();
        if !span.is_recording() {
            return;
        }
        let status = self.0.status.map(i64::from);
        if let Some(mut upstream) = self.0.upstream.take() {
            if let Some(status) = status.filter(|_| self.0.error.is_none()) {
                upstream.set_attribute(KeyValue::new("http.response.status_code", status));
            }
            upstream.end();
        }
        if let Some(status) = status {
            span.set_attribute(KeyValue::new("http.response.status_code", status));
            if status >= 500 {
                span.set_status(Status::error(format!("status {status}")));
            }
        }
        if let Some((kind, message)) = self.0.error.take() {
            span.set_attribute(KeyValue::new("sluice.error", kind));
            span.set_status(Status::error(message));
        }
        span.end();
    }
}
