//! Routing by Host and path, and transparent forwarding.

mod support;

use std::sync::atomic::Ordering;
use support::*;

#[tokio::test]
async fn routes_by_host_ignoring_case_and_port_and_by_model_path() {
    let pod = upstream().await;
    let yaml = one_service(&[&pod], "    hosts: [wine.example.org]\n");
    let gw = TestGateway::start(&yaml).await;
    let c = client();
    for host in [
        HOST,
        "REDWINE-WEEK4.kserve-inference.example.com:30200",
        "wine.example.org",
    ] {
        let r = c
            .get(gw.url("/anything"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    // Called by IP, as the tutorial's curl does: the model in the path routes.
    for path in [
        "/v1/models/redwine-week4",
        "/v1/models/redwine-week4:predict",
        "/v2/models/redwine-week4/infer",
    ] {
        let r = c.post(gw.url(path)).body("{}").send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(pod.last_path(), path);
    }
    assert_eq!(pod.hits(), 6);
}

#[tokio::test]
async fn unknown_host_is_404_json_and_no_upstream_is_contacted() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    let c = client();
    for (host, path) in [
        ("evil.example.net", "/"),
        ("127.0.0.1", "/v1/models/other:predict"),
        ("other.example.com", "/v2/models/"),
    ] {
        let r = c
            .get(gw.url(path))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["sluice-error"], "route-not-found");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "route-not-found");
    }
    // A Host naming a pod's own address: sluice is not an open proxy.
    let r = c
        .get(gw.url("/"))
        .header("host", format!("{}", pod.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(pod.hits(), 0);
    assert_eq!(pod.seen.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn method_path_query_headers_and_body_pass_and_hop_by_hop_headers_do_not() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    let r = client()
        .put(gw.url("/echo?x=1&y=two%20words"))
        .header("host", HOST)
        .header("x-custom", "kept")
        .header("connection", "x-drop-me")
        .header("x-drop-me", "gone")
        .header("keep-alive", "timeout=9")
        .header("x-forwarded-for", "203.0.113.7")
        .body("payload bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().contains_key("x-request-id"),
        "the response carries the request id"
    );
    assert_eq!(r.text().await.unwrap(), "payload bytes");
    assert_eq!(pod.last_path(), "/echo?x=1&y=two%20words");
    let seen = pod.last_headers();
    assert_eq!(seen["x-custom"], "kept");
    assert!(!seen.contains_key("x-drop-me"));
    assert!(!seen.contains_key("keep-alive"));
    assert_eq!(seen["host"], HOST);
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], HOST);
    assert!(!seen["x-request-id"].is_empty());
    let method = pod.seen.last.lock().unwrap().as_ref().unwrap().0.clone();
    assert_eq!(method, http::Method::PUT);

    // Hop-by-hop headers from the pod do not reach the client either.
    let r = send(client().get(gw.url("/"))).await;
    assert!(!r.headers().contains_key("x-pod-secret"));
    assert!(!r.headers().contains_key("keep-alive"));
}

#[tokio::test]
async fn a_client_request_id_is_kept() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    let r = client()
        .get(gw.url("/"))
        .header("host", HOST)
        .header("x-request-id", "my-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "my-id-42");
    assert_eq!(pod.last_headers()["x-request-id"], "my-id-42");
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    // The service's host resolves to the gateway, so `:authority` names it.
    let port = gw.gateway.data_addr().port();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve(HOST, gw.gateway.data_addr())
        .build()
        .unwrap();
    let r = h2
        .post(format!("http://{HOST}:{port}/echo"))
        .body("over h2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "over h2");
    // The HTTP/1.1 pod gets the :authority as its Host.
    assert_eq!(
        pod.last_headers()["host"],
        format!("{HOST}:{port}").as_str()
    );
    // And by the model in the path, over h2.
    let r = h2
        .get(gw.url("/v1/models/redwine-week4"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2);
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    let c = client();
    for _ in 0..20 {
        let r = send(c.get(gw.url("/"))).await;
        r.bytes().await.unwrap();
    }
    assert_eq!(pod.hits(), 20);
    assert_eq!(
        pod.seen.connections.load(Ordering::SeqCst),
        1,
        "sequential requests reuse one connection"
    );
}
