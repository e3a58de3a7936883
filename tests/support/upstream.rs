//! A real HTTP/1.1 upstream ("pod") that records what it sees.
//!
//! Paths: `/slow?ms=N` waits N ms; `/echo` (and KServe v2 gRPC methods, and
//! OpenAI's `.../completions` and `.../embeddings`) stream the request body back
//! (and its trailers as response trailers); `/sink` reads the body and
//! answers its length; `/download?bytes=N` streams N bytes;
//! `/stream?chunks=N&ms=M` sends N chunks M ms apart, then gRPC's trailers;
//! `/ready` is a readiness probe, not counted; `/metrics`, once set with
//! [`Upstream::serve_metrics`], is a model server's own metrics, not counted
//! either; anything else answers the upstream's own address. It speaks
//! HTTP/1.1 and HTTP/2 (prior knowledge).

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct Seen {
    pub hits: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub peak: AtomicUsize,
    pub connections: AtomicUsize,
    /// Requests that came over HTTP/2.
    pub http2: AtomicUsize,
    /// `/stream` responses whose body is still being sent: one that the
    /// proxy gives up on is dropped by hyper, and leaves this count.
    pub streams_open: Arc<AtomicUsize>,
    pub last: Mutex<Option<(http::Method, String, HeaderMap)>>,
    /// What `/metrics` answers, once set.
    pub metrics: Mutex<Option<MetricsAnswer>>,
    /// Requests for `/metrics` once set, answered or not.
    pub metrics_reads: AtomicUsize,
}

/// A model server's `/metrics`, as the test wants it now.
#[derive(Clone, Debug)]
pub enum MetricsAnswer {
    /// 200 with this Prometheus text.
    Text(String),
    /// Never answers: a server too busy, or hung.
    Silent,
}

/// What vLLM's `/metrics` says with these numbers (one model, and a
/// histogram around them as the real one has).
pub fn vllm_metrics(running: f64, waiting: f64, kv_cache_usage: f64) -> String {
    let model = "model_name=\"redwine-week4\"";
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{engine=\"0\",{model}}} {running}\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{engine=\"0\",{model}}} {waiting}\n\
         # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{{engine=\"0\",{model}}} {kv_cache_usage}\n\
         # HELP vllm:e2e_request_latency_seconds Histogram of end to end request latency.\n\
         # TYPE vllm:e2e_request_latency_seconds histogram\n\
         vllm:e2e_request_latency_seconds_bucket{{engine=\"0\",le=\"1.0\",{model}}} 3.0\n\
         vllm:e2e_request_latency_seconds_bucket{{engine=\"0\",le=\"+Inf\",{model}}} 4.0\n\
         vllm:e2e_request_latency_seconds_count{{engine=\"0\",{model}}} 4.0\n\
         vllm:e2e_request_latency_seconds_sum{{engine=\"0\",{model}}} 2.5\n"
    )
}

pub async fn upstream() -> Upstream {
    upstream_at("127.0.0.1:0").await
}

/// "Pods" with their own IPs and one port, as on a cluster: an upstream on
/// each of `ips` (loopback addresses such as 127.0.0.2), all on one port.
pub async fn pods_on_one_port(ips: &[&str]) -> Vec<Upstream> {
    let first = upstream_at(&format!("{}:0", ips[0])).await;
    let port = first.addr.port();
    let mut pods = vec![first];
    for ip in &ips[1..] {
        pods.push(upstream_at(&format!("{ip}:{port}")).await);
    }
    pods
}

pub async fn upstream_at(addr: &str) -> Upstream {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                seen.connections.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(handle(seen, addr, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    });
    Upstream { addr, seen, task }
}

impl Upstream {
    pub fn hits(&self) -> usize {
        self.seen.hits.load(Ordering::SeqCst)
    }

    pub fn peak(&self) -> usize {
        self.seen.peak.load(Ordering::SeqCst)
    }

    pub fn last_headers(&self) -> HeaderMap {
        self.seen.last.lock().unwrap().as_ref().unwrap().2.clone()
    }

    pub fn last_path(&self) -> String {
        self.seen.last.lock().unwrap().as_ref().unwrap().1.clone()
    }

    pub fn streams_open(&self) -> usize {
        self.seen.streams_open.load(Ordering::SeqCst)
    }

    /// From now on `/metrics` answers as `answer` says.
    pub fn serve_metrics(&self, answer: MetricsAnswer) {
        *self.seen.metrics.lock().unwrap() = Some(answer);
    }

    pub fn metrics_reads(&self) -> usize {
        self.seen.metrics_reads.load(Ordering::SeqCst)
    }

    /// Stops accepting; connections already open are closed too.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(seen: Arc<Seen>, addr: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() == "/ready" {
        // A readiness probe: answered, not counted as traffic.
        return text("ready".into());
    }
    if req.uri().path() == "/metrics" {
        let answer = seen.metrics.lock().unwrap().clone();
        if answer.is_some() {
            seen.metrics_reads.fetch_add(1, Ordering::SeqCst);
        }
        match answer {
            Some(MetricsAnswer::Text(body)) => return text(body),
            Some(MetricsAnswer::Silent) => return std::future::pending().await,
            None => {}
        }
    }
    seen.hits.fetch_add(1, Ordering::SeqCst);
    if req.version() == http::Version::HTTP_2 {
        seen.http2.fetch_add(1, Ordering::SeqCst);
    }
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.peak.fetch_max(now, Ordering::SeqCst);
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    *seen.last.lock().unwrap() =
        Some((req.method().clone(), path_and_query, req.headers().clone()));
    let query_number = |key: &str| -> u64 {
        req.uri()
            .query()
            .and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{key}="))?.parse().ok())
            })
            .unwrap_or(0)
    };
    let response = match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_number("ms"))).await;
            text(addr.to_string())
        }
        // KServe v2 gRPC calls are echoed too (their bodies checked whole).
        path if path == "/echo"
            || path.starts_with("/inference.GRPCInferenceService/")
            || path.ends_with("/completions")
            || path.ends_with("/embeddings") =>
        {
            // Trailers are sent over HTTP/1.1 only when declared in `Trailer`.
            let declared = req.headers().get("trailer").cloned();
            let mut r = Response::new(req.into_body().map_err(BoxError::from).boxed());
            r.headers_mut()
                .insert("x-upstream", addr.to_string().parse().unwrap());
            if let Some(declared) = declared {
                r.headers_mut().insert("trailer", declared);
            }
            r
        }
        "/sink" => {
            let mut body = req.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map(|f| f.into_data()) {
                    total += data.map(|d| d.len() as u64).unwrap_or(0);
                }
            }
            text(total.to_string())
        }
        "/download" => {
            let total = query_number("bytes");
            let chunk = Bytes::from(vec![7u8; 64 << 10]);
            let chunks = total / chunk.len() as u64;
            let rest = (total % chunk.len() as u64) as usize;
            let frames = stream::iter(0..chunks)
                .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())))
                .chain(stream::iter(
                    (rest > 0).then(|| Ok(Frame::data(Bytes::from(vec![7u8; rest])))),
                ));
            Response::new(StreamBody::new(frames).map_err(|e| match e {}).boxed())
        }
        "/stream" => {
            let (chunks, every) = (query_number("chunks"), query_number("ms"));
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let open = OpenStream::new(&seen.streams_open);
            let frames = stream::iter(0..chunks)
                .then(move |i| {
                    let _open = &open;
                    async move {
                        tokio::time::sleep(Duration::from_millis(every)).await;
                        Frame::data(Bytes::from(format!("chunk {i};")))
                    }
                })
                .chain(stream::iter([Frame::trailers(trailers)]))
                .map(Ok::<_, Infallible>);
            let mut r = Response::new(StreamBody::new(frames).map_err(|e| match e {}).boxed());
            r.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
            r
        }
        "/trailers" => {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", "abc123".parse().unwrap());
            let frames = stream::iter(vec![
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"with trailers"))),
                Ok(Frame::trailers(trailers)),
            ]);
            let mut r = Response::new(StreamBody::new(frames).map_err(|e| match e {}).boxed());
            r.headers_mut()
                .insert("trailer", "x-checksum".parse().unwrap());
            r
        }
        _ => {
            let mut r = text(addr.to_string());
            r.headers_mut()
                .insert("connection", "keep-alive, x-pod-secret".parse().unwrap());
            r.headers_mut()
                .insert("x-pod-secret", "hop".parse().unwrap());
            r.headers_mut()
                .insert("keep-alive", "timeout=5".parse().unwrap());
            r
        }
    };
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

/// Counts a streamed body open while it lives.
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        OpenStream(count.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn text(body: String) -> Response<Body> {
    Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
}
