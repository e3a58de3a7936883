//! Balancing with exact in-flight counts and per-pod concurrency limits.

mod support;

use std::time::Duration;
use support::*;

#[tokio::test]
async fn three_pods_share_sequential_requests_evenly() {
    let pods = [upstream().await, upstream().await, upstream().await];
    let gw = TestGateway::start(&one_service(&[&pods[0], &pods[1], &pods[2]], "")).await;
    let c = client();
    for _ in 0..300 {
        let r = send(c.get(gw.url("/"))).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    for pod in &pods {
        let share = pod.hits();
        assert!(
            (80..=120).contains(&share),
            "each pod within 20% of 100: {:?}",
            pods.iter().map(|p| p.hits()).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn container_concurrency_1_never_puts_two_at_a_pod_and_all_succeed() {
    let pods = [upstream().await, upstream().await];
    let gw = TestGateway::start(&one_service(
        &[&pods[0], &pods[1]],
        "    containerConcurrency: 1\n",
    ))
    .await;
    let c = client();
    let requests = (0..10).map(|_| {
        let c = c.clone();
        let url = gw.url("/slow?ms=100");
        tokio::spawn(async move {
            let r = send(c.get(url)).await;
            (r.status(), r.text().await.unwrap())
        })
    });
    let results = futures::future::join_all(requests).await;
    for result in results {
        let (status, _) = result.unwrap();
        assert_eq!(status, 200);
    }
    assert_eq!(pods[0].hits() + pods[1].hits(), 10);
    for pod in &pods {
        assert_eq!(
            pod.peak(),
            1,
            "a pod saw more than containerConcurrency at once"
        );
        assert!(pod.hits() >= 1);
    }
}

#[tokio::test]
async fn in_flight_counts_last_until_the_response_body_ends() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    let shared = gw.gateway.shared().clone();
    let service = shared.routes.load().services()[0].clone();
    // A 1 GiB download that the client reads slowly: the headers are long
    // since received, but the request is still in flight.
    let mut r = send(client().get(gw.url("/download?bytes=1073741824"))).await;
    assert_eq!(r.status(), 200);
    r.chunk().await.unwrap();
    assert_eq!(service.dispatcher().in_flight(), 1);
    assert_eq!(service.dispatcher().pods()[0].in_flight(), 1);
    // The client goes away mid-body: the slot is freed.
    drop(r);
    eventually(Duration::from_secs(5), "in-flight back to 0", || async {
        service.dispatcher().in_flight() == 0 && service.dispatcher().pods()[0].in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn the_excess_waits_then_503s_on_timeout_and_at_once_when_the_queue_is_full() {
    let pod = upstream().await;
    let extra = "    containerConcurrency: 1\n    queueDepth: 1\n    queueTimeout: 300ms\n";
    let gw = TestGateway::start(&one_service(&[&pod], extra)).await;
    let c = client();
    let service = gw.gateway.shared().routes.load().services()[0].clone();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), gw.url("/slow?ms=2000"));
        async move { send(c.get(url)).await.status() }
    });
    eventually(
        Duration::from_secs(5),
        "the slow request holds the pod",
        || async { pod.hits() == 1 },
    )
    .await;
    let waiting = tokio::spawn({
        let (c, url) = (c.clone(), gw.url("/"));
        async move {
            let r = send(c.get(url)).await;
            (r.status(), r.headers().clone())
        }
    });
    eventually(Duration::from_secs(5), "one request queued", || async {
        service.dispatcher().queued() == 1
    })
    .await;
    // The queue (depth 1) is full: refused at once.
    let r = send(c.get(gw.url("/"))).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["sluice-error"], "queue-full");
    assert!(r.headers().contains_key("retry-after"));
    // The queued one times out after 300ms.
    let (status, headers) = waiting.await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(headers["sluice-error"], "queue-timeout");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(pod.hits(), 1, "refused requests never reached the pod");
}
