//! Errors sluice makes itself, and the one retry it allows.

mod support;

use bytes::Bytes;
use support::*;

/// An address where nothing listens: bound, then closed.
async fn dead_addr() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// The tutorial's service on `pods`, with one key of the `gateway` section.
fn config_with<A: std::fmt::Display>(pods: &[A], key: &str, value: &str) -> String {
    ConfigBuilder::new()
        .gateway(key, value)
        .service(tutorial(pods))
        .yaml()
}

#[tokio::test]
async fn a_refused_connection_is_retried_once_on_another_pod() {
    let live = upstream().await;
    let dead = dead_addr().await;
    let yaml = config_with(&[dead, live.addr], "connectTimeout", "1s");
    let gw = TestGateway::start(&yaml).await;
    let c = client();
    for _ in 0..20 {
        let r = send(c.post(gw.url("/echo")).body("keep me")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            "keep me",
            "the body survives the retry"
        );
    }
    assert_eq!(live.hits(), 20);
    let metrics = get_text(gw.admin_url("/metrics")).await;
    let retries = metric(
        &metrics,
        "sluice_upstream_retries_total{service=\"redwine-week4\",namespace=\"kserve-inference\"}",
    )
    .unwrap();
    assert!(
        retries >= 1.0,
        "some requests first went to the dead pod: {retries}"
    );
}

#[tokio::test]
async fn no_pod_answering_is_502_from_sluice() {
    let yaml = config_with(&[dead_addr().await], "connectTimeout", "1s");
    let gw = TestGateway::start(&yaml).await;
    let r = send(client().get(gw.url("/"))).await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["sluice-error"], "upstream-connect");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "upstream-connect");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("cannot connect to pod"));
}

#[tokio::test]
async fn a_slow_pod_is_504_after_the_request_timeout() {
    let pod = upstream().await;
    let gw = TestGateway::start(
        &ConfigBuilder::new()
            .service(tutorial(&[pod.addr]).set("requestTimeout", "200ms"))
            .yaml(),
    )
    .await;
    let r = send(client().get(gw.url("/slow?ms=3000"))).await;
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["sluice-error"], "upstream-timeout");
    // The slot was given back.
    let service = gw.gateway.shared().routes.load().services()[0].clone();
    assert_eq!(service.dispatcher().in_flight(), 0);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_declared_or_streamed() {
    let pod = upstream().await;
    let yaml = config_with(&[pod.addr], "maxRequestBodySize", "1KiB");
    let gw = TestGateway::start(&yaml).await;
    let c = client();
    // Declared by Content-Length: refused before any pod is involved.
    let r = send(c.post(gw.url("/sink")).body(vec![1u8; 2048])).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["sluice-error"], "body-too-large");
    assert_eq!(pod.hits(), 0);
    // Chunked, no length: cut off when it passes the limit.
    let chunks =
        futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![2u8; 512]))));
    let r = send(
        c.post(gw.url("/sink"))
            .body(reqwest::Body::wrap_stream(chunks)),
    )
    .await;
    assert_eq!(r.status(), 413);
    // Under the limit passes.
    let r = send(c.post(gw.url("/sink")).body(vec![1u8; 1000])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1000");
}

#[tokio::test]
async fn headers_over_the_limit_are_431_from_sluice() {
    let pod = upstream().await;
    let yaml = config_with(&[pod.addr], "maxHeaderSize", "4KiB");
    let gw = TestGateway::start(&yaml).await;
    let r = client()
        .get(gw.url("/"))
        .header("host", HOST)
        .header("x-big", "a".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(r.headers()["sluice-error"], "headers-too-large");
    assert_eq!(pod.hits(), 0);
}

#[tokio::test]
async fn trailers_pass_both_ways() {
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    let client = Client::builder(TokioExecutor::new()).build_http();

    // Response trailers from the pod reach a client that accepts them.
    let req = http::Request::get(gw.url("/trailers"))
        .header("host", HOST)
        .header("te", "trailers")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let collected = client
        .request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc123");

    // Request trailers reach the pod (its /echo sends them back).
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-request-trailer", "t1".parse().unwrap());
    let frames = futures::stream::iter(vec![
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from_static(b"data"))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ]);
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::post(gw.url("/echo"))
        .header("host", HOST)
        .header("te", "trailers")
        .header("trailer", "x-request-trailer")
        .body(http_body_util::StreamBody::new(frames))
        .unwrap();
    let collected = h2
        .request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    assert_eq!(collected.trailers().unwrap()["x-request-trailer"], "t1");
}
