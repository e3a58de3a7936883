//! `sluice predictor`: a stand-in model server for demos and tests.
//!
//! It speaks the KServe v1 and v2 inference protocols over a fixed linear
//! model, with a configurable service time, a number of workers (default 1:
//! like a single-worker model server it computes one request at a time and
//! queues the rest, so concurrency above the workers really slows it down),
//! and a start-up delay to mimic a slow-loading model. It is not a model
//! server; put a real one behind sluice in production.
//!
//! The same port serves KServe v2 gRPC (`grpc`): a request whose
//! content-type is `application/grpc*` goes to the gRPC service, any other to
//! the HTTP/JSON routes, so one port answers both (and a process replica's
//! HTTP readiness path keeps working when clients speak gRPC).
//!
//! With `--openai` it is instead a stand-in language model speaking vLLM's
//! OpenAI-compatible API (`openai`), and serves only that.

pub mod grpc;
mod model;
pub mod openai;

pub use self::model::{predict, v1_predict, v2_infer, InputError, FEATURES};

use crate::config::ConnectionSettings;
use crate::metrics::ListenerMetrics;
use crate::server::ServeError;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tonic::codegen::Service;
use tracing::info;

/// Largest request body the predictor reads.
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct PredictorOptions {
    pub listen: SocketAddr,
    pub model: String,
    pub service_time: Duration,
    pub workers: usize,
    pub startup_delay: Duration,
    /// Serve the OpenAI-compatible API (and only it) instead of KServe's.
    pub openai: Option<openai::OpenAiOptions>,
}

struct Model {
    name: String,
    ready: Arc<AtomicBool>,
    workers: Semaphore,
    service_time: Duration,
}

/// A predictor serving in the background.
pub struct Predictor {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Predictor {
    pub async fn start(options: PredictorOptions) -> Result<Predictor, ServeError> {
        let listener = crate::server::listen(options.listen).await?;
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let ready = Arc::new(AtomicBool::new(options.startup_delay.is_zero()));
        if !options.startup_delay.is_zero() {
            let (ready, name) = (ready.clone(), options.model.clone());
            tokio::spawn(async move {
                tokio::time::sleep(options.startup_delay).await;
                ready.store(true, Ordering::Relaxed);
                info!(model = %name, "model loaded");
            });
        }
        let (stop, stopped) = watch::channel(false);
        let task = match options.openai.clone() {
            Some(openai) => {
                let engine = &openai.engine;
                info!(%addr, model = %options.model, batch_size = engine.batch_size, time_to_first_token = ?engine.time_to_first_token, tokens_per_second = engine.tokens_per_second, "sluice predictor (a stand-in OpenAI model server) started");
                let model = openai::OpenAiModel::start(&options.model, openai, ready);
                tokio::spawn(openai::serve(listener, model, stopped))
            }
            None => {
                info!(%addr, model = %options.model, workers = options.workers, service_time = ?options.service_time, "sluice predictor (a stand-in model server) started");
                let model = Arc::new(Model {
                    name: options.model.clone(),
                    ready,
                    workers: Semaphore::new(options.workers.max(1)),
                    service_time: options.service_time,
                });
                tokio::spawn(serve_kserve(listener, model, stopped))
            }
        };
        Ok(Predictor { addr, stop, task })
    }

    /// Stops accepting and waits for requests in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Serves the KServe v1/v2 routes and gRPC service on `listener` until `stop`.
async fn serve_kserve(listener: TcpListener, model: Arc<Model>, stop: watch::Receiver<bool>) {
    crate::server::serve(
        listener,
        crate::server::ServeOptions::new(
            "predictor",
            &ConnectionSettings::default(),
            ListenerMetrics::default(),
        ),
        move |_peer| {
            let model = model.clone();
            let grpc = grpc::server(model.clone());
            // Either body: JSON from the HTTP routes, or gRPC frames and
            // trailers from the gRPC service.
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let model = model.clone();
                let mut grpc = grpc.clone();
                async move {
                    if grpc::is_grpc(&req) {
                        let response = grpc.call(req).await?;
                        Ok::<_, Infallible>(response.map(Either::Right))
                    } else {
                        let response = handle(model, req).await?;
                        Ok(response.map(Either::Left))
                    }
                }
            })
        },
        stop,
    )
    .await;
}

/// Runs a predictor until SIGTERM or SIGINT.
pub async fn run(options: PredictorOptions) -> Result<(), ServeError> {
    use tokio::signal::unix::SignalKind;
    let predictor = Predictor::start(options).await?;
    let mut terminate = crate::server::signals(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    predictor.stop().await;
    Ok(())
}

/// The predictor's endpoints.
enum Route<'a> {
    Live,
    Ready,
    ModelReady(&'a str),
    V1Predict(&'a str),
    V2Infer(&'a str),
    Unknown,
}

fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let v1 = path.strip_prefix("/v1/models/");
    let v2 = path.strip_prefix("/v2/models/");
    match (method, path) {
        (&Method::GET, "/v2/health/live") => Route::Live,
        (&Method::GET, "/v2/health/ready") => Route::Ready,
        (&Method::GET, _) => match (v1, v2) {
            (Some(name), _) if !name.contains(['/', ':']) => Route::ModelReady(name),
            (_, Some(rest)) => rest
                .strip_suffix("/ready")
                .map_or(Route::Unknown, Route::ModelReady),
            _ => Route::Unknown,
        },
        (&Method::POST, _) => match (v1, v2) {
            (Some(rest), _) => rest
                .strip_suffix(":predict")
                .map_or(Route::Unknown, Route::V1Predict),
            (_, Some(rest)) => rest
                .strip_suffix("/infer")
                .map_or(Route::Unknown, Route::V2Infer),
            _ => Route::Unknown,
        },
        _ => Route::Unknown,
    }
}

async fn handle(
    model: Arc<Model>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let route = route(req.method(), &path);
    let named = match route {
        Route::ModelReady(name) | Route::V1Predict(name) | Route::V2Infer(name) => Some(name),
        _ => None,
    };
    if let Some(name) = named.filter(|name| *name != model.name) {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("model {name} not found") }),
        ));
    }
    let response = match route {
        Route::Live => reply(StatusCode::OK, json!({ "live": true })),
        Route::Ready => readiness(&model, json!({ "ready": model.is_ready() })),
        Route::ModelReady(_) => readiness(
            &model,
            json!({ "name": model.name, "ready": model.is_ready() }),
        ),
        Route::V1Predict(_) => model.infer(req, v1_predict).await,
        Route::V2Infer(_) => {
            let name = model.name.clone();
            model.infer(req, move |body| v2_infer(&name, body)).await
        }
        Route::Unknown => reply(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no route for {} {path}", req.method()) }),
        ),
    };
    Ok(response)
}

impl Model {
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Reads the body, waits for a worker, spends the service time, predicts.
    async fn infer(
        &self,
        req: Request<Incoming>,
        predict: impl FnOnce(&[u8]) -> Result<Value, InputError>,
    ) -> Response<Full<Bytes>> {
        if !self.is_ready() {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "error": format!("model {} is not ready", self.name) }),
            );
        }
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": format!("cannot read body: {e}") }),
                )
            }
        };
        match self.work(|| predict(&body)).await {
            Ok(output) => reply(StatusCode::OK, output),
            Err(e) => reply(StatusCode::BAD_REQUEST, json!({ "error": e.to_string() })),
        }
    }

    /// Waits for a worker, spends the service time holding it, then computes:
    /// what every prediction costs, whichever protocol asked for it.
    async fn work<T>(&self, compute: impl FnOnce() -> T) -> T {
        let _worker = self
            .workers
            .acquire()
            .await
            .expect("the semaphore is never closed");
        if !self.service_time.is_zero() {
            tokio::time::sleep(self.service_time).await;
        }
        compute()
    }
}

fn readiness(model: &Model, body: Value) -> Response<Full<Bytes>> {
    let status = if model.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply(status, body)
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
