//! The command line: `sluice gateway`, `sluice check`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A concurrency-aware reverse proxy, activator and autoscaler for model serving"
)]
pub struct Cli {
    /// Log filter, e.g. `info`, `debug`, `sluice=debug,kube_client=info`
    /// [default: RUST_LOG if set, else info].
    #[arg(long, env = "SLUICE_LOG", global = true)]
    pub log: Option<String>,
    /// Log lines as text, or as one JSON object each (for log collectors).
    #[arg(
        long,
        env = "SLUICE_LOG_FORMAT",
        value_enum,
        default_value_t,
        global = true
    )]
    pub log_format: crate::logging::LogFormat,
    /// Log each request on the target `sluice::access` (at INFO).
    #[arg(long, env = "SLUICE_ACCESS_LOG", global = true,
          value_parser = clap::builder::FalseyValueParser::new())]
    pub access_log: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the ingress gateway: route by Host, balance, queue, reload on change.
    Gateway {
        /// The configuration file (YAML).
        #[arg(long, short, env = "SLUICE_CONFIG")]
        config: PathBuf,
    },
    /// The per-pod proxy: concurrency limit, load reports, probes, drain.
    Sidecar(SidecarArgs),
    /// A mutating admission webhook that injects the sidecar into opted-in pods.
    Webhook(WebhookArgs),
    /// A stand-in model server (KServe v1 and v2, or OpenAI's API with
    /// `--openai`) for demos and tests.
    Predictor(PredictorArgs),
    /// Show the services (like `kubectl get isvc`) or their replicas (`--pods`).
    Status {
        /// The gateway's admin address.
        #[arg(long, env = "SLUICE_ADMIN", default_value = "127.0.0.1:9091")]
        admin: String,
        /// List replicas instead of services.
        #[arg(long)]
        pods: bool,
        /// Keep the table on screen, refreshed every `--interval`, until Ctrl-C.
        #[arg(long, short)]
        watch: bool,
        /// How often `--watch` refreshes (at least 100ms).
        #[arg(long, default_value = "1s", value_parser = watch_interval, requires = "watch")]
        interval: std::time::Duration,
    },
    /// Validate a configuration file and print every problem found.
    Check {
        /// The configuration file (YAML).
        #[arg(long, short, env = "SLUICE_CONFIG")]
        config: PathBuf,
    },
}

impl Cli {
    /// What the flags and the environment (`RUST_LOG` too) ask of the log.
    pub fn log_settings(&self) -> crate::logging::LogSettings {
        crate::logging::LogSettings {
            filter: self.log.clone(),
            rust_log: std::env::var("RUST_LOG").ok(),
            format: self.log_format,
            access_log: self.access_log,
        }
    }
}

impl Command {
    /// Whether the command runs a server (which then wants every file
    /// descriptor it may have).
    pub fn serves(&self) -> bool {
        match self {
            Command::Gateway { .. }
            | Command::Sidecar(_)
            | Command::Webhook(_)
            | Command::Predictor(_) => true,
            Command::Status { .. } | Command::Check { .. } => false,
        }
    }
}

/// `--interval`: a duration of at least 100ms.
fn watch_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < std::time::Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    Ok(interval)
}

#[derive(Debug, clap::Args)]
pub struct PredictorArgs {
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "SLUICE_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "SLUICE_BIND", default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// The model's name, as in /v1/models/<name>.
    #[arg(long, env = "SLUICE_MODEL_NAME", default_value = "redwine-week4")]
    pub model_name: String,
    /// Time each prediction takes, to mimic a real model (e.g. 50ms).
    #[arg(long, env = "SLUICE_SERVICE_TIME", default_value = "0ms", value_parser = humantime::parse_duration)]
    pub service_time: std::time::Duration,
    /// Predictions computed at once; the rest wait.
    #[arg(long, env = "SLUICE_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Time before the model reports ready, to mimic a slow-loading model.
    #[arg(long, env = "SLUICE_STARTUP_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub startup_delay: std::time::Duration,
    /// Be a stand-in language model: vLLM's OpenAI-compatible API
    /// (/v1/chat/completions, /v1/completions, /v1/models, /health,
    /// /metrics) instead of KServe's.
    #[arg(long, env = "SLUICE_OPENAI",
          value_parser = clap::builder::FalseyValueParser::new())]
    pub openai: bool,
    /// With --openai: other names a request's `model` may give (repeat, or
    /// separate with commas).
    #[arg(
        long,
        env = "SLUICE_MODEL_ALIAS",
        value_delimiter = ',',
        requires = "openai"
    )]
    pub model_alias: Vec<String>,
    /// With --openai: sequences decoded together; the rest wait in turn.
    #[arg(long, env = "SLUICE_BATCH_SIZE", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=100_000), requires = "openai")]
    pub batch_size: u32,
    /// With --openai: prefill, from a sequence's admission to its first token.
    #[arg(long, env = "SLUICE_TIME_TO_FIRST_TOKEN", default_value = "50ms",
          value_parser = humantime::parse_duration, requires = "openai")]
    pub time_to_first_token: std::time::Duration,
    /// With --openai: tokens each running sequence gets per second.
    #[arg(long, env = "SLUICE_TOKENS_PER_SECOND", default_value_t = 50.0,
          value_parser = tokens_per_second, requires = "openai")]
    pub tokens_per_second: f64,
    /// With --openai: tokens the KV cache holds; vllm:kv_cache_usage_perc is
    /// the share the running sequences' prompts and outputs take.
    #[arg(long, env = "SLUICE_KV_CACHE_TOKENS", default_value_t = 16384,
          value_parser = clap::value_parser!(u64).range(1..), requires = "openai")]
    pub kv_cache_tokens: u64,
}

/// `--tokens-per-second`: a pace a clock can keep, from 0.01 to 100000.
fn tokens_per_second(text: &str) -> Result<f64, String> {
    let pace: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if !(0.01..=100_000.0).contains(&pace) {
        return Err("must be between 0.01 and 100000".into());
    }
    Ok(pace)
}

#[derive(Debug, clap::Args)]
pub struct SidecarArgs {
    /// Where traffic for the pod arrives.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:8012")]
    pub listen: std::net::SocketAddr,
    /// The model container.
    #[arg(long, env = "SLUICE_UPSTREAM", default_value = "127.0.0.1:8080")]
    pub upstream: std::net::SocketAddr,
    /// /metrics, /healthz, /readyz, /stats.
    #[arg(long, env = "SLUICE_ADMIN", default_value = "0.0.0.0:9091")]
    pub admin: std::net::SocketAddr,
    /// Most requests at the model at once; 0 = unlimited.
    #[arg(long, env = "SLUICE_CONTAINER_CONCURRENCY", default_value_t = 0)]
    pub container_concurrency: usize,
    /// Requests that may wait for a slot [default: 10 x containerConcurrency, at least 10].
    #[arg(long, env = "SLUICE_QUEUE_DEPTH")]
    pub queue_depth: Option<usize>,
    /// Longest wait for a slot; past it, 503.
    #[arg(long, env = "SLUICE_QUEUE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub queue_timeout: std::time::Duration,
    /// Longest wait for the model's response headers; past it, 504.
    #[arg(long, env = "SLUICE_REQUEST_TIMEOUT", default_value = "300s", value_parser = humantime::parse_duration)]
    pub request_timeout: std::time::Duration,
    /// The model's readiness check (GET; 200 means ready).
    #[arg(long, env = "SLUICE_READINESS_PATH", default_value = "/")]
    pub readiness_path: String,
    /// On SIGTERM: exit once no request arrived for this long and none is in flight.
    #[arg(long, env = "SLUICE_DRAIN_PERIOD", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_period: std::time::Duration,
    /// On SIGTERM: exit after this long, whatever is in flight.
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT", default_value = "300s", value_parser = humantime::parse_duration)]
    pub drain_timeout: std::time::Duration,
    /// Threads serving the data port. One carries tens of thousands of
    /// requests a second, more than one model container answers.
    #[arg(long, env = "SLUICE_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// How the model container is spoken to: http1, or h2c (HTTP/2 with
    /// prior knowledge, for gRPC model servers).
    #[arg(long, env = "SLUICE_UPSTREAM_PROTOCOL", default_value = "http1", value_parser = ["http1", "h2c"])]
    pub upstream_protocol: String,
    /// Export request spans to this OTLP/HTTP receiver (e.g.
    /// http://otel-collector:4318/v1/traces); unset: no spans.
    #[arg(long, env = "SLUICE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// With --otlp-endpoint: the share of new traces recorded, 0 to 1.
    #[arg(long, env = "SLUICE_OTLP_SAMPLING_RATIO", default_value_t = 1.0)]
    pub otlp_sampling_ratio: f64,
    /// With --otlp-endpoint: the spans' service.name.
    #[arg(
        long,
        env = "SLUICE_OTLP_SERVICE_NAME",
        default_value = "sluice-sidecar"
    )]
    pub otlp_service_name: String,
}

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// HTTPS listener for the API server's admission requests.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain.
    #[arg(long, env = "SLUICE_TLS_CERT")]
    pub tls_cert: std::path::PathBuf,
    /// PEM private key.
    #[arg(long, env = "SLUICE_TLS_KEY")]
    pub tls_key: std::path::PathBuf,
    /// The image of the injected sidecar (sluice itself).
    #[arg(long, env = "SLUICE_SIDECAR_IMAGE")]
    pub sidecar_image: String,
    /// The sidecar's traffic port in the pod.
    #[arg(long, env = "SLUICE_SIDECAR_PORT", default_value_t = 8012)]
    pub sidecar_port: u16,
    /// The sidecar's admin port (probes, /stats, /metrics).
    #[arg(long, env = "SLUICE_SIDECAR_ADMIN_PORT", default_value_t = 9091)]
    pub sidecar_admin_port: u16,
    /// Seconds the sidecar keeps serving after the pod is told to stop (preStop).
    #[arg(long, env = "SLUICE_PRE_STOP_SECONDS", default_value_t = 5)]
    pub pre_stop_seconds: u32,
    /// Longest time from accepting a connection to the end of its TLS handshake.
    #[arg(long, env = "SLUICE_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_handshake_timeout: std::time::Duration,
}
