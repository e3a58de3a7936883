//! The request path's pieces that the data-plane work changed, alone, and a
//! whole request through an in-process gateway against the same request
//! sent straight to the pod. `cargo bench --bench request_path`.
//!
//! Loopback only: one pod (a hyper server) and one gateway (one worker) on
//! 127.0.0.1 port 0, started and stopped by the bench.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use sluice::proxy::request_id;
use sluice::upstream::{connect, Connections};
use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const HOST: &str = "model.bench.example.com";

fn request_ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_id");
    group.bench_function("new", |b| {
        b.iter(|| {
            let mut headers = HeaderMap::new();
            black_box(request_id::ensure(&mut headers))
        })
    });
    let mut with_id = HeaderMap::new();
    with_id.insert(request_id::X_REQUEST_ID, "client-id-42".parse().unwrap());
    group.bench_function("kept", |b| {
        b.iter(|| black_box(request_id::ensure(&mut with_id)))
    });
    group.finish();
}

/// A request's trace context alone: read the caller's `traceparent`, start
/// the request and upstream spans, write the pod's headers, end them. At
/// ratio 0 nothing is recorded (propagation only); at ratio 1 every span is
/// recorded and batched (to a loopback port nobody listens on).
fn trace_context(c: &mut Criterion) {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", nobody.local_addr().unwrap());
    drop(nobody);
    let mut caller = HeaderMap::new();
    caller.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
            .parse()
            .unwrap(),
    );
    let mut group = c.benchmark_group("trace_context");
    for ratio in [0.0, 1.0] {
        let settings = sluice::config::OtlpSettings {
            sampling_ratio: ratio,
            ..sluice::config::OtlpSettings::new(&endpoint)
        };
        let telemetry = sluice::telemetry::Telemetry::start(&settings).unwrap();
        let mut pods = HeaderMap::new();
        group.bench_function(format!("new_trace_ratio_{ratio}"), |b| {
            b.iter(|| {
                let mut trace = telemetry.request(&HeaderMap::new());
                trace.upstream("10.0.0.7:8080", &mut pods);
                trace.set_status(200);
            })
        });
        group.bench_function(format!("unsampled_caller_ratio_{ratio}"), |b| {
            b.iter(|| {
                let mut trace = telemetry.request(&caller);
                trace.upstream("10.0.0.7:8080", &mut pods);
                trace.set_status(200);
            })
        });
        telemetry.shutdown();
    }
    group.finish();
}

/// Nothing beyond the registered families (the gateway adds its live gauges).
#[derive(Debug)]
struct NoLiveGauges;

impl prometheus_client::collector::Collector for NoLiveGauges {
    fn encode(
        &self,
        _: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

/// Counting one answered request: a 200 uses the handle taken with the
/// service, any other code looks its counter up in the family.
fn request_done(c: &mut Criterion) {
    let metrics = sluice::metrics::Metrics::new(NoLiveGauges);
    let service = metrics.service("redwine-week4", "kserve-inference");
    let mut group = c.benchmark_group("metrics/request_done");
    group.bench_function("200", |b| {
        b.iter(|| service.request_done(black_box(200), 0.01))
    });
    group.bench_function("503", |b| {
        b.iter(|| service.request_done(black_box(503), 0.01))
    });
    group.finish();
}

/// A pod: every request gets a small JSON answer at once.
async fn pod() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        br#"{"predictions":[5.6]}"#,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn pool(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let connections = Connections::default();
    let idle = Duration::from_secs(60);
    runtime.block_on(async {
        let addr = pod().await;
        let authority = addr.to_string().parse().unwrap();
        for _ in 0..64 {
            let connection = connect(&authority, Duration::from_secs(1)).await.unwrap();
            connections.put(connection, idle);
        }
    });
    c.bench_function("pool/take_and_put_of_64_idle", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let connection = connections.take(idle).await.expect("an idle connection");
                connections.put(black_box(connection), idle);
            })
        })
    });
}

/// One keep-alive client connection to `addr`.
async fn client(addr: SocketAddr) -> http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

async fn get(sender: &mut http1::SendRequest<Empty<Bytes>>) {
    sender.ready().await.unwrap();
    let request = Request::get("/v1/models/model:predict")
        .header("host", HOST)
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    black_box(response.into_body().collect().await.unwrap());
}

/// A gateway (one worker) in front of `pod`, with `extra` top-level YAML.
async fn gateway(pod: SocketAddr, extra: &str) -> sluice::gateway::Gateway {
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\ndomain: example.com\n\
         gateway: {{connections: {{workers: 1}}}}\n\
         services:\n  - {{name: model, namespace: bench, backend: {{static: [\"{pod}\"]}}}}\n{extra}"
    );
    let config = sluice::config::Config::parse(&yaml).unwrap();
    sluice::gateway::Gateway::start(config, None).await.unwrap()
}

fn round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pod, gateway) = runtime.block_on(async {
        let pod = pod().await;
        (pod, gateway(pod, "").await)
    });
    let mut group = c.benchmark_group("round_trip");
    let mut direct = runtime.block_on(client(pod));
    group.bench_function("direct", |b| b.iter(|| runtime.block_on(get(&mut direct))));
    // Connected only now: idle while `direct` ran, a connection opened
    // before it would be closed by the gateway's idle timeout.
    let mut through = runtime.block_on(client(gateway.data_addr()));
    group.bench_function("through_gateway", |b| {
        b.iter(|| runtime.block_on(get(&mut through)))
    });
    group.finish();
    runtime.block_on(gateway.shutdown(Duration::from_secs(1)));
}

/// The same round trip with `tracing.otlp` set: at ratio 0 (trace context
/// started and passed on, nothing recorded) and at ratio 1 (every span
/// recorded and batched). The receiver is a loopback port nobody listens
/// on: the export thread's failures are dropped batches, off the request path.
fn traced_round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", nobody.local_addr().unwrap());
    drop(nobody);
    let mut group = c.benchmark_group("round_trip_traced");
    for ratio in ["0", "1"] {
        let (mut through, gateway) = runtime.block_on(async {
            let pod = pod().await;
            let tracing = format!(
                "tracing: {{otlp: {{endpoint: \"{endpoint}\", samplingRatio: {ratio}}}}}\n"
            );
            let gateway = gateway(pod, &tracing).await;
            (client(gateway.data_addr()).await, gateway)
        });
        group.bench_function(format!("ratio_{ratio}"), |b| {
            b.iter(|| runtime.block_on(get(&mut through)))
        });
        runtime.block_on(gateway.shutdown(Duration::from_secs(1)));
    }
    group.finish();
}

criterion_group!(
    benches,
    request_ids,
    request_done,
    trace_context,
    pool,
    round_trip,
    traced_round_trip
);
criterion_main!(benches);
