//! Trace context and request spans (OpenTelemetry).
//!
//! With `tracing.otlp` set, each request gets a span: the child of the
//! caller's W3C `traceparent` if it sent a valid one, else the root of a new
//! trace. Its children record the wait for a pod and the call to the pod,
//! whose `traceparent` names sluice's upstream span as its parent. Spans are
//! sampled parent-based (a caller's decision is kept; new traces by the
//! ratio), batched and posted over OTLP/HTTP by the SDK on a thread of its
//! own, so a slow or absent receiver never holds a request.
//!
//! Without the section nothing here runs: trace headers pass through as any
//! other header.

mod export;
mod headers;
mod request;

pub use self::headers::{TRACEPARENT, TRACESTATE};
pub use self::request::RequestTrace;

use self::export::LoggedExporter;
use self::headers::HeaderExtractor;
use crate::config::{OtlpSettings, TracingSettings};
use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::fmt;
use std::time::Duration;

/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the last spans to leave.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why trace export could not start.
#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp: cannot start the OTLP exporter: {0}")]
pub struct TelemetryError(String);

/// The tracer of one gateway or sidecar, and its exporter.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

/// The tracer for a `tracing` section, if it asks for one. An exporter
/// that cannot start (a validated section should always start) is logged,
/// and requests are served untraced rather than refused.
pub fn start(settings: &TracingSettings) -> Option<std::sync::Arc<Telemetry>> {
    let otlp = settings.otlp.as_ref()?;
    match Telemetry::start(otlp) {
        Ok(telemetry) => {
            tracing::info!(url = %otlp.traces_url(), ratio = otlp.sampling_ratio, "exporting request spans over OTLP");
            Some(std::sync::Arc::new(telemetry))
        }
        Err(error) => {
            tracing::error!(%error, "requests are served without spans");
            None
        }
    }
}

// === impl Telemetry ===

impl Telemetry {
    /// Starts the exporter (its batch thread) for these settings.
    pub fn start(settings: &OtlpSettings) -> Result<Telemetry, TelemetryError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.traces_url())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TelemetryError(e.to_string()))?;
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sampling_ratio,
        )));
        let resource = Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(LoggedExporter::new(exporter, settings.traces_url()))
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("sluice");
        Ok(Telemetry {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
        })
    }

    /// The trace of a request that arrived with these headers: a child of
    /// the caller's `traceparent`, or a new trace if it had none valid.
    pub fn request(&self, headers: &HeaderMap) -> RequestTrace {
        let parent = self.propagator.extract(&HeaderExtractor(headers));
        RequestTrace::start(&self.tracer, &parent)
    }

    /// Sends the spans still batched, waiting at most a few seconds; then
    /// no more are recorded. Blocking: the SDK joins its export thread.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!(%error, "trace export: the last spans may not have been sent");
        }
    }

    /// [`Telemetry::shutdown`] off the async threads.
    pub async fn shutdown_async(self: std::sync::Arc<Self>) {
        let _ = tokio::task::spawn_blocking(move || self.shutdown()).await;
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}
