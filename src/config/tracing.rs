//! The `tracing` section: where sluice sends the spans of the requests it
//! serves (OpenTelemetry, OTLP). Absent: no spans, and trace headers pass
//! through untouched.

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TracingSettings {
    /// Export to an OTLP receiver (an OpenTelemetry Collector, Jaeger, Tempo).
    #[serde(default)]
    pub otlp: Option<OtlpSettings>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OtlpSettings {
    /// `http://host:4318/v1/traces`; a URL without a path gets `/v1/traces`.
    pub endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// The share of new traces recorded, 0 to 1. A request whose caller
    /// decided (a `traceparent` with its sampled flag) follows the caller.
    #[serde(default = "default_sampling_ratio")]
    pub sampling_ratio: f64,
    /// The `service.name` of sluice's spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

/// How spans are sent. OTLP/HTTP with protobuf bodies: what every receiver
/// accepts on port 4318, and what the SDK sends from its own thread without
/// a runtime of ours.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf", alias = "http")]
    HttpProtobuf,
}

/// Every new trace is recorded, as Knative does once a tracing backend is
/// set: a user who sets an endpoint wants to see spans; lower it under load.
fn default_sampling_ratio() -> f64 {
    1.0
}

fn default_service_name() -> String {
    "sluice".into()
}

impl OtlpSettings {
    /// Settings for `endpoint` with every default.
    pub fn new(endpoint: &str) -> Self {
        OtlpSettings {
            endpoint: endpoint.into(),
            protocol: OtlpProtocol::default(),
            sampling_ratio: default_sampling_ratio(),
            service_name: default_service_name(),
        }
    }

    /// The URL spans are posted to.
    pub fn traces_url(&self) -> String {
        match self.endpoint.parse::<http::Uri>() {
            Ok(uri) if matches!(uri.path(), "" | "/") && uri.query().is_none() => {
                format!("{}/v1/traces", self.endpoint.trim_end_matches('/'))
            }
            _ => self.endpoint.clone(),
        }
    }
}
