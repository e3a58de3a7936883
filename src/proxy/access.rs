//! The access log: one line a request on the target `sluice::access` at
//! INFO, written when its response ends (so with the status sent and the
//! whole duration). Off unless switched on (README, "Logging"): then a
//! request pays one check of a flag tracing caches per call site, and
//! nothing is captured or allocated.

use crate::pods::Lease;
use http::header::{HeaderValue, HOST};
use http::{Method, Request, Uri};
use std::net::IpAddr;
use std::time::Duration;

/// What the line says of the request, captured when it arrives.
pub struct Access {
    method: Method,
    host: Option<HeaderValue>,
    uri: Uri,
    id: HeaderValue,
    client: IpAddr,
}

impl Access {
    /// The request's side of its line, if the access log is on.
    pub fn capture<B>(req: &Request<B>, id: &HeaderValue, client: IpAddr) -> Option<Box<Access>> {
        if !tracing::enabled!(target: "sluice::access", tracing::Level::INFO) {
            return None;
        }
        let host = (req.headers().get(HOST).cloned())
            .or_else(|| HeaderValue::from_str(req.uri().authority()?.as_str()).ok());
        Some(Box::new(Access {
            method: req.method().clone(),
            host,
            uri: req.uri().clone(),
            id: id.clone(),
            client,
        }))
    }

    /// Writes the line. `service` is `None` for a request no service took;
    /// `lease` is the pod's, when one served it.
    pub fn log(
        &self,
        service: Option<&str>,
        status: u16,
        duration: Duration,
        lease: Option<&Lease>,
    ) {
        let text = |value: &HeaderValue| String::from_utf8_lossy(value.as_bytes()).into_owned();
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let pod = lease.map(|lease| lease.pod().addr());
        let wait = |took: Option<Duration>| took.map_or(0.0, millis);
        tracing::info!(
            target: "sluice::access",
            method = %self.method,
            host = self.host.as_ref().map(text),
            path,
            status,
            duration_ms = millis(duration),
            service,
            pod,
            held_ms = wait(lease.and_then(Lease::held_for)),
            queued_ms = wait(lease.and_then(Lease::queued_for)),
            request_id = %text(&self.id),
            client = %self.client,
            "request"
        );
    }
}

/// Milliseconds, to the microsecond.
fn millis(duration: Duration) -> f64 {
    (duration.as_micros() as f64) / 1000.0
}
