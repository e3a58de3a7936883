//! The OTLP exporter, with its failures logged at most once a minute: a
//! receiver that is down must not flood the log, nor touch a request.

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one warning per this long; the spans lost meanwhile are counted in it.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) struct LoggedExporter<E> {
    inner: E,
    url: String,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    last_warned: Option<Instant>,
    /// Spans not delivered since the last warning.
    lost: u64,
}

impl<E> LoggedExporter<E> {
    pub(super) fn new(inner: E, url: String) -> Self {
        LoggedExporter {
            inner,
            url,
            failures: Mutex::new(Failures::default()),
        }
    }

    fn failed(&self, spans: usize, error: &dyn std::fmt::Display) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(lost) = failures.record(spans, Instant::now()) {
            tracing::warn!(
                url = %self.url, %error, spans_lost = lost,
                "trace export failed; requests are unaffected (next warning in a minute at the earliest)"
            );
        }
    }
}

impl Failures {
    /// Counts a failed batch of `spans`; returns the spans lost since the
    /// last warning when it is time for another.
    fn record(&mut self, spans: usize, now: Instant) -> Option<u64> {
        self.lost += spans as u64;
        let due = self
            .last_warned
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
        if !due {
            return None;
        }
        self.last_warned = Some(now);
        Some(std::mem::take(&mut self.lost))
    }
}

impl<E: SpanExporter> SpanExporter for LoggedExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(error) = &result {
            self.failed(spans, error);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_warn_once_a_minute_with_the_spans_lost_meanwhile() {
        let mut failures = Failures::default();
        let start = Instant::now();
        assert_eq!(
            failures.record(3, start),
            Some(3),
            "the first failure at once"
        );
        assert_eq!(failures.record(5, start + Duration::from_secs(1)), None);
        assert_eq!(failures.record(7, start + Duration::from_secs(59)), None);
        let later = start + WARN_EVERY;
        assert_eq!(failures.record(1, later), Some(13), "the lost spans add up");
        assert_eq!(failures.record(2, later + Duration::from_secs(30)), None);
    }
}
