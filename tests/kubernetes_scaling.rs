//! The `kubernetes` actuator scales a Deployment through its scale
//! subresource and balances over its EndpointSlices, against a fake API
//! server that speaks the real paths, JSON and watch streams; sluice uses
//! the real kube-rs client against it. The "pods" are real upstreams on
//! 127.0.0.1-3, one port, as pod IPs on a cluster.
mod support;

use std::time::{Duration, Instant};
use support::cluster::*;
use support::fake_kube::{deployment, EndpointSpec, FakeKube};
use support::{eventually, get_text, holds_until, metric, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_through_the_subresource_and_balances_over_the_endpoint_slices() {
    let cluster = setup(&["127.0.0.1", "127.0.0.2", "127.0.0.3"], 1, &[READY]).await;
    let service = cluster.model().set("minReplicas", 1).set("maxReplicas", 3);
    let gateway = TestGateway::start(&cluster.config().service(service).yaml()).await;
    eventually(
        Duration::from_secs(10),
        "the ready pod from the slice",
        || async { ready_pods(&gateway).await == 1 },
    )
    .await;

    // Three clients on a model that takes one request at a time: 3 replicas.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = load(&gateway, 3, &stop);
    eventually(Duration::from_secs(15), "3 replicas written", || async {
        cluster.replicas() == Some(3)
    })
    .await;
    // The Deployment's new pods come up: the balancer follows the slice.
    cluster.apply_pods(&[READY, READY, STARTING]);
    eventually(Duration::from_secs(5), "2 ready pods", || async {
        ready_pods(&gateway).await == 2
    })
    .await;
    assert_eq!(
        cluster.pods[2].hits(),
        0,
        "a pod that is not ready gets nothing"
    );
    cluster.apply_pods(&[READY, READY, READY]);
    eventually(
        Duration::from_secs(5),
        "every pod gets requests",
        || async { cluster.pods.iter().all(|p| p.hits() > 0) },
    )
    .await;
    let replicas = service_status(&gateway).await["replicas"].clone();
    let names: Vec<&str> = replicas
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["model-a", "model-b", "model-c"]);

    // A pod being removed gets no new requests.
    cluster.apply_pods(&[READY, READY, LEAVING]);
    eventually(Duration::from_secs(5), "2 ready pods", || async {
        ready_pods(&gateway).await == 2
    })
    .await;
    let before = cluster.pods[2].hits();
    let served = cluster.pods[0].hits() + cluster.pods[1].hits();
    eventually(
        Duration::from_secs(10),
        "10 more requests served",
        || async { cluster.pods[0].hits() + cluster.pods[1].hits() >= served + 10 },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let codes = client.await.unwrap();
        assert!(codes.iter().all(|&c| c == 200), "codes: {codes:?}");
    }
    // At most the requests already on their way when the slice changed.
    assert!(
        cluster.pods[2].hits() <= before + 1,
        "a terminating pod got new requests"
    );

    // The load is gone: back to 1 replica, in steps (at most halving).
    eventually(Duration::from_secs(40), "1 replica written", || async {
        cluster.replicas() == Some(1)
    })
    .await;
    let writes: Vec<(i64, i64, usize)> = cluster
        .fake
        .scale_writes()
        .iter()
        .map(|w| (w.from, w.to, w.listener))
        .collect();
    assert_eq!(writes.first(), Some(&(1, 3, 0)), "writes: {writes:?}");
    assert!(
        writes.iter().all(|(from, to, _)| from != to),
        "a count is written only when it changes: {writes:?}"
    );
    assert!(
        writes.windows(2).all(|w| w[0].1 == w[1].0),
        "each write starts from the last: {writes:?}"
    );
    let text = get_text(gateway.admin_url("/metrics")).await;
    assert_eq!(
        metric(&text, "sluice_kubernetes_scale_writes_total"),
        Some(writes.len() as f64)
    );
    gateway.gateway.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        cluster.replicas(),
        Some(1),
        "stopping the gateway leaves the Deployment as it is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_is_read_again_and_retried() {
    let cluster = setup(&["127.0.0.1"], 1, &[READY]).await;
    // Someone else writes first, twice.
    cluster.fake.conflict_next_writes(2);
    let service = cluster.model().set("minReplicas", 2).set("maxReplicas", 2);
    let gateway = TestGateway::start(&cluster.config().service(service).yaml()).await;
    eventually(Duration::from_secs(10), "2 replicas written", || async {
        cluster.replicas() == Some(2)
    })
    .await;
    let puts = cluster
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::PUT && r.path_and_query.contains("/scale"))
        .count();
    assert_eq!(puts, 3, "two conflicts, then the write");
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_gateway_does_not_scale_down_a_running_deployment_before_a_stable_window() {
    let fake = FakeKube::start().await;
    fake.apply(deployment(NS, DEPLOYMENT, 4));
    // Four ready pods (no request goes to them in this test).
    let endpoints: Vec<EndpointSpec> = (1..=4)
        .map(|i| EndpointSpec::ready(&format!("127.0.0.{i}"), &format!("model-{i}")))
        .collect();
    fake.apply(slice(&endpoints, 9));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(0, dir.path());
    let started = Instant::now();
    let service = model(9).set("minReplicas", 1).set("maxReplicas", 4);
    let gateway = TestGateway::start(&config(&kubeconfig).service(service).yaml()).await;
    decided_on(&gateway, 4).await;
    // Idle, but observed for less than the stable window (6 s): kept. Real
    // time: the gateway's autoscaler against the fake API server.
    let until = started + Duration::from_secs(5);
    holds_until(until, Duration::from_millis(200), || async {
        assert!(fake.scale_writes().is_empty(), "{:?}", fake.scale_writes());
        assert_eq!(service_status(&gateway).await["desired"], 4);
    })
    .await;
    // Then it scales down as usual: at most halving per decision.
    eventually(Duration::from_secs(15), "scaled down", || async {
        fake.replicas(NS, DEPLOYMENT) == Some(2)
    })
    .await;
    let first = &fake.scale_writes()[0];
    assert_eq!((first.from, first.to), (4, 2));
    assert!(first.at.duration_since(started) >= Duration::from_secs(6));
}
