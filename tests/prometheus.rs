//! A real Prometheus server scraping a real gateway and sidecar, and the
//! shipped alert rules and dashboard checked against the metrics sluice
//! really exposes.

mod support;

use sluice::sidecar::{Sidecar, SidecarOptions};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn query(c: &reqwest::Client, base: &str, promql: &str) -> Option<f64> {
    let r = c
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = r.json().await.ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_gateway_and_a_sidecar() {
    if !have_tool("prometheus") {
        return;
    }
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    let sidecar = Sidecar::start(SidecarOptions {
        queue_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        drain_period: Duration::ZERO,
        drain_timeout: Duration::from_secs(5),
        workers: 1,
        ..sidecar_options(pod.addr, 1)
    })
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: gateway\n    static_configs: [{{ targets: [\"{}\"] }}]\n  - job_name: sidecar\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
            gw.gateway.admin_addr(),
            sidecar.admin_addr
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");

    let c = client();
    for _ in 0..25 {
        assert_eq!(send(c.get(gw.url("/"))).await.status(), 200);
    }
    for _ in 0..10 {
        let r = c
            .get(format!("http://{}/", sidecar.data_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let not_found = c
        .get(gw.url("/"))
        .header("host", "nowhere.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(not_found.status(), 404);

    // What Prometheus scraped equals what was sent.
    let expectations = [
        ("up{job=\"gateway\"}", 1.0),
        ("up{job=\"sidecar\"}", 1.0),
        (
            "sum(sluice_requests_total{job=\"gateway\",service=\"redwine-week4\",code=\"200\"})",
            25.0,
        ),
        (
            "sum(sluice_requests_total{job=\"sidecar\",code=\"200\"})",
            10.0,
        ),
        (
            "sluice_request_duration_seconds_count{job=\"gateway\"}",
            25.0,
        ),
        ("sluice_unrouted_requests_total{job=\"gateway\"}", 1.0),
        ("sluice_ready_replicas{job=\"gateway\"}", 1.0),
        ("sluice_in_flight_requests{job=\"sidecar\"}", 0.0),
    ];
    for (promql, want) in expectations {
        eventually(Duration::from_secs(30), promql, || async {
            query(&c, &base, promql).await == Some(want)
        })
        .await;
    }
    sidecar.drain(Duration::from_secs(5)).await;
}

/// The `sluice_*` names a PromQL text uses.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("sluice_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

#[tokio::test]
async fn alert_rules_pass_promtool_and_use_only_real_metrics() {
    let rules = std::fs::read_to_string("config/prometheus/alerts.yaml").unwrap();
    let dashboard = std::fs::read_to_string("config/grafana/sluice.json").unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(parsed["panels"].as_array().unwrap().len() >= 8);

    // Every metric they name is one the gateway exposes, once each family
    // has a sample: a request, one of sluice's own errors, a failed reload,
    // a failed Kubernetes call (to an API server that is not there).
    let pod = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://{closed}\"}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let yaml = format!(
        "{}  - name: remote\n    backend:\n      kubernetes: {{ deployment: remote, port: 80 }}\nkubernetes:\n  kubeconfig: {}\n",
        one_service(&[&pod], ""),
        kubeconfig.display()
    );
    let gw = TestGateway::start(&yaml).await;
    eventually(
        Duration::from_secs(10),
        "a failed Kubernetes call",
        || async {
            get_text(gw.admin_url("/metrics"))
                .await
                .contains("sluice_kubernetes_api_errors_total{")
        },
    )
    .await;
    send(client().get(gw.url("/"))).await;
    let big = "x".repeat(70_000);
    let r = send(client().get(gw.url("/")).header("x-big", big)).await;
    assert_eq!(r.status(), 431);
    std::fs::write(&gw.config_path, "services: [").unwrap();
    assert!(gw.gateway.reload().await.is_err());
    let exposed = get_text(gw.admin_url("/metrics")).await;
    let exposed = metric_names(&exposed);
    for name in metric_names(&rules)
        .iter()
        .chain(metric_names(&dashboard).iter())
    {
        let base = name.trim_end_matches("_bucket");
        assert!(
            exposed.contains(name) || exposed.iter().any(|e| e.starts_with(base)),
            "{name} is not a metric sluice exposes: {exposed:?}"
        );
    }

    if have_tool("promtool") {
        let out = Command::new("promtool")
            .args(["check", "rules", "config/prometheus/alerts.yaml"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A Prometheus server on a free port scraping `targets` each second; it
/// stops when dropped, and keeps its data in `dir`.
fn prometheus(dir: &std::path::Path, targets: &[String]) -> (Prometheus, String) {
    let config = dir.join("prometheus.yml");
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: gateway\n    static_configs: [{{ targets: [{}] }}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Prometheus(child), format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_a_cold_start_and_the_hold_it_began_with() {
    if !have_tool("prometheus") {
        return;
    }
    // A model at zero replicas that takes a second to start.
    let predictor = [
        env!("CARGO_BIN_EXE_sluice"),
        "predictor",
        "--port",
        "{port}",
        "--model-name",
        "{name}",
        "--startup-delay",
        "1s",
        "--log",
        "warn",
    ];
    let service =
        support::config::Service::process("redwine-week4", "kserve-inference", &predictor)
            .backend("readinessPath", "/v1/models/redwine-week4")
            .set("minReplicas", 0)
            .set("initialScale", 0)
            .set("maxReplicas", 1);
    let gw = TestGateway::start(&ConfigBuilder::new().service(service).yaml()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_prometheus, base) = prometheus(dir.path(), &[gw.gateway.admin_addr().to_string()]);

    // Prometheus sees the families at zero first, so that their rates
    // (the dashboard's, the alerts') see the cold start as an increase.
    let c = client();
    let before = "sluice_cold_start_seconds_count{job=\"gateway\",service=\"redwine-week4\"}";
    eventually(Duration::from_secs(30), before, || async {
        query(&c, &base, before).await == Some(0.0)
    })
    .await;

    // Two requests arrive together at zero: both are held, one is the cold start.
    let path = "/v1/models/redwine-week4:predict";
    let body = r#"{"instances": [[7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4]]}"#;
    let (a, b) = tokio::join!(
        send(c.post(gw.url(path)).body(body)),
        send(c.post(gw.url(path)).body(body))
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let held_ms: f64 = a.headers()["sluice-held-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(held_ms >= 900.0, "held {held_ms} ms for a 1 s start");

    let labels = "job=\"gateway\",service=\"redwine-week4\"";
    let expectations = [
        (format!("sluice_cold_start_seconds_count{{{labels}}}"), 1.0),
        (
            format!("sluice_held_duration_seconds_count{{{labels}}}"),
            2.0,
        ),
        // Both took at least the second the model needed to start.
        (
            format!("sluice_held_duration_seconds_bucket{{{labels},le=\"0.5\"}}"),
            0.0,
        ),
        (
            format!("sluice_cold_start_seconds_bucket{{{labels},le=\"0.5\"}}"),
            0.0,
        ),
        (
            format!("sluice_cold_start_seconds_bucket{{{labels},le=\"+Inf\"}}"),
            1.0,
        ),
        (
            format!("sluice_cold_start_seconds_sum{{{labels}}} >= bool 0.9"),
            1.0,
        ),
    ];
    for (promql, want) in expectations {
        eventually(Duration::from_secs(30), &promql, || async {
            query(&c, &base, &promql).await == Some(want)
        })
        .await;
    }
    // The dashboard's and the alert's quantile has a value to draw.
    let p95 = "histogram_quantile(0.95, sum by (service, le) (rate(sluice_cold_start_seconds_bucket[30m])))";
    eventually(Duration::from_secs(10), p95, || async {
        query(&c, &base, p95).await.is_some_and(|s| s >= 0.9)
    })
    .await;
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}
