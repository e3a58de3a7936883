//! When the API server is down or refuses watches: serving goes on, nothing
//! is scaled down, and readiness and metrics say what is failing.
mod support;

use std::time::{Duration, Instant};
use support::cluster::*;
use support::config::Service;
use support::fake_kube::deployment;
use support::{client, eventually, get_text, holds_until, metric, poll_until, send, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_api_server_down_serving_goes_on_and_nothing_is_scaled_down() {
    let cluster = setup(&["127.0.0.1", "127.0.0.2"], 1, &[READY]).await;
    // Idle with minReplicas 0: it would go to zero after 4 s + 1 s.
    let service = cluster
        .model()
        .set("minReplicas", 0)
        .set("maxReplicas", 2)
        .set("stableWindow", "4s");
    let config = cluster.config().service(service);
    let yaml = config.clone().yaml();
    let gateway = TestGateway::start(&yaml).await;
    decided_on(&gateway, 1).await;
    cluster.fake.bookmark();

    cluster.fake.stop().await;
    let readyz = poll_until(
        Duration::from_secs(10),
        "/readyz names the failure",
        || async {
            let response = send(client().get(gateway.admin_url("/readyz"))).await;
            let code = response.status();
            let body = response.text().await.unwrap();
            (code == 200 && body.contains("kubernetes: endpointslices ml/model-predictor"))
                .then_some(body.clone())
                .ok_or(format!("{code} {body}"))
        },
    )
    .await;
    assert!(readyz.starts_with("ready\n"), "{readyz}");
    let text = get_text(gateway.admin_url("/metrics")).await;
    assert_eq!(metric(&text, "sluice_kubernetes_api_reachable"), Some(0.0));
    assert!(
        metric(
            &text,
            "sluice_kubernetes_api_errors_total{operation=\"watch endpointslices\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    // Idle for longer than it takes to decide zero: still wanting 1.
    // (Without the rule, it would decide 0 here.) Real time: the gateway's
    // autoscaler runs on its own clock against the fake API server.
    let down_until = Instant::now() + Duration::from_secs(7);
    holds_until(down_until, Duration::from_millis(250), || async {
        assert_eq!(service_status(&gateway).await["desired"], 1);
    })
    .await;
    // And the last known pod still serves.
    for _ in 0..5 {
        let response = send(client().get(gateway.url("/slow?ms=1")).header("host", HOST)).await;
        assert_eq!(response.status(), 200);
    }
    // A service added now cannot be listed: the gateway stays ready (the
    // other models are served) and says what it waits for.
    cluster.fake.apply(deployment("other", "other", 1));
    let more = config.service(Service::kubernetes("other", "other", "other", 9));
    std::fs::write(&gateway.config_path, more.yaml()).unwrap();
    gateway.gateway.reload().await.unwrap();
    let response = send(client().get(gateway.admin_url("/readyz"))).await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("pods of other/other not listed yet\n"),
        "{body}"
    );

    // Back: the watch resumes quietly (no event); the failure clears.
    cluster.fake.restart().await;
    eventually(
        Duration::from_secs(15),
        "/readyz clear after a quiet resume",
        || async { get_text(gateway.admin_url("/readyz")).await == "ready\n" },
    )
    .await;

    // Down again; meanwhile a pod comes up and the watch history is
    // compacted: the watch resumes, gets 410 Gone, lists again, sees both.
    cluster.fake.stop().await;
    eventually(
        Duration::from_secs(10),
        "the second outage seen",
        || async {
            get_text(gateway.admin_url("/readyz"))
                .await
                .contains("kubernetes:")
        },
    )
    .await;
    cluster.apply_pods(&[READY, READY]);
    cluster.fake.compact();
    cluster.fake.restart().await;
    eventually(
        Duration::from_secs(40),
        "both pods after the API is back",
        || async { ready_pods(&gateway).await == 2 },
    )
    .await;
    eventually(Duration::from_secs(10), "/readyz clear again", || async {
        get_text(gateway.admin_url("/readyz")).await == "ready\n"
    })
    .await;
    let text = get_text(gateway.admin_url("/metrics")).await;
    assert_eq!(metric(&text, "sluice_kubernetes_api_reachable"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_keeps_failing_stays_reported_while_lists_keep_the_pods_current() {
    let cluster = setup(&["127.0.0.1", "127.0.0.2"], 1, &[READY]).await;
    let gateway = TestGateway::start(&cluster.config().service(cluster.model()).yaml()).await;
    eventually(Duration::from_secs(10), "the ready pod", || async {
        ready_pods(&gateway).await == 1
    })
    .await;

    // RBAC that allows list but not watch (or a proxy that breaks streams):
    // the watch reconnects and is refused, again and again.
    cluster.fake.refuse_watches(true);
    cluster.fake.stop().await;
    cluster.fake.restart().await;
    let failing = "kubernetes: endpointslices ml/model-predictor: failing for";
    eventually(
        Duration::from_secs(10),
        "the failing watch reported",
        || async {
            get_text(gateway.admin_url("/readyz"))
                .await
                .contains(failing)
        },
    )
    .await;
    // Lists work: a new pod is seen through them.
    cluster.apply_pods(&[READY, READY]);
    eventually(
        Duration::from_secs(10),
        "the new pod, from a list",
        || async { ready_pods(&gateway).await == 2 },
    )
    .await;
    // But the watch still fails, and says so the whole time (longer than
    // its longest backoff), with one continuous failure. Real time: the
    // backoff is the gateway's own, against the fake API server.
    let until = Instant::now() + Duration::from_secs(9);
    holds_until(until, Duration::from_millis(250), || async {
        let readyz = get_text(gateway.admin_url("/readyz")).await;
        assert!(readyz.contains(failing), "{readyz}");
        let text = get_text(gateway.admin_url("/metrics")).await;
        assert_eq!(metric(&text, "sluice_kubernetes_api_reachable"), Some(0.0));
    })
    .await;
    let readyz = get_text(gateway.admin_url("/readyz")).await;
    let seconds: u64 = readyz
        .split(failing)
        .nth(1)
        .and_then(|rest| rest.trim().split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{readyz}"));
    assert!(seconds >= 9, "the failure started over: {readyz}");

    // Watches allowed again: the next try works and the failure clears.
    cluster.fake.refuse_watches(false);
    eventually(Duration::from_secs(20), "/readyz clear", || async {
        get_text(gateway.admin_url("/readyz")).await == "ready\n"
    })
    .await;
}
