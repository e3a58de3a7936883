//! The typed shape of the configuration file. Every struct rejects unknown fields.

use super::{ByteSize, KubernetesBackend, KubernetesSettings, PodMetrics, TracingSettings};
use serde::{de, Deserialize, Deserializer};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The data plane listener.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// The admin listener: /metrics /healthz /readyz /status.
    #[serde(default = "defaults::admin")]
    pub admin: SocketAddr,
    /// The default host of a service is `<name>.<namespace>.<domain>`.
    #[serde(default = "defaults::domain")]
    pub domain: String,
    #[serde(default)]
    pub autoscaler: AutoscalerDefaults,
    #[serde(default)]
    pub gateway: GatewaySettings,
    #[serde(default)]
    pub kubernetes: KubernetesSettings,
    /// Trace export. Read at start.
    #[serde(default)]
    pub tracing: TracingSettings,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// TLS on the data listener. Unset: plain HTTP (and h2c).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
}

/// The data listener's certificate. Read at start; the files are then
/// re-read when they change, but a reload that changes these keys takes
/// effect on restart.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsSettings {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
    /// From accept to the end of the TLS handshake.
    #[serde(default = "defaults::tls_handshake_timeout")]
    pub handshake_timeout: Dur,
    /// How often the two files are read to see if they changed.
    #[serde(default = "defaults::tls_poll_interval")]
    pub poll_interval: Dur,
}

/// Knative KPA settings; every key may be overridden per service.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AutoscalerDefaults {
    /// How often a scaling decision is made (load is sampled every second).
    pub tick_interval: Dur,
    pub stable_window: Dur,
    pub panic_window_percentage: f64,
    pub panic_threshold_percentage: f64,
    pub target_utilization: f64,
    pub scale_to_zero_grace_period: Dur,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    /// Knative's scale-down-delay: a count is held this long after it was
    /// last wanted (the most wanted over this window).
    pub scale_down_delay: Dur,
    /// Knative's initial-scale: replicas sluice starts with (at least
    /// minReplicas); `0` only when written.
    pub initial_scale: u32,
    /// Knative's activation-scale: replicas started at once from zero.
    pub activation_scale: u32,
    /// Knative's scale-to-zero-pod-retention-period: the last replica is
    /// kept at least this long after the decision to go to zero.
    pub scale_to_zero_pod_retention_period: Dur,
}

/// How the gateway treats requests: limits and timeouts. Reloadable.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GatewaySettings {
    /// Time from sending a request upstream to its response headers; past it, 504.
    pub request_timeout: Dur,
    /// Time to open a TCP connection to a pod; past it, 502.
    pub connect_timeout: Dur,
    /// Pooled upstream connections idle longer than this are closed. Kept
    /// shorter than common model-server keep-alives (uvicorn's is 5s) so
    /// sluice never reuses a connection the pod is about to close.
    pub upstream_idle_timeout: Dur,
    /// Most requests a service may queue (containerConcurrency reached, or no
    /// pod ready); beyond it, 503 at once.
    pub queue_depth: usize,
    /// Longest a request waits in the queue; past it, 503 with Retry-After.
    pub queue_timeout: Dur,
    /// Longest a request is held while its service has no pod (scaled to
    /// zero, or not yet started); past it, 503. Unset: the request timeout.
    pub activation_timeout: Option<Dur>,
    /// Largest request body accepted; 0 means unlimited. Past it, 413.
    pub max_request_body_size: ByteSize,
    /// Largest total size of request header names and values; past it, 431.
    pub max_header_size: ByteSize,
    /// Most header lines a request may have; past it, 431. Requests with
    /// more than twice as many are refused by the HTTP parser itself (431,
    /// no body) before sluice sees them.
    pub max_header_count: usize,
    /// How much of an OpenAI-style request body (`/v1/chat/completions`
    /// and the like) is read to find its `model` when the Host names no
    /// service; a body that names none within it gets 413.
    pub model_peek_limit: ByteSize,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace_period: Dur,
    /// Timeouts and the bound of client connections. Read at start: a
    /// reload that changes them takes effect on restart.
    pub connections: ConnectionSettings,
}

/// A client connection's timeouts, phase by phase, and how many may be
/// open at once. No phase waits forever on a peer that says nothing.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ConnectionSettings {
    /// From accept to the client's first byte.
    pub first_byte_timeout: Dur,
    /// From the first byte of a request head to its end (HTTP/1); from the
    /// first byte of a connection to its first request (HTTP/2: the preface,
    /// settings and first stream's headers).
    pub header_read_timeout: Dur,
    /// Between requests: from the end of the last response, with no request
    /// in flight, to the next request's first byte (HTTP/1) or stream (HTTP/2).
    pub idle_timeout: Dur,
    /// HTTP/2: sluice sends a PING after this long without a frame from
    /// the client, busy or idle, to find peers that went away.
    pub http2_keep_alive_interval: Dur,
    /// HTTP/2: a PING unanswered this long closes the connection. Also how
    /// long a peer has to finish closing once sluice has begun to close.
    pub http2_keep_alive_timeout: Dur,
    /// Most connections open at once on the data listener; at the limit,
    /// new ones wait in the listen backlog. Unset: 10 000, or fewer if the
    /// open file limit cannot hold that many.
    pub max_connections: Option<usize>,
    /// Threads that serve the data listener, each with its own event loop
    /// and its own socket on the port (SO_REUSEPORT), like nginx's worker
    /// processes. Unset: one per core the process may use.
    pub workers: Option<usize>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceConfig {
    pub name: String,
    #[serde(default = "defaults::namespace")]
    pub namespace: String,
    /// Host names beyond `<name>.<namespace>.<domain>`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Names beside `name` by which a request's body (OpenAI's `model`) or
    /// path may name this service's model.
    #[serde(default)]
    pub model_aliases: Vec<String>,
    #[serde(default = "defaults::min_replicas")]
    pub min_replicas: u32,
    /// Unset means `max(minReplicas, 1)`, as KServe does.
    #[serde(default)]
    pub max_replicas: Option<u32>,
    #[serde(default = "defaults::scale_target")]
    pub scale_target: f64,
    #[serde(default)]
    pub scale_metric: ScaleMetric,
    /// 0 = unlimited; else the hard per-pod limit of requests in flight.
    #[serde(default)]
    pub container_concurrency: usize,
    /// Where the autoscaler reads the load: this gateway's own counts, or
    /// the pods' sidecars (which see the traffic of every gateway).
    #[serde(default)]
    pub metrics: MetricsSource,
    /// With `metrics: pods` and a static or kubernetes backend: the
    /// sidecars' admin port.
    #[serde(default = "defaults::pod_metrics_port")]
    pub pod_metrics_port: u16,
    /// The model servers' own metrics (vLLM's queue and KV cache), read
    /// from every pod for picking and for `scaleMetric: queue`. Unrelated
    /// to `podMetricsPort`, which is for sluice's sidecars.
    #[serde(default)]
    pub pod_metrics: Option<PodMetrics>,
    /// How the pods are spoken to: HTTP/1.1, or HTTP/2 with prior knowledge
    /// (`h2c`, Knative's port name for it; gRPC model servers need it).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    pub backend: Backend,

    // Per-service overrides of the gateway settings.
    #[serde(default)]
    pub request_timeout: Option<Dur>,
    #[serde(default)]
    pub queue_depth: Option<usize>,
    #[serde(default)]
    pub queue_timeout: Option<Dur>,
    #[serde(default)]
    pub activation_timeout: Option<Dur>,

    // Per-service overrides of the autoscaler defaults.
    #[serde(default)]
    pub stable_window: Option<Dur>,
    #[serde(default)]
    pub panic_window_percentage: Option<f64>,
    #[serde(default)]
    pub panic_threshold_percentage: Option<f64>,
    #[serde(default)]
    pub target_utilization: Option<f64>,
    #[serde(default)]
    pub scale_to_zero_grace_period: Option<Dur>,
    #[serde(default)]
    pub max_scale_up_rate: Option<f64>,
    #[serde(default)]
    pub max_scale_down_rate: Option<f64>,
    #[serde(default)]
    pub scale_down_delay: Option<Dur>,
    #[serde(default)]
    pub initial_scale: Option<u32>,
    #[serde(default)]
    pub activation_scale: Option<u32>,
    #[serde(default)]
    pub scale_to_zero_pod_retention_period: Option<Dur>,

    /// What sluice could not honour of what it was given (an
    /// InferenceService's annotations): shown in `/status`, never read
    /// from the file.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricsSource {
    #[default]
    Gateway,
    Pods,
}

/// The protocol sluice speaks to a service's pods.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1, one request at a time per connection, connections pooled.
    #[default]
    Http1,
    /// HTTP/2 without TLS, with prior knowledge: requests multiplexed as
    /// streams over one connection per pod and worker thread.
    H2c,
}

impl UpstreamProtocol {
    /// Knative's and KServe's port names: `h2c` means HTTP/2, anything else HTTP/1.1.
    pub fn from_port_name(name: Option<&str>) -> Self {
        match name {
            Some("h2c") => UpstreamProtocol::H2c,
            _ => UpstreamProtocol::Http1,
        }
    }

    /// `http1` or `h2c`, as the configuration and the sidecar's flag write it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "http1" => Some(UpstreamProtocol::Http1),
            "h2c" => Some(UpstreamProtocol::H2c),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2c => "h2c",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScaleMetric {
    #[default]
    Concurrency,
    Rps,
    /// Requests at the model servers, running and waiting, as they report
    /// them (`podMetrics`).
    Queue,
}

/// Where the pods of a service come from. Exactly one kind must be given.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// A fixed list of pod addresses (`host:port`). No scaling.
    #[serde(default, rename = "static")]
    pub static_pods: Option<Vec<String>>,
    /// Local child processes started and stopped by sluice.
    #[serde(default)]
    pub process: Option<ProcessBackend>,
    /// A Deployment's pods, scaled through its `scale` subresource.
    #[serde(default)]
    pub kubernetes: Option<KubernetesBackend>,
}

/// Replicas as local processes. In `command`, `{port}` is the replica's
/// port, `{sluice}` this sluice executable, `{name}` and `{namespace}` the
/// service's.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProcessBackend {
    pub command: Vec<String>,
    /// Polled until it answers 200; only then does the replica get requests.
    #[serde(default = "defaults::readiness_path")]
    pub readiness_path: String,
    /// Extra environment for the replicas (`PORT` is always set).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// A replica not ready this long after starting is restarted.
    #[serde(default = "defaults::startup_timeout")]
    pub startup_timeout: Dur,
    /// Between SIGTERM and SIGKILL when a replica stops.
    #[serde(default = "defaults::stop_grace_period")]
    pub stop_grace_period: Dur,
    /// Starts a `sluice sidecar` in front of each replica (`sidecar: {}`).
    #[serde(default)]
    pub sidecar: Option<ProcessSidecar>,
}

/// A sidecar in front of each local replica: it enforces containerConcurrency
/// in the replica and reports its load (for `metrics: pods`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProcessSidecar {
    /// The sluice executable to run as the sidecar; unset: this one.
    #[serde(default)]
    pub executable: Option<String>,
}

/// A duration written as `60s`, `500ms`, `2m` or `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map(Dur).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. 60s or 500ms"
            ))
        })
    }
}

impl ServiceConfig {
    /// The service's own host: `<name>.<namespace>.<domain>`.
    pub fn default_host(&self, domain: &str) -> String {
        format!("{}.{}.{}", self.name, self.namespace, domain)
    }

    pub fn max_replicas(&self) -> u32 {
        self.max_replicas.unwrap_or(self.min_replicas.max(1))
    }
}

impl Default for AutoscalerDefaults {
    fn default() -> Self {
        AutoscalerDefaults {
            tick_interval: Dur(Duration::from_secs(2)),
            stable_window: Dur(Duration::from_secs(60)),
            panic_window_percentage: 10.0,
            panic_threshold_percentage: 200.0,
            target_utilization: 1.0,
            scale_to_zero_grace_period: Dur(Duration::from_secs(30)),
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            scale_down_delay: Dur(Duration::ZERO),
            initial_scale: 1,
            activation_scale: 1,
            scale_to_zero_pod_retention_period: Dur(Duration::ZERO),
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            // Knative's default revision timeout.
            request_timeout: Dur(Duration::from_secs(300)),
            connect_timeout: Dur(Duration::from_secs(2)),
            upstream_idle_timeout: Dur(Duration::from_secs(4)),
            queue_depth: 10_000,
            queue_timeout: Dur(Duration::from_secs(30)),
            activation_timeout: None,
            max_request_body_size: ByteSize(0),
            max_header_size: ByteSize(64 << 10),
            // Envoy's default; hyper's parser stops at 100 too.
            max_header_count: 100,
            // The OpenAI SDKs write `messages` before `model`, so the
            // model comes after the prompt: room for a long one.
            model_peek_limit: ByteSize(1 << 20),
            shutdown_grace_period: Dur(Duration::from_secs(30)),
            connections: ConnectionSettings::default(),
        }
    }
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            first_byte_timeout: Dur(Duration::from_secs(10)),
            // hyper's own default for HTTP/1 headers.
            header_read_timeout: Dur(Duration::from_secs(30)),
            idle_timeout: Dur(Duration::from_secs(60)),
            http2_keep_alive_interval: Dur(Duration::from_secs(30)),
            // hyper's (and gRPC's) default.
            http2_keep_alive_timeout: Dur(Duration::from_secs(20)),
            max_connections: None,
            workers: None,
        }
    }
}

impl Default for Config {
    /// What an empty file means.
    fn default() -> Self {
        Config {
            listen: defaults::listen(),
            admin: defaults::admin(),
            domain: defaults::domain(),
            autoscaler: AutoscalerDefaults::default(),
            gateway: GatewaySettings::default(),
            kubernetes: KubernetesSettings::default(),
            tracing: TracingSettings::default(),
            services: Vec::new(),
            tls: None,
        }
    }
}

impl ServiceConfig {
    /// A service as a file with only these three keys would give it.
    pub fn new(name: &str, namespace: &str, backend: Backend) -> Self {
        ServiceConfig {
            name: name.into(),
            namespace: namespace.into(),
            hosts: Vec::new(),
            model_aliases: Vec::new(),
            min_replicas: defaults::min_replicas(),
            max_replicas: None,
            scale_target: defaults::scale_target(),
            scale_metric: ScaleMetric::default(),
            container_concurrency: 0,
            metrics: MetricsSource::default(),
            pod_metrics_port: defaults::pod_metrics_port(),
            pod_metrics: None,
            protocol: UpstreamProtocol::default(),
            backend,
            request_timeout: None,
            queue_depth: None,
            queue_timeout: None,
            activation_timeout: None,
            stable_window: None,
            panic_window_percentage: None,
            panic_threshold_percentage: None,
            target_utilization: None,
            scale_to_zero_grace_period: None,
            max_scale_up_rate: None,
            max_scale_down_rate: None,
            scale_down_delay: None,
            initial_scale: None,
            activation_scale: None,
            scale_to_zero_pod_retention_period: None,
            warnings: Vec::new(),
        }
    }
}

mod defaults {
    use super::Dur;
    use std::net::SocketAddr;

    pub fn listen() -> SocketAddr {
        ([127, 0, 0, 1], 30200).into()
    }
    pub fn admin() -> SocketAddr {
        ([127, 0, 0, 1], 9091).into()
    }
    pub fn domain() -> String {
        "example.com".into()
    }
    pub fn namespace() -> String {
        "default".into()
    }
    pub fn min_replicas() -> u32 {
        1
    }
    pub fn scale_target() -> f64 {
        1.0
    }
    pub fn pod_metrics_port() -> u16 {
        9091
    }
    pub fn readiness_path() -> String {
        "/".into()
    }
    pub fn startup_timeout() -> Dur {
        Dur(std::time::Duration::from_secs(120))
    }
    pub fn stop_grace_period() -> Dur {
        Dur(std::time::Duration::from_secs(10))
    }
    pub fn tls_handshake_timeout() -> Dur {
        Dur(std::time::Duration::from_secs(10))
    }
    pub fn tls_poll_interval() -> Dur {
        Dur(std::time::Duration::from_secs(5))
    }
}
