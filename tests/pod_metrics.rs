//! Picking by what the model servers report (`podMetrics`): two static pods
//! whose `/metrics` says what the test wants, in vLLM's words.

mod support;

use sluice::pods::Pod;
use sluice::service::Service;
use std::sync::Arc;
use std::time::Duration;
use support::upstream::{vllm_metrics, MetricsAnswer};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A gateway over `pods` that reads their metrics every 20 ms.
async fn gateway(pods: &[&Upstream], pod_metrics: &str, extra: &str) -> TestGateway {
    let keys = format!("    podMetrics: {{ interval: 20ms, {pod_metrics} }}\n{extra}");
    TestGateway::start(&one_service(pods, &keys)).await
}

fn service(gw: &TestGateway) -> Arc<Service> {
    gw.gateway.shared().routes.load().services()[0].clone()
}

fn pod_of(gw: &TestGateway, upstream: &Upstream) -> Arc<Pod> {
    let pods = service(gw).dispatcher().pods();
    let addr = upstream.addr.to_string();
    pods.into_iter().find(|p| p.addr() == addr).unwrap()
}

/// Waits until every pod of the service has a reading that says `waiting`.
async fn wait_for_readings(gw: &TestGateway, expected: &[(&Upstream, f64)]) {
    eventually(WAIT, "every pod's server read", || async {
        expected.iter().all(|(upstream, waiting)| {
            pod_of(gw, upstream)
                .server_report()
                .is_some_and(|r| r.load.waiting == *waiting)
        })
    })
    .await;
}

async fn get_sequentially(gw: &TestGateway, n: usize) {
    let c = client();
    for _ in 0..n {
        let r = send(c.get(gw.url("/"))).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
}

#[tokio::test]
async fn requests_go_to_the_pod_whose_server_reports_the_shorter_queue() {
    let (busy, idle) = (upstream().await, upstream().await);
    // The busy server's queue is far longer than what 20 requests sent
    // to the other between two reads could add to that one's.
    busy.serve_metrics(MetricsAnswer::Text(vllm_metrics(8.0, 1000.0, 0.9)));
    idle.serve_metrics(MetricsAnswer::Text(vllm_metrics(0.0, 0.0, 0.1)));
    // Generous: a slow machine must not make a reading stale mid-test.
    let gw = gateway(&[&busy, &idle], "staleAfter: 30s", "").await;
    wait_for_readings(&gw, &[(&busy, 1000.0), (&idle, 0.0)]).await;

    // Each request ends before the next: sluice's own counts are equal
    // (zero) every time, and would alternate.
    get_sequentially(&gw, 20).await;
    assert_eq!((busy.hits(), idle.hits()), (0, 20));
}

#[tokio::test]
async fn a_server_that_stops_answering_sends_picking_back_to_in_flight_counts() {
    let (a, b) = (upstream().await, upstream().await);
    a.serve_metrics(MetricsAnswer::Text(vllm_metrics(0.0, 0.0, 0.0)));
    b.serve_metrics(MetricsAnswer::Text(vllm_metrics(8.0, 1000.0, 0.9)));
    let gw = gateway(&[&a, &b], "staleAfter: 300ms, timeout: 50ms", "").await;
    wait_for_readings(&gw, &[(&a, 0.0), (&b, 1000.0)]).await;

    // b's server goes quiet; a's still answers. Once b's last reading is
    // stale, no comparison uses the servers' numbers.
    b.serve_metrics(MetricsAnswer::Silent);
    let stale_after = Duration::from_millis(300);
    let b_pod = pod_of(&gw, &b);
    eventually(WAIT, "b's reading stale", || async {
        let report = b_pod.server_report().unwrap();
        tokio::time::Instant::now().duration_since(report.at) > stale_after
    })
    .await;
    // By in-flight counts, with ties to the pod picked less recently:
    // idle pods take turns, whatever a's server says about b's.
    let before = (a.hits(), b.hits());
    get_sequentially(&gw, 10).await;
    assert_eq!((a.hits() - before.0, b.hits() - before.1), (5, 5));

    // The reads that went unanswered are counted.
    eventually(WAIT, "failed reads counted", || async {
        let text = get_text(gw.admin_url("/metrics")).await;
        let series = "sluice_pod_metrics_failures_total{service=\"redwine-week4\",namespace=\"kserve-inference\"}";
        metric(&text, series).is_some_and(|n| n >= 1.0)
    })
    .await;
}

#[tokio::test]
async fn container_concurrency_holds_even_when_a_server_says_it_is_empty() {
    let (empty, busy) = (upstream().await, upstream().await);
    empty.serve_metrics(MetricsAnswer::Text(vllm_metrics(0.0, 0.0, 0.0)));
    busy.serve_metrics(MetricsAnswer::Text(vllm_metrics(8.0, 1000.0, 0.9)));
    let gw = gateway(
        &[&empty, &busy],
        "staleAfter: 30s",
        "    containerConcurrency: 1\n",
    )
    .await;
    wait_for_readings(&gw, &[(&empty, 0.0), (&busy, 1000.0)]).await;

    let c = client();
    let requests = (0..6).map(|_| {
        let request = c.get(gw.url("/slow?ms=100"));
        tokio::spawn(async move { send(request).await.status() })
    });
    for status in futures::future::join_all(requests).await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(empty.hits() + busy.hits(), 6);
    assert_eq!(
        empty.peak(),
        1,
        "the pod its server calls empty got two at once"
    );
    assert_eq!(busy.peak(), 1);
    assert!(
        busy.hits() >= 1,
        "with the other full, the busy pod takes some"
    );
}

#[tokio::test]
async fn a_reload_without_pod_metrics_stops_the_reads_and_one_with_them_starts_them() {
    let (busy, idle) = (upstream().await, upstream().await);
    busy.serve_metrics(MetricsAnswer::Text(vllm_metrics(8.0, 1000.0, 0.9)));
    idle.serve_metrics(MetricsAnswer::Text(vllm_metrics(0.0, 0.0, 0.1)));
    let gw = gateway(&[&busy, &idle], "staleAfter: 30s", "").await;
    wait_for_readings(&gw, &[(&busy, 1000.0), (&idle, 0.0)]).await;
    let with = std::fs::read_to_string(&gw.config_path).unwrap();

    let without: String = with
        .lines()
        .filter(|line| !line.contains("podMetrics"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&gw.config_path, &without).unwrap();
    gw.gateway.reload().await.unwrap();
    // Picked by in-flight counts at once, though the readings are fresh.
    let before = (busy.hits(), idle.hits());
    get_sequentially(&gw, 10).await;
    assert_eq!((busy.hits() - before.0, idle.hits() - before.1), (5, 5));
    // And nobody reads the servers any more: at 20 ms a running reader
    // would read each a dozen times in this while; one read may have been
    // on its way when the reader stopped.
    let reads = busy.metrics_reads();
    let until = std::time::Instant::now() + Duration::from_millis(300);
    holds_until(until, Duration::from_millis(20), || async {
        assert!(
            busy.metrics_reads() <= reads + 1,
            "still read after the reload"
        );
    })
    .await;

    std::fs::write(&gw.config_path, &with).unwrap();
    gw.gateway.reload().await.unwrap();
    let reads = busy.metrics_reads();
    eventually(WAIT, "reads again", || async {
        busy.metrics_reads() > reads + 2
    })
    .await;
    let before = idle.hits();
    get_sequentially(&gw, 10).await;
    assert_eq!(idle.hits() - before, 10);
}

#[test]
fn bad_pod_metrics_are_refused_with_their_fields() {
    let pods = ["127.0.0.1:8081"];
    let yaml = ConfigBuilder::new()
        .service(tutorial(&pods).set("scaleMetric", "queue").set(
            "podMetrics",
            "{ interval: 1s, staleAfter: 500ms, names: { kvCacheUsage: \"\" } }",
        ))
        .yaml();
    let error = sluice::config::Config::parse(&yaml)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("services[0].podMetrics.staleAfter: must be longer than interval (1s)"),
        "{error}"
    );
    assert!(
        error.contains("services[0].podMetrics.names.kvCacheUsage: \"\""),
        "{error}"
    );

    let without = ConfigBuilder::new()
        .service(tutorial(&pods).set("scaleMetric", "queue"))
        .yaml();
    let error = sluice::config::Config::parse(&without)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("services[0].scaleMetric: queue is what the model servers report, so it needs podMetrics"),
        "{error}"
    );

    // A read slower than staleAfter could never be used.
    let slow = ConfigBuilder::new()
        .service(tutorial(&pods).set("podMetrics", "{ timeout: 2s, staleAfter: 1s }"))
        .yaml();
    let error = sluice::config::Config::parse(&slow)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("services[0].podMetrics.timeout: must be shorter than staleAfter (1s)"),
        "{error}"
    );
    // Local replicas behind sidecars: the replica's port is the sidecar's.
    let behind = ConfigBuilder::new()
        .service(
            support::config::Service::process("m", "default", &["model", "{port}"])
                .backend("sidecar", "{}")
                .set("podMetrics", "{}"),
        )
        .yaml();
    let error = sluice::config::Config::parse(&behind)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("services[0].podMetrics: reads the model server itself, which backend.process.sidecar hides"),
        "{error}"
    );
}
