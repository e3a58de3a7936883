//! A service's `podMetrics`: where and how often sluice reads the model
//! servers' own load (a vLLM pod's queue and KV-cache use), for picking pods
//! by it and for `scaleMetric: queue`.
//!
//! Not to be confused with `podMetricsPort`, the admin port of sluice's own
//! sidecars, read once a second for `metrics: pods`: this reads the model
//! server itself, in Prometheus text, as the Gateway API Inference
//! Extension's endpoint picker does.

use super::Dur;
use serde::Deserialize;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodMetrics {
    /// Which server's metric names to read by default.
    #[serde(default)]
    pub format: PodMetricsFormat,
    /// Names that replace the format's, one by one (for TGI, SGLang, ...).
    #[serde(default)]
    pub names: MetricNameOverrides,
    #[serde(default = "default_path")]
    pub path: String,
    /// Unset: the port requests go to.
    #[serde(default)]
    pub port: Option<u16>,
    /// How often every pod is read. The endpoint picker's default is 50 ms:
    /// a queue changes with every request.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// A reading older than this is not used for picking.
    #[serde(default = "default_stale_after")]
    pub stale_after: Dur,
    /// Longest one read may take. Unset: the interval, so that reads never
    /// pile up behind a pod that does not answer.
    #[serde(default)]
    pub timeout: Option<Dur>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PodMetricsFormat {
    /// `vllm:num_requests_running`, `vllm:num_requests_waiting`,
    /// `vllm:kv_cache_usage_perc` (`vllm:gpu_cache_usage_perc` before v0.10).
    #[default]
    Vllm,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricNameOverrides {
    pub running: Option<String>,
    pub waiting: Option<String>,
    pub kv_cache_usage: Option<String>,
}

/// The metric names read, each with its fallbacks: the first one present
/// in a pod's answer is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricNames {
    pub running: Vec<String>,
    pub waiting: Vec<String>,
    pub kv_cache_usage: Vec<String>,
}

fn default_path() -> String {
    "/metrics".into()
}

fn default_interval() -> Dur {
    Dur(Duration::from_millis(50))
}

/// Ten missed reads at the default interval: one slow answer does not
/// switch picking back to sluice's own counts, a dead endpoint soon does.
fn default_stale_after() -> Dur {
    Dur(Duration::from_millis(500))
}

// === impl PodMetrics ===

impl PodMetrics {
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(self.interval).0
    }

    pub fn names(&self) -> MetricNames {
        let defaults = match self.format {
            PodMetricsFormat::Vllm => MetricNames {
                running: vec!["vllm:num_requests_running".into()],
                waiting: vec!["vllm:num_requests_waiting".into()],
                kv_cache_usage: vec![
                    "vllm:kv_cache_usage_perc".into(),
                    "vllm:gpu_cache_usage_perc".into(),
                ],
            },
        };
        let chosen = |set: &Option<String>, default: Vec<String>| match set {
            Some(name) => vec![name.clone()],
            None => default,
        };
        let o = &self.names;
        MetricNames {
            running: chosen(&o.running, defaults.running),
            waiting: chosen(&o.waiting, defaults.waiting),
            kv_cache_usage: chosen(&o.kv_cache_usage, defaults.kv_cache_usage),
        }
    }
}

impl Default for PodMetrics {
    /// What `podMetrics: {}` means.
    fn default() -> Self {
        PodMetrics {
            format: PodMetricsFormat::default(),
            names: MetricNameOverrides::default(),
            path: default_path(),
            port: None,
            interval: default_interval(),
            stale_after: default_stale_after(),
            timeout: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_names_fall_back_to_the_older_cache_gauge_and_overrides_replace_one_by_one() {
        let names = PodMetrics::default().names();
        assert_eq!(names.waiting, ["vllm:num_requests_waiting"]);
        assert_eq!(
            names.kv_cache_usage,
            ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]
        );
        let tgi = PodMetrics {
            names: MetricNameOverrides {
                waiting: Some("tgi_queue_size".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let names = tgi.names();
        assert_eq!(names.waiting, ["tgi_queue_size"]);
        assert_eq!(names.running, ["vllm:num_requests_running"]);
    }
}
