//! The `tracing` section: an endpoint sluice can post to, a ratio that is one.

use crate::config::{ranges, TracingSettings};
use http::Uri;

pub(super) fn validate_tracing(tracing: &TracingSettings, problems: &mut Vec<String>) {
    let Some(otlp) = &tracing.otlp else {
        return;
    };
    if let Err(problem) = check_endpoint(&otlp.endpoint) {
        problems.push(format!(
            "tracing.otlp.endpoint: {:?} {problem}",
            otlp.endpoint
        ));
    }
    ranges::SAMPLING_RATIO.check("tracing.otlp.samplingRatio", otlp.sampling_ratio, problems);
    if otlp.service_name.trim().is_empty() || otlp.service_name.len() > 255 {
        problems
            .push("tracing.otlp.serviceName: must be 1 to 255 characters, not blank".to_string());
    }
}

/// An absolute `http://` URL with a host: where the exporter posts spans.
fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|_| "is not a URL; write e.g. http://otel-collector:4318/v1/traces")?;
    match uri.scheme_str() {
        Some("http") => {}
        // The blocking client the exporter runs on is built without TLS:
        // send to a collector on the node or in the cluster.
        Some("https") => return Err("uses https, which sluice does not send to; use an http:// collector (e.g. an OpenTelemetry Collector beside sluice)"),
        _ => return Err("must start with http://, e.g. http://otel-collector:4318/v1/traces"),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err("has no host"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OtlpSettings;

    fn problems(otlp: OtlpSettings) -> Vec<String> {
        let mut problems = Vec::new();
        let tracing = TracingSettings { otlp: Some(otlp) };
        validate_tracing(&tracing, &mut problems);
        problems
    }

    #[test]
    fn a_collector_url_and_a_ratio_in_range_pass() {
        assert!(problems(OtlpSettings::new("http://127.0.0.1:4318/v1/traces")).is_empty());
        let mut never = OtlpSettings::new("http://otel-collector.observability:4318");
        never.sampling_ratio = 0.0;
        assert!(problems(never).is_empty());
    }

    #[test]
    fn bad_endpoints_and_ratios_are_named() {
        for (endpoint, says) in [
            ("otel-collector:4318", "must start with http://"),
            ("not a url", "is not a URL"),
            ("https://collector:4318", "uses https"),
            ("ftp://collector/", "must start with http://"),
            ("", "is not a URL"),
        ] {
            let found = problems(OtlpSettings::new(endpoint));
            assert_eq!(found.len(), 1, "{endpoint}: {found:?}");
            assert!(
                found[0].starts_with("tracing.otlp.endpoint: ") && found[0].contains(says),
                "{endpoint}: {found:?}"
            );
        }
        for ratio in [-0.1, 1.5, f64::NAN] {
            let mut otlp = OtlpSettings::new("http://127.0.0.1:4318");
            otlp.sampling_ratio = ratio;
            let found = problems(otlp);
            assert_eq!(
                found,
                [format!(
                    "tracing.otlp.samplingRatio: must be between 0 and 1, got {ratio}"
                )]
            );
        }
    }

    #[test]
    fn an_endpoint_without_a_path_gets_the_traces_path() {
        let url = |endpoint: &str| OtlpSettings::new(endpoint).traces_url();
        assert_eq!(url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            url("http://c:4318/otlp/v1/traces"),
            "http://c:4318/otlp/v1/traces"
        );
    }
}
