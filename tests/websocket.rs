//! WebSockets (HTTP/1.1 upgrades) through the gateway and the sidecar: the
//! tunnel is one request in flight while open, and shutdown closes it after
//! the grace period.

mod support;

use futures::{SinkExt, StreamExt};
use sluice::sidecar::{Sidecar, SidecarOptions};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket echo server, counting its open sockets.
struct EchoPod {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn echo_pod() -> EchoPod {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn({
        let open = open.clone();
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                let open = open.clone();
                tokio::spawn(async move {
                    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    open.fetch_add(1, Ordering::SeqCst);
                    while let Some(Ok(message)) = socket.next().await {
                        if message.is_text() || message.is_binary() {
                            let _ = socket.send(message).await;
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    });
    EchoPod { addr, open, task }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `host` through the proxy listening at `proxy`.
async fn open_socket(proxy: SocketAddr, host: &str) -> Socket {
    let request = format!("ws://{host}/chat").into_client_request().unwrap();
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (socket, response) =
        tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .expect("the upgrade goes through");
    assert_eq!(response.status(), 101);
    socket
}

async fn echo(socket: &mut Socket, text: &str) {
    socket.send(Message::text(text)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an answer")
        .unwrap()
        .unwrap();
    assert_eq!(answer, Message::text(text));
}

async fn in_flight(gateway: &TestGateway) -> u64 {
    let status = get_json(gateway.admin_url("/status")).await;
    status["services"][0]["inFlight"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_passes_through_and_is_in_flight_while_open() {
    let pod = echo_pod().await;
    let config = ConfigBuilder::new()
        .service(tutorial(&[pod.addr]).set("containerConcurrency", 1))
        .yaml();
    let gw = TestGateway::start(&config).await;
    let mut socket = open_socket(gw.gateway.data_addr(), HOST).await;
    echo(&mut socket, "hello").await;
    echo(&mut socket, "again").await;
    assert_eq!(
        in_flight(&gw).await,
        1,
        "the open tunnel is a request in flight"
    );
    assert_eq!(pod.open.load(Ordering::SeqCst), 1);

    // containerConcurrency 1: a request waits while the socket is open...
    let waiting = tokio::spawn(send(
        client()
            .get(gw.url("/"))
            .header("host", HOST)
            .timeout(Duration::from_secs(10)),
    ));
    eventually(Duration::from_secs(5), "the request queued", || async {
        let status = get_json(gw.admin_url("/status")).await;
        status["services"][0]["queued"] == 1
    })
    .await;
    holds_until(
        std::time::Instant::now() + Duration::from_millis(300),
        Duration::from_millis(50),
        || async {
            assert!(
                !waiting.is_finished(),
                "served while the socket held the slot"
            )
        },
    )
    .await;
    // ...and goes once it closes.
    socket.close(None).await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the pod's socket closed",
        || async { pod.open.load(Ordering::SeqCst) == 0 },
    )
    .await;
    // It reached the pod (which speaks only WebSocket and hangs up on it).
    let answered = waiting.await.unwrap();
    let error = answered
        .headers()
        .get("sluice-error")
        .map(|v| v.to_str().unwrap().to_string());
    assert_ne!(
        error.as_deref(),
        Some("queue-timeout"),
        "it left the queue for the pod"
    );
    eventually(Duration::from_secs(5), "nothing in flight", || async {
        in_flight(&gw).await == 0
    })
    .await;
    pod.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_open_websocket_for_the_grace_period_then_closes_it() {
    let pod = echo_pod().await;
    let gw = TestGateway::start(&one_service_at(pod.addr)).await;
    let mut socket = open_socket(gw.gateway.data_addr(), HOST).await;
    echo(&mut socket, "before shutdown").await;
    let data_addr = gw.gateway.data_addr();
    let shutdown =
        tokio::spawn(async move { gw.gateway.shutdown(Duration::from_millis(600)).await });
    // Once shutdown has begun (the listener refuses new connections)...
    eventually(Duration::from_secs(5), "the listener closed", || async {
        TcpStream::connect(data_addr).await.is_err()
    })
    .await;
    // ...the open socket still works within the grace period...
    echo(&mut socket, "during the grace period").await;
    // ...then it is closed, and shutdown says not everything finished.
    assert!(!shutdown.await.unwrap(), "a tunnel was cut at the deadline");
    let end = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("the socket ends once the grace period is over");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    eventually(
        Duration::from_secs(5),
        "the pod's socket closed",
        || async { pod.open.load(Ordering::SeqCst) == 0 },
    )
    .await;
    pod.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_passes_through_the_sidecar() {
    let pod = echo_pod().await;
    let sidecar = Sidecar::start(SidecarOptions {
        queue_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        drain_period: Duration::ZERO,
        drain_timeout: Duration::from_millis(500),
        workers: 1,
        ..sidecar_options(pod.addr, 1)
    })
    .await
    .unwrap();
    let mut socket = open_socket(sidecar.data_addr, "model.local").await;
    echo(&mut socket, "through the sidecar").await;
    assert_eq!(sidecar.report().in_flight, 1, "counted while open");
    // Draining waits for the socket up to its timeout, then closes it.
    sidecar.drain(Duration::from_millis(500)).await;
    let end = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("the socket ends when the sidecar has drained");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    pod.task.abort();
}

fn one_service_at(pod: SocketAddr) -> String {
    ConfigBuilder::new().service(tutorial(&[pod])).yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_reaches_an_http11_pod() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_tungstenite::tungstenite::protocol::Role;

    let pod = echo_pod().await;
    let gw = TestGateway::start(&one_service_at(pod.addr)).await;
    // RFC 8441: an HTTP/2 connection whose CONNECT names the websocket protocol.
    let tcp = TcpStream::connect(gw.gateway.data_addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::connect(format!("http://{HOST}/chat"))
        .header("sec-websocket-version", "13")
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let mut response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "the stream is open");
    assert!(response.headers().get("upgrade").is_none());
    let stream = hyper::upgrade::on(&mut response).await.unwrap();
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await;
    socket.send(Message::text("over h2")).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an answer")
        .unwrap()
        .unwrap();
    assert_eq!(answer, Message::text("over h2"));
    assert_eq!(in_flight(&gw).await, 1, "counted while open");
    assert_eq!(
        pod.open.load(Ordering::SeqCst),
        1,
        "the pod took an HTTP/1.1 upgrade"
    );
    socket.close(None).await.unwrap();
    eventually(Duration::from_secs(5), "nothing in flight", || async {
        in_flight(&gw).await == 0
    })
    .await;
    pod.task.abort();
}
