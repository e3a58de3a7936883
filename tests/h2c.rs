//! Pods that speak HTTP/2 with prior knowledge (`protocol: h2c`): requests
//! go to them as streams on shared connections, each stream counted in
//! flight until its trailers, and sluice's own errors on gRPC calls are
//! gRPC statuses.

mod support;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice::config::UpstreamProtocol;
use sluice::sidecar::{Sidecar, SidecarOptions};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::config::Service;
use support::*;

/// An HTTP/2 (prior knowledge) client connection, as a gRPC client opens.
async fn h2_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// A request body sent frame by frame as the test goes.
type StreamedBody = http_body_util::StreamBody<
    futures::channel::mpsc::Receiver<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>,
>;

/// A gRPC-shaped call: POST, `application/grpc`, `te: trailers`.
fn grpc_call(host: &str, path: &str, extra: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::post(format!("http://{host}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap()
}

/// Reads a response to its end: the body and the trailers.
async fn read_all(response: Response<Incoming>) -> (Bytes, Option<HeaderMap>) {
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (collected.to_bytes(), trailers)
}

async fn service_in_flight(gateway: &TestGateway) -> u64 {
    let status = get_json(gateway.admin_url("/status")).await;
    status["services"][0]["inFlight"].as_u64().unwrap()
}

fn h2c_service(pods: &[&Upstream], extra: &str) -> String {
    let pods: Vec<_> = pods.iter().map(|u| u.addr).collect();
    ConfigBuilder::new()
        .gateway("connections", "{ workers: 1 }")
        .service(tutorial(&pods).set("protocol", "h2c").raw(extra))
        .yaml()
}

// One thread, as each of the binary's workers is (a current-thread runtime):
// a request never moves between threads, so the thread's one connection is
// the pod's one connection.
#[tokio::test(flavor = "current_thread")]
async fn requests_go_to_an_h2c_pod_as_streams_on_one_connection() {
    let pod = upstream().await;
    let gw = TestGateway::start(&h2c_service(&[&pod], "")).await;
    let c = client();
    let calls = (0..20).map(|_| {
        let request = c
            .get(gw.url("/slow?ms=300"))
            .header("host", HOST)
            .header("x-from-client", "kept");
        async move { send(request).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(pod.seen.http2.load(Ordering::SeqCst), 20, "all over HTTP/2");
    let connections = pod.seen.connections.load(Ordering::SeqCst);
    assert_eq!(connections, 1, "20 calls shared {connections} connections");
    assert!(pod.peak() > 1, "streams ran side by side: {}", pod.peak());
    let headers = pod.last_headers();
    assert_eq!(headers["x-from-client"], "kept");
    assert!(
        headers.get("host").is_none(),
        "the Host went into :authority"
    );
    assert!(headers.get("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_stream_is_in_flight_until_its_trailers_and_container_concurrency_holds() {
    let pod = upstream().await;
    let gw = TestGateway::start(&h2c_service(&[&pod], "    containerConcurrency: 1\n")).await;
    let mut client = h2_client::<Full<Bytes>>(gw.gateway.data_addr()).await;

    // A server-streaming call: 6 messages 150 ms apart, then the trailers.
    let first = client
        .send_request(grpc_call(HOST, "/stream?chunks=6&ms=150", &[]))
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let mut first_body = first.into_body();
    let chunk = first_body.frame().await.unwrap().unwrap();
    assert_eq!(
        chunk.into_data().unwrap(),
        "chunk 0;",
        "streamed, not buffered"
    );
    assert_eq!(service_in_flight(&gw).await, 1, "counted while it streams");

    // A second call waits for the first one's slot (containerConcurrency 1).
    let mut second_client = client.clone();
    let second = tokio::spawn(async move {
        let response = second_client
            .send_request(grpc_call(HOST, "/stream?chunks=1&ms=0", &[]))
            .await
            .unwrap();
        read_all(response).await
    });
    holds_until(
        std::time::Instant::now() + Duration::from_millis(400),
        Duration::from_millis(50),
        || async { assert_eq!(pod.hits(), 1, "the second call waits for the slot") },
    )
    .await;

    let mut trailers = None;
    while let Some(frame) = first_body.frame().await {
        match frame.unwrap().into_trailers() {
            Ok(t) => trailers = Some(t),
            Err(_data) => {}
        }
    }
    assert_eq!(trailers.expect("trailers passed on")["grpc-status"], "0");
    let (body, second_trailers) = second.await.unwrap();
    assert_eq!(body, "chunk 0;");
    assert_eq!(second_trailers.unwrap()["grpc-status"], "0");
    assert_eq!(pod.peak(), 1, "never two calls at the pod at once");
    eventually(Duration::from_secs(5), "nothing in flight", || async {
        service_in_flight(&gw).await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_errors_on_grpc_calls_are_grpc_statuses() {
    let pod = upstream().await;
    // A pod that is gone: its port is closed.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let yaml = ConfigBuilder::new()
        .service(tutorial(&[pod.addr]).set("protocol", "h2c"))
        .service(Service::static_pods("gone", "kserve-inference", &[gone]).set("protocol", "h2c"))
        .yaml();
    let gw = TestGateway::start(&yaml).await;
    let mut client = h2_client::<Full<Bytes>>(gw.gateway.data_addr()).await;
    let status_of = |response: &Response<Incoming>| {
        let headers = response.headers();
        (
            response.status().as_u16(),
            headers
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().to_string()),
            headers.get("sluice-error").is_some(),
        )
    };

    // No service for the host: UNIMPLEMENTED (12).
    let response = client
        .send_request(grpc_call(
            "nobody.example.com",
            "/inference.GRPCInferenceService/ModelInfer",
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(status_of(&response), (200, Some("12".into()), true));
    assert!(response.headers().get("grpc-message").is_some());

    // The only pod cannot be reached: UNAVAILABLE (14).
    let response = client
        .send_request(grpc_call(
            "gone.kserve-inference.example.com",
            "/inference.GRPCInferenceService/ModelInfer",
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(status_of(&response), (200, Some("14".into()), true));

    // The call's deadline passes while the pod works: DEADLINE_EXCEEDED (4);
    // the pod was told what was left of the deadline.
    let response = client
        .send_request(grpc_call(
            HOST,
            "/slow?ms=3000",
            &[("grpc-timeout", "300m")],
        ))
        .await
        .unwrap();
    assert_eq!(status_of(&response), (200, Some("4".into()), true));
    let forwarded = pod.last_headers()["grpc-timeout"]
        .to_str()
        .unwrap()
        .to_string();
    let (number, unit) = forwarded.split_at(forwarded.len() - 1);
    let millis = match unit {
        "m" => number.parse::<u64>().unwrap(),
        "u" => number.parse::<u64>().unwrap() / 1000,
        other => panic!("unexpected grpc-timeout unit {other} in {forwarded}"),
    };
    assert!(millis <= 300, "what was left: {forwarded}");

    // A plain HTTP request to the same missing service keeps its HTTP status.
    let response = client
        .send_request(
            Request::get("http://nobody.example.com/")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().get("grpc-status").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_speaks_h2c_to_its_pod() {
    let pod = upstream().await;
    let sidecar = Sidecar::start(SidecarOptions {
        queue_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        drain_period: Duration::ZERO,
        drain_timeout: Duration::from_secs(5),
        workers: 1,
        protocol: UpstreamProtocol::H2c,
        ..sidecar_options(pod.addr, 1)
    })
    .await
    .unwrap();
    let mut client = h2_client::<Full<Bytes>>(sidecar.data_addr).await;
    let response = client
        .send_request(grpc_call(HOST, "/stream?chunks=3&ms=20", &[]))
        .await
        .unwrap();
    let (body, trailers) = read_all(response).await;
    assert_eq!(body, "chunk 0;chunk 1;chunk 2;");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    assert_eq!(pod.seen.http2.load(Ordering::SeqCst), 1);
    // An HTTP/1.1 client's request goes to the pod over HTTP/2 as well.
    let r = send(client_for(&sidecar)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(pod.seen.http2.load(Ordering::SeqCst), 2);
    sidecar.drain(Duration::from_secs(5)).await;
}

fn client_for(sidecar: &Sidecar) -> reqwest::RequestBuilder {
    client().get(format!("http://{}/slow?ms=1", sidecar.data_addr))
}

/// A model server that speaks only HTTP/2, as a gRPC server does: no
/// HTTP/1.1 at all. Answers every request 200 with its path.
async fn http2_only_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let path = req.uri().path().to_string();
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(path))))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_in_front_of_an_http2_only_model_probes_it_over_http2() {
    let (model, server) = http2_only_server().await;
    let sidecar = Sidecar::start(SidecarOptions {
        queue_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        drain_period: Duration::ZERO,
        drain_timeout: Duration::from_secs(5),
        workers: 1,
        protocol: UpstreamProtocol::H2c,
        ..sidecar_options(model, 1)
    })
    .await
    .unwrap();
    let readyz = format!("http://{}/readyz", sidecar.admin_addr);
    eventually(Duration::from_secs(5), "the model probed ready", || async {
        client()
            .get(&readyz)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let r = send(client().get(format!("http://{}/v2/health/ready", sidecar.data_addr))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "/v2/health/ready");
    sidecar.drain(Duration::from_secs(5)).await;
    server.abort();
}

/// A KServe v2 `ModelInferRequest` in a gRPC frame: `model_name` (field 1),
/// then a large `raw_input_contents`-like field 7.
fn model_infer_frame(model: &str, payload: usize) -> Vec<u8> {
    let mut message = vec![0x0a, model.len() as u8];
    message.extend_from_slice(model.as_bytes());
    message.push(0x3a);
    let mut len = payload;
    while len >= 0x80 {
        message.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    message.push(len as u8);
    message.extend(std::iter::repeat_n(7u8, payload));
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kserve_grpc_call_is_routed_by_the_model_its_message_names() {
    let pod = upstream().await;
    let gw = TestGateway::start(&h2c_service(&[&pod], "")).await;
    let mut client = h2_client::<Full<Bytes>>(gw.gateway.data_addr()).await;
    let path = "/inference.GRPCInferenceService/ModelInfer";

    // The host names no service; the message names the model. It arrives in
    // pieces (the name split across them), and 200 KB follow the name.
    let frame = Bytes::from(model_infer_frame("redwine-week4", 200_000));
    let (mut sender, body) = futures::channel::mpsc::channel(4);
    let request = Request::post(format!("http://grpc.example.com{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamedBody::new(body))
        .unwrap();
    let mut stream = h2_client::<StreamedBody>(gw.gateway.data_addr()).await;
    let call = tokio::spawn(async move { stream.send_request(request).await });
    for piece in [&frame[..9], &frame[9..30], &frame[30..]] {
        use futures::SinkExt;
        let data = hyper::body::Frame::data(Bytes::copy_from_slice(piece));
        sender.send(Ok(data)).await.unwrap();
        // The gap is the point: each piece reaches the gateway on its own,
        // so the model name is read across frames, not from one.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(sender);
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("sluice-error").is_none());
    let (echoed, _) = read_all(response).await;
    assert_eq!(
        echoed, frame,
        "the pod got the whole message, the peeked start first"
    );
    assert_eq!(pod.last_path(), path);

    // A model no service serves: UNIMPLEMENTED, as for an unknown host.
    let unknown = Request::post(format!("http://grpc.example.com{path}"))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from(model_infer_frame("nobody", 10))))
        .unwrap();
    let response = client.send_request(unknown).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "12");
    // A method that names no model is not read: UNIMPLEMENTED at once.
    let server_ready = grpc_call(
        "grpc.example.com",
        "/inference.GRPCInferenceService/ServerReady",
        &[],
    );
    let response = client.send_request(server_ready).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidi_stream_passes_message_by_message_both_ways() {
    let pod = upstream().await;
    let gw = TestGateway::start(&h2c_service(&[&pod], "    containerConcurrency: 1\n")).await;
    let mut client = h2_client::<StreamedBody>(gw.gateway.data_addr()).await;
    type Frame = hyper::body::Frame<Bytes>;
    let (mut sender, body) = futures::channel::mpsc::channel(1);
    let request = Request::post(format!("http://{HOST}/echo"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamedBody::new(body))
        .unwrap();
    let response = client.send_request(request).await.unwrap();
    let mut answers = response.into_body();
    // Each message comes back before the next is sent: nothing waits for
    // the end of the stream in either direction.
    for i in 0..5 {
        use futures::SinkExt;
        let message = Bytes::from(format!("message {i}"));
        sender.send(Ok(Frame::data(message.clone()))).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), answers.frame())
            .await
            .expect("the echo of this message, before the stream ends")
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_data().unwrap(), message);
        assert_eq!(
            service_in_flight(&gw).await,
            1,
            "one call in flight while it streams"
        );
    }
    drop(sender);
    while let Some(frame) = answers.frame().await {
        frame.unwrap();
    }
    eventually(Duration::from_secs(5), "the call ended", || async {
        service_in_flight(&gw).await == 0
    })
    .await;
}
