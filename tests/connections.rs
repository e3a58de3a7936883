//! Client connections: every phase has a timeout (nothing sent, TLS
//! handshake, request head, idle between requests, HTTP/2 pings), the open
//! connections are bounded, and the binary raises its open file limit and
//! neither spins nor floods its log when out of file descriptors.

mod support;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice::config::{ConnectionSettings, Dur};
use sluice::webhook::WebhookConnections;
use std::time::{Duration, Instant};
use support::process::{with_file_limit, GatewayProcess};
use support::{
    client, eventually, get_text, holds_until, metric, one_service, poll_until, send, upstream,
    TestGateway, Upstream, HOST,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a connection may take to be closed after its (short) timeout.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);
const HALF_SECOND: Duration = Duration::from_millis(500);
const MINUTE: Duration = Duration::from_secs(60);

/// A gateway in front of `pod` with these `gateway.connections` settings.
async fn gateway(pod: &Upstream, connections: &str) -> TestGateway {
    let yaml = format!(
        "gateway:\n  connections: {{ {connections} }}\n{}",
        one_service(&[pod], "")
    );
    TestGateway::start(&yaml).await
}

/// Reads until the peer closes (end of stream or reset), and returns what
/// it sent; panics if the connection is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration, what: &str) -> Vec<u8> {
    let mut seen = Vec::new();
    let read_to_close = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(within, read_to_close).await.is_err() {
        panic!("{what}: still open after {within:?}");
    }
    seen
}

async fn metrics(gw: &TestGateway) -> String {
    get_text(gw.admin_url("/metrics")).await
}

fn timeouts(text: &str, phase: &str) -> Option<f64> {
    metric(
        text,
        &format!("sluice_connection_timeouts_total{{listener=\"data\",phase=\"{phase}\"}}"),
    )
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let pod = upstream().await;
    let gw = gateway(&pod, "firstByteTimeout: 300ms").await;
    let mut silent = TcpStream::connect(gw.gateway.data_addr()).await.unwrap();
    let sent = closed_within(&mut silent, CLOSED_WITHIN, "a silent connection").await;
    assert!(sent.is_empty(), "nothing to answer: {sent:?}");
    assert_eq!(timeouts(&metrics(&gw).await, "first_byte"), Some(1.0));
}

#[tokio::test]
async fn request_heads_that_stop_halfway_are_closed_http1_and_the_http2_preface() {
    let pod = upstream().await;
    let gw = gateway(&pod, "firstByteTimeout: 30s, headerReadTimeout: 300ms").await;
    let addr = gw.gateway.data_addr();
    let mut preface = TcpStream::connect(addr).await.unwrap();
    // 16 of the 24 bytes of the HTTP/2 client preface.
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut head = TcpStream::connect(addr).await.unwrap();
    head.write_all(format!("GET / HTTP/1.1\r\nhost: {HOST}\r\n").as_bytes())
        .await
        .unwrap();
    closed_within(&mut preface, CLOSED_WITHIN, "a stalled HTTP/2 preface").await;
    closed_within(&mut head, CLOSED_WITHIN, "a stalled HTTP/1 head").await;
    let text = metrics(&gw).await;
    assert_eq!(timeouts(&text, "header_read"), Some(2.0));
    assert_eq!(timeouts(&text, "first_byte"), Some(0.0));
    assert_eq!(pod.hits(), 0);
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_a_busy_one_is_not() {
    let pod = upstream().await;
    let gw = gateway(&pod, "idleTimeout: 300ms").await;
    let tcp = TcpStream::connect(gw.gateway.data_addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    // A request longer than the idle timeout, then another on the same
    // connection: in flight is not idle, and keep-alive works.
    for path in ["/slow?ms=900", "/"] {
        let request = http::Request::get(path)
            .header("host", HOST)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.into_body().collect().await.unwrap();
    }
    tokio::time::timeout(CLOSED_WITHIN, connection)
        .await
        .expect("an idle HTTP/1 connection is closed")
        .unwrap()
        .unwrap();
    let text = metrics(&gw).await;
    assert_eq!(timeouts(&text, "idle"), Some(1.0));
    assert_eq!(pod.hits(), 2);
}

#[tokio::test]
async fn an_idle_http2_connection_gets_goaway_a_busy_one_does_not() {
    let pod = upstream().await;
    let gw = gateway(&pod, "idleTimeout: 300ms").await;
    let tcp = TcpStream::connect(gw.gateway.data_addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    for path in ["/slow?ms=900", "/"] {
        let request = http::Request::get(format!("http://{HOST}{path}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.into_body().collect().await.unwrap();
    }
    tokio::time::timeout(CLOSED_WITHIN, connection)
        .await
        .expect("an idle HTTP/2 connection is closed")
        .unwrap()
        .unwrap();
    assert_eq!(timeouts(&metrics(&gw).await, "idle"), Some(1.0));
}

#[tokio::test]
async fn an_http2_client_that_stops_answering_pings_is_closed_while_busy() {
    use support::h2frames::{frame, literal, HEADERS, PING, PREFACE, SETTINGS};
    let pod = upstream().await;
    let gw = gateway(
        &pod,
        "http2KeepAliveInterval: 200ms, http2KeepAliveTimeout: 300ms",
    )
    .await;
    let mut tcp = TcpStream::connect(gw.gateway.data_addr()).await.unwrap();
    // GET /slow?ms=20000: in flight far longer than the test.
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.extend(literal(4, "/slow?ms=20000"));
    block.extend(literal(1, HOST));
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    hello.extend(frame(HEADERS, 0x4 | 0x1, 1, &block)); // END_HEADERS | END_STREAM
    tcp.write_all(&hello).await.unwrap();

    // Acknowledge the server's settings, never its pings.
    let started = Instant::now();
    let mut pings = 0;
    let read_to_close = async {
        let mut header = [0u8; 9];
        while tcp.read_exact(&mut header).await.is_ok() {
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            if tcp.read_exact(&mut payload).await.is_err() {
                break;
            }
            match (header[3], header[4] & 1) {
                (SETTINGS, 0) => tcp.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap(),
                (PING, 0) => pings += 1,
                _ => {}
            }
        }
    };
    tokio::time::timeout(CLOSED_WITHIN, read_to_close)
        .await
        .unwrap_or_else(|_| panic!("still open {:?} after its pings", started.elapsed()));
    assert!(pings >= 1, "closed without a ping");
    assert_eq!(pod.hits(), 1, "the request was in flight");
}

#[tokio::test]
async fn at_max_connections_new_ones_wait_until_one_closes() {
    let pod = upstream().await;
    let gw = gateway(&pod, "maxConnections: 20, firstByteTimeout: 60s").await;
    let addr = gw.gateway.data_addr();
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let open = "sluice_open_connections{listener=\"data\"}";
    eventually(CLOSED_WITHIN, "20 connections open", || async {
        metric(&metrics(&gw).await, open) == Some(20.0)
    })
    .await;

    // The 21st connects (the kernel's backlog) but is not served.
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n");
    waiting.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut first)).await;
    assert!(early.is_err(), "served beyond the limit: {early:?}");
    let text = metrics(&gw).await;
    assert_eq!(metric(&text, open), Some(20.0));
    let reached = "sluice_connection_limit_reached_total{listener=\"data\"}";
    assert!(metric(&text, reached) >= Some(1.0), "{text}");

    // One closes: the waiting one is served.
    drop(silent.pop());
    let answer = closed_within(&mut waiting, CLOSED_WITHIN, "the waiting connection").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // All close: new requests are served as before.
    drop(silent);
    eventually(CLOSED_WITHIN, "no connection open", || async {
        metric(&metrics(&gw).await, open) == Some(0.0)
    })
    .await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(send(c.get(gw.url("/"))).await.status(), 200);
    }
}

fn webhook_connections(first_byte: Duration, tls_handshake: Duration) -> WebhookConnections {
    WebhookConnections {
        settings: ConnectionSettings {
            first_byte_timeout: Dur(first_byte),
            ..ConnectionSettings::default()
        },
        tls_handshake_timeout: tls_handshake,
    }
}

#[tokio::test]
async fn a_webhook_connection_silent_before_or_stalled_in_its_tls_handshake_is_closed() {
    // Silent: the first byte's timeout, with a long handshake bound.
    let (silent_hook, connector, _dir) =
        support::webhook::start(webhook_connections(HALF_SECOND, MINUTE)).await;
    let mut silent = TcpStream::connect(silent_hook.addr).await.unwrap();
    closed_within(&mut silent, CLOSED_WITHIN, "a silent webhook connection").await;
    // A real client still gets through.
    let mut sender = support::webhook::https(silent_hook.addr, &connector).await;
    let request = http::Request::get("/healthz")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);

    // Stalled: the start of a ClientHello, then nothing, with a long
    // first-byte bound and a short handshake one.
    let (stalled_hook, _, _dir) =
        support::webhook::start(webhook_connections(MINUTE, HALF_SECOND)).await;
    let mut stalled = TcpStream::connect(stalled_hook.addr).await.unwrap();
    // A handshake record of 512 bytes, of which only the type arrives.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    closed_within(&mut stalled, CLOSED_WITHIN, "a stalled TLS handshake").await;
    silent_hook.stop().await;
    stalled_hook.stop().await;
}

/// The soft and hard open file limits of process `pid`.
fn file_limits(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

/// A child process, killed when dropped (also when the test fails).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_serving_command_raises_its_open_file_limit_to_the_hard_limit() {
    use std::io::BufRead;
    let mut child = with_file_limit("-S -n 256")
        .args(["predictor", "--port", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = Killed(child);
    // The limit is raised before the server starts: wait for it to start.
    let started = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("started"))
    });
    let started = tokio::time::timeout(CLOSED_WITHIN, started).await;
    assert!(
        matches!(started, Ok(Ok(true))),
        "the predictor did not start"
    );
    let (soft, hard) = file_limits(child.0.id()).expect("/proc/PID/limits");
    assert_eq!(soft, hard, "the soft limit (was 256) raised to the hard");
}

/// Silent connections to `addr`: kept open until dropped.
async fn silent_connections(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        open.push(TcpStream::connect(addr).await.unwrap());
    }
    open
}

#[tokio::test]
async fn out_of_file_descriptors_accepting_backs_off_and_logs_once_a_second() {
    let pod = upstream().await;
    // A bound the 64 descriptors cannot hold: accept runs out of them.
    let yaml = format!(
        "gateway:\n  connections: {{ maxConnections: 1000, firstByteTimeout: 60s }}\n{}",
        one_service(&[&pod], "")
    );
    let gw = GatewayProcess::start_with_file_limit(&yaml, 64);
    let started = Instant::now();
    let silent = silent_connections(gw.data, 100).await;
    let failures = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("accept failed"))
            .map(String::from)
            .collect()
    };
    // The second report says how many failures it did not log.
    poll_until(
        Duration::from_secs(10),
        "a second accept failure report",
        || async {
            let lines = failures(&gw.log_text());
            match lines.get(1) {
                Some(line) if !line.contains("not_logged=0") => Ok(()),
                _ => Err(lines.join("\n")),
            }
        },
    )
    .await;
    let lines = failures(&gw.log_text());
    let seconds = started.elapsed().as_secs();
    assert!(
        lines.len() as u64 <= seconds + 1,
        "{} reports in {seconds} s:\n{}",
        lines.len(),
        lines.join("\n")
    );
    // Descriptors free again: served again.
    drop(silent);
    let c = client();
    poll_until(Duration::from_secs(10), "a request served", || async {
        let response = c.get(gw.url("/")).header("host", HOST).send().await;
        match response {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn with_few_file_descriptors_the_default_bound_stops_accepting_before_they_run_out() {
    let pod = upstream().await;
    let yaml = format!(
        "gateway:\n  connections: {{ firstByteTimeout: 60s }}\n{}",
        one_service(&[&pod], "")
    );
    // 64 descriptors: the default bound is its floor, 16.
    let gw = GatewayProcess::start_with_file_limit(&yaml, 64);
    let silent = silent_connections(gw.data, 40).await;
    let c = client();
    let text = poll_until(CLOSED_WITHIN, "the limit reached", || async {
        let text = c
            .get(gw.admin_url("/metrics"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let reached = "sluice_connection_limit_reached_total{listener=\"data\"}";
        match metric(&text, reached) {
            Some(n) if n >= 1.0 => Ok(text),
            _ => Err(text),
        }
    })
    .await;
    assert_eq!(
        metric(&text, "sluice_open_connections{listener=\"data\"}"),
        Some(16.0)
    );
    let log = gw.log_text();
    assert!(log.contains("connection limit 16 reached"), "{log}");
    assert!(!log.contains("accept failed"), "{log}");
    drop(silent);
    poll_until(CLOSED_WITHIN, "a request served", || async {
        let response = c.get(gw.url("/")).header("host", HOST).send().await;
        match response {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

// --- workers: one port, one bound and one set of limits for all ---

/// A request on a connection of its own, answered and closed.
async fn one_request(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = closed_within(&mut stream, MINUTE, path).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn several_workers_serve_one_port_under_one_containerconcurrency() {
    let pod = upstream().await;
    let yaml = format!(
        "gateway:\n  connections: {{ workers: 4 }}\n{}",
        one_service(&[&pod], "    containerConcurrency: 1\n")
    );
    let gw = TestGateway::start(&yaml).await;
    let addr = gw.gateway.data_addr();
    // Forty connections at once, spread by the kernel over four sockets.
    let answers =
        futures::future::join_all((0..40).map(|_| one_request(addr, "/slow?ms=10"))).await;
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(pod.hits(), 40);
    assert_eq!(pod.peak(), 1, "containerConcurrency 1 holds across workers");
}

#[tokio::test]
async fn the_connection_bound_holds_for_all_workers_together() {
    let pod = upstream().await;
    let gw = gateway(&pod, "workers: 3, maxConnections: 6, firstByteTimeout: 60s").await;
    let addr = gw.gateway.data_addr();
    let open = "sluice_open_connections{listener=\"data\"}";
    let mut first = silent_connections(addr, 12).await;
    eventually(CLOSED_WITHIN, "6 connections open", || async {
        metric(&metrics(&gw).await, open) == Some(6.0)
    })
    .await;
    // The other six, waiting, are not served: the bound holds for half a second.
    holds_until(
        Instant::now() + HALF_SECOND,
        Duration::from_millis(50),
        || async {
            let text = metrics(&gw).await;
            assert_eq!(metric(&text, open), Some(6.0), "never more than the bound");
        },
    )
    .await;
    let text = metrics(&gw).await;
    let reached = "sluice_connection_limit_reached_total{listener=\"data\"}";
    assert!(metric(&text, reached) >= Some(1.0), "{text}");

    // Whichever workers the served ones were on, the waiting ones get their
    // slots when they close.
    let second = first.split_off(6);
    drop(first);
    let request = format!("GET / HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n");
    for mut waiting in second {
        waiting.write_all(request.as_bytes()).await.unwrap();
        let answer = closed_within(&mut waiting, CLOSED_WITHIN, "a waiting connection").await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    eventually(CLOSED_WITHIN, "no connection open", || async {
        metric(&metrics(&gw).await, open) == Some(0.0)
    })
    .await;
    let answer = one_request(addr, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn the_binary_runs_one_thread_per_worker() {
    let pod = upstream().await;
    let yaml = format!(
        "gateway:\n  connections: {{ workers: 3 }}\n{}",
        one_service(&[&pod], "")
    );
    let gw = GatewayProcess::start(&yaml);
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", gw.pid()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    for worker in ["sluice-worker-1", "sluice-worker-2"] {
        assert!(names.iter().any(|n| n == worker), "{names:?}");
    }
    assert!(!names.iter().any(|n| n == "sluice-worker-3"), "{names:?}");
    for _ in 0..10 {
        let answer = one_request(gw.data, "/").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
