//! Builders for integration tests: real upstream servers and a real gateway,
//! all on 127.0.0.1 port 0, and `eventually` instead of sleeps.
#![allow(dead_code)]

pub mod cluster;
pub mod config;
pub mod fake_kube;
pub mod h2frames;
pub mod process;
pub mod upstream;
pub mod webhook;

#[allow(unused_imports)]
pub use self::config::{tutorial, ConfigBuilder};
#[allow(unused_imports)]
pub use self::upstream::{upstream, Upstream};

use sluice::config::Config;
use sluice::gateway::Gateway;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A gateway running in this process, on a config file in a temp dir.
pub struct TestGateway {
    pub gateway: Gateway,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    pub async fn start(yaml: &str) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("sluice.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        let config = Config::parse(yaml).unwrap_or_else(|e| panic!("test config: {e}"));
        let gateway = Gateway::start(config, Some(config_path.clone()))
            .await
            .unwrap();
        TestGateway {
            gateway,
            config_path,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.gateway.data_addr(), path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.gateway.admin_addr(), path)
    }
}

/// A config with the tutorial's service on these static pods. `extra` is
/// appended to the service (indented by the caller as service keys).
pub fn one_service(pods: &[&Upstream], extra: &str) -> String {
    let pods: Vec<_> = pods.iter().map(|u| u.addr).collect();
    ConfigBuilder::new()
        .service(tutorial(&pods).raw(extra))
        .yaml()
}

/// A sidecar's options for tests: loopback ports, this `upstream` and
/// `containerConcurrency`, and timeouts a test never waits out.
pub fn sidecar_options(
    upstream: std::net::SocketAddr,
    container_concurrency: usize,
) -> sluice::sidecar::SidecarOptions {
    sluice::sidecar::SidecarOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream,
        admin: "127.0.0.1:0".parse().unwrap(),
        container_concurrency,
        queue_depth: None,
        queue_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(30),
        readiness_path: "/ready".into(),
        drain_period: Duration::from_millis(500),
        drain_timeout: Duration::from_secs(10),
        workers: 2,
        protocol: sluice::config::UpstreamProtocol::Http1,
        tracing: Default::default(),
    }
}

pub const HOST: &str = "redwine-week4.kserve-inference.example.com";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// Polls `attempt` until it gives `Ok`, for at most `within`; on timeout the
/// panic says `what` and the last `Err` (what was seen instead).
pub async fn poll_until<T, F, Fut>(within: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out waiting for: {what} (last seen: {seen})")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Waits for `check` to hold, polling, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(within, what, || {
        let fut = check();
        async move { fut.await.then_some(()).ok_or_else(String::new) }
    })
    .await
}

/// Runs `check`, which asserts, every `every` until `until`: for what must
/// *not* happen. This takes real time on purpose: what is checked is a real
/// gateway (its own timers, its talk with a real or fake server over the
/// network), which paused tokio time would not hold still.
pub async fn holds_until<F, Fut>(until: Instant, every: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    while Instant::now() < until {
        check().await;
        tokio::time::sleep(every).await;
    }
}

/// Waits for a child process to exit, for at most `within`.
pub async fn wait_for_exit(
    child: &mut std::process::Child,
    within: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A GET's body as text.
pub async fn get_text(url: String) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A GET's body as JSON.
pub async fn get_json(url: String) -> serde_json::Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Whether a tool the test command installs is here. Under CI a missing
/// tool fails the test; elsewhere the test says it skipped.
pub fn have_tool(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is missing under CI"
        );
        eprintln!("SKIPPED: {tool} is not installed (tests/run.sh installs it)");
    }
    found
}

/// A metric's value from Prometheus text, by exact series (name and labels).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Sends a request to the tutorial's service (its Host header), unless the
/// request names a host of its own: one Host header either way, as HTTP/1.1
/// requires.
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    let (client, request) = request.build_split();
    let mut request = request.unwrap();
    if !request.headers().contains_key("host") {
        let host = reqwest::header::HeaderValue::from_static(HOST);
        request.headers_mut().insert("host", host);
    }
    client.execute(request).await.unwrap()
}
