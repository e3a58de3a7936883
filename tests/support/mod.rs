//! Builders for integration tests: real upstream servers and a real gateway,
//! all on 127.0.0.1 port 0, and `eventually` instead of sleeps.
#![allow(dead_code)]

pub mod process;
pub mod upstream;

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

/// A YAML config with one service on static pods. `extra` is appended to
/// the service (indented by the caller as service keys).
pub fn one_service(pods: &[&Upstream], extra: &str) -> String {
    let pods: Vec<String> = pods.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    format!(
        r#"
listen: 127.0.0.1:0
admin: 127.0.0.1:0
services:
  - name: redwine-week4
    namespace: kserve-inference
    backend:
      static: [{}]
{extra}"#,
        pods.join(", ")
    )
}

pub const HOST: &str = "redwine-week4.kserve-inference.example.com";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// Waits for `check` to hold, polling, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A metric's value from Prometheus text, by exact series (name and labels).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Sends a request to the tutorial's service (its Host header).
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.header("host", HOST).send().await.unwrap()
}
