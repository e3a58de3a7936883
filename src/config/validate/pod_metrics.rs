//! A service's `podMetrics`, and `scaleMetric: queue`, which reads it.

use crate::config::ranges;
use crate::config::{PodMetrics, ScaleMetric, ServiceConfig};
use http::uri::PathAndQuery;

pub(super) fn validate_pod_metrics(at: &str, s: &ServiceConfig, problems: &mut Vec<String>) {
    let Some(m) = &s.pod_metrics else {
        if s.scale_metric == ScaleMetric::Queue {
            problems.push(format!(
                "{at}.scaleMetric: queue is what the model servers report, so it needs podMetrics"
            ));
        }
        return;
    };
    let field = |name: &str| format!("{at}.podMetrics.{name}");
    let (interval, stale_after) = (m.interval.0, m.stale_after.0);
    ranges::POD_METRICS_INTERVAL.check(&field("interval"), interval, problems);
    ranges::POD_METRICS_STALE_AFTER.check(&field("staleAfter"), stale_after, problems);
    if stale_after <= interval {
        problems.push(format!(
            "{}: must be longer than interval ({}), or every reading would be stale before the next",
            field("staleAfter"),
            humantime::format_duration(interval)
        ));
    }
    let timeout = m.timeout.map(|d| d.0);
    ranges::POD_METRICS_TIMEOUT.check_set(&field("timeout"), timeout, problems);
    if timeout.is_some_and(|t| t >= stale_after) {
        problems.push(format!(
            "{}: must be shorter than staleAfter ({}): a reading is dated when it is asked for, so a slower one is stale when it comes",
            field("timeout"),
            humantime::format_duration(stale_after)
        ));
    }
    // The replica's port is its sidecar's, which would count every read as
    // a request (taking a slot, queueing behind token streams, keeping the
    // replica from ever looking idle); the model's own port is a random one
    // only the sidecar knows.
    let behind_sidecar = s
        .backend
        .process
        .as_ref()
        .is_some_and(|p| p.sidecar.is_some());
    if behind_sidecar {
        problems.push(format!(
            "{at}.podMetrics: reads the model server itself, which backend.process.sidecar hides behind a sidecar; use one or the other"
        ));
    }
    ranges::PORT.check_set(&field("port"), m.port.map(u64::from), problems);
    if !m.path.starts_with('/') || m.path.parse::<PathAndQuery>().is_err() {
        problems.push(format!(
            "{}: {:?} must be a URL path starting with '/'",
            field("path"),
            m.path
        ));
    }
    check_names(&field("names"), m, problems);
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn check_names(at: &str, m: &PodMetrics, problems: &mut Vec<String>) {
    let o = &m.names;
    for (key, name) in [
        ("running", &o.running),
        ("waiting", &o.waiting),
        ("kvCacheUsage", &o.kv_cache_usage),
    ] {
        let Some(name) = name else { continue };
        let valid = name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
        if name.is_empty() || !valid {
            problems.push(format!(
                "{at}.{key}: {name:?} is not a Prometheus metric name (letters, digits, '_' and ':', not starting with a digit)"
            ));
        }
    }
}
