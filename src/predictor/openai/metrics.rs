//! The engine's metrics under vLLM's names, so a scraper (or an autoscaler)
//! written for vLLM reads the stand-in unchanged. Every series carries
//! `model_name`, as vLLM's do.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use prometheus_text::CONTENT_TYPE;

/// vLLM's buckets for time to first token, in seconds.
const TTFT_BUCKETS: [f64; 17] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0,
];

/// What the engine reports; it alone writes them, as its state changes.
#[derive(Clone)]
pub struct EngineMetrics {
    pub running: Gauge,
    pub waiting: Gauge,
    pub kv_cache_usage: Gauge<f64, AtomicU64>,
    pub prompt_tokens: Counter,
    pub generation_tokens: Counter,
    pub request_success: Counter,
    pub time_to_first_token: Histogram,
}

/// The registry behind `GET /metrics`.
#[derive(Clone)]
pub struct Exposition {
    registry: Arc<Registry>,
}

// === impl EngineMetrics ===

impl EngineMetrics {
    /// The metrics of the model `model_name`, and their exposition.
    pub fn new(model_name: &str) -> (EngineMetrics, Exposition) {
        let label = ("model_name".into(), model_name.to_string().into());
        let mut registry = Registry::with_labels([label].into_iter());
        let metrics = EngineMetrics {
            running: Gauge::default(),
            waiting: Gauge::default(),
            kv_cache_usage: Gauge::default(),
            prompt_tokens: Counter::default(),
            generation_tokens: Counter::default(),
            request_success: Counter::default(),
            time_to_first_token: Histogram::new(TTFT_BUCKETS),
        };
        // The encoder ends each help text with a full stop.
        registry.register(
            "vllm:num_requests_running",
            "Number of requests in the batch (prefill or decode)",
            metrics.running.clone(),
        );
        registry.register(
            "vllm:num_requests_waiting",
            "Number of requests queued for a batch slot",
            metrics.waiting.clone(),
        );
        registry.register(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage, 0 to 1: tokens held by running requests over the KV capacity",
            metrics.kv_cache_usage.clone(),
        );
        // Counters are exposed with `_total` appended.
        registry.register(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed",
            metrics.prompt_tokens.clone(),
        );
        registry.register(
            "vllm:generation_tokens",
            "Number of generation tokens processed",
            metrics.generation_tokens.clone(),
        );
        registry.register(
            "vllm:request_success",
            "Count of successfully processed requests",
            metrics.request_success.clone(),
        );
        registry.register(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds (queueing included)",
            metrics.time_to_first_token.clone(),
        );
        let exposition = Exposition {
            registry: Arc::new(registry),
        };
        (metrics, exposition)
    }
}

// === impl Exposition ===

impl Exposition {
    /// Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_vllm_names_and_the_model() {
        let (metrics, exposition) = EngineMetrics::new("tiny");
        metrics.running.set(3);
        metrics.kv_cache_usage.set(0.25);
        metrics.prompt_tokens.inc_by(7);
        metrics.time_to_first_token.observe(0.03);
        let text = exposition.encode();
        for line in [
            "# TYPE vllm:num_requests_running gauge",
            "vllm:num_requests_running{model_name=\"tiny\"} 3",
            "vllm:num_requests_waiting{model_name=\"tiny\"} 0",
            "vllm:kv_cache_usage_perc{model_name=\"tiny\"} 0.25",
            "# TYPE vllm:prompt_tokens_total counter",
            "vllm:prompt_tokens_total{model_name=\"tiny\"} 7",
            "vllm:generation_tokens_total{model_name=\"tiny\"} 0",
            "vllm:request_success_total{model_name=\"tiny\"} 0",
            "# TYPE vllm:time_to_first_token_seconds histogram",
            "vllm:time_to_first_token_seconds_count{model_name=\"tiny\"} 1",
            "vllm:time_to_first_token_seconds_bucket{model_name=\"tiny\",le=\"0.04\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(text.contains("# HELP vllm:num_requests_waiting "), "{text}");
    }
}
