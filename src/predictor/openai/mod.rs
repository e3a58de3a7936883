//! `sluice predictor --openai`: a stand-in language model that answers as
//! vLLM's OpenAI-compatible server does, for demos and tests of LLM serving
//! without a GPU.
//!
//! Routes (each `/v1/...` also under KServe's `/openai/v1/...`):
//! `POST /v1/chat/completions`, `POST /v1/completions` (streamed as
//! server-sent events with `"stream": true`, one event per token as it is
//! made), `GET /v1/models` (and `/v1/models/<id>`), `GET /health` (200 once
//! loaded, 503 during `--startup-delay`) and `GET /metrics` (vLLM's names,
//! see [`metrics`]). In this mode the predictor serves these routes only,
//! as vLLM does: not the KServe v1/v2 or gRPC ones, whose `/v1/models/..`
//! would mean something else. A process replica's `readinessPath` is
//! `/health`.
//!
//! Generation is simulated by [`engine`]: a fixed batch of sequences
//! decoded together and a FIFO queue behind it, with a prefill time before
//! each sequence's first token and a decode pace after it. A client that
//! goes away (its response dropped, mid-stream or while waiting) frees its
//! slot at once. The model answers to `--model-name` and any
//! `--model-alias`; its "tokens" are words, prompts counted the same way.
//! `--service-time` and `--workers` are KServe mode's and do not apply here.

mod engine;
mod metrics;
mod request;
mod response;

pub use self::engine::EngineSettings;

use self::engine::Engine;
use self::metrics::{EngineMetrics, Exposition};
use self::request::Endpoint;
use self::response::{error, Completion, EventStream};
use crate::config::ConnectionSettings;
use crate::metrics::ListenerMetrics;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest request body read.
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct OpenAiOptions {
    /// Other names a request's `model` may give.
    pub aliases: Vec<String>,
    pub engine: EngineSettings,
}

/// What the routes share.
pub struct OpenAiModel {
    name: String,
    aliases: Vec<String>,
    /// Set once the start-up delay is over.
    ready: Arc<AtomicBool>,
    created: u64,
    engine: Engine,
    exposition: Exposition,
}

type Body = Either<Full<Bytes>, EventStream>;

/// The predictor's endpoints in this mode.
enum Route<'a> {
    Generate(Endpoint),
    Models,
    Model(&'a str),
    Health,
    Metrics,
    Unknown,
}

/// Serves `model` on `listener` until `stop`.
pub(super) async fn serve(
    listener: TcpListener,
    model: Arc<OpenAiModel>,
    stop: watch::Receiver<bool>,
) {
    let options = crate::server::ServeOptions::new(
        "predictor",
        &ConnectionSettings::default(),
        ListenerMetrics::default(),
    );
    let make_service = move |_peer| {
        let model = model.clone();
        hyper::service::service_fn(move |req| handle(model.clone(), req))
    };
    crate::server::serve(listener, options, make_service, stop).await;
}

fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let path = match path.strip_prefix("/openai") {
        Some(rest) if rest.starts_with("/v1/") => rest,
        _ => path,
    };
    match (method, path) {
        (&Method::POST, "/v1/chat/completions") => Route::Generate(Endpoint::Chat),
        (&Method::POST, "/v1/completions") => Route::Generate(Endpoint::Completion),
        (&Method::GET, "/v1/models") => Route::Models,
        (&Method::GET, "/health") => Route::Health,
        (&Method::GET, "/metrics") => Route::Metrics,
        (&Method::GET, _) => path
            .strip_prefix("/v1/models/")
            .map_or(Route::Unknown, Route::Model),
        _ => Route::Unknown,
    }
}

async fn handle(
    model: Arc<OpenAiModel>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let response = match route(req.method(), &path) {
        Route::Generate(endpoint) => model.generate(endpoint, req).await,
        Route::Models => reply(StatusCode::OK, model.list()),
        Route::Model(id) if model.answers_to(id) => reply(StatusCode::OK, model.card(id)),
        Route::Model(id) => model_not_found(id),
        Route::Health if model.is_ready() => Response::new(Either::Left(Full::default())),
        Route::Health => model.loading(),
        Route::Metrics => {
            let mut response = Response::new(Either::Left(Full::from(model.exposition.encode())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        Route::Unknown => reply(
            StatusCode::NOT_FOUND,
            error(
                &format!("no route for {} {path}", req.method()),
                "invalid_request_error",
                Some("not_found"),
            ),
        ),
    };
    Ok(response)
}

// === impl OpenAiModel ===

impl OpenAiModel {
    /// Starts the engine of the model `name`, which serves once `ready` is set.
    pub(super) fn start(name: &str, options: OpenAiOptions, ready: Arc<AtomicBool>) -> Arc<Self> {
        let (engine_metrics, exposition) = EngineMetrics::new(name);
        Arc::new(OpenAiModel {
            name: name.to_string(),
            aliases: options.aliases,
            ready,
            created: response::unix_now(),
            engine: Engine::start(options.engine, engine_metrics),
            exposition,
        })
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|alias| alias == name)
    }

    /// Reads the request, queues its sequence and answers, whole or streamed.
    async fn generate(&self, endpoint: Endpoint, req: Request<Incoming>) -> Response<Body> {
        if !self.is_ready() {
            return self.loading();
        }
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                let message = format!("cannot read body: {e}");
                return invalid(&message);
            }
        };
        let generation = match request::parse(endpoint, &body) {
            Ok(generation) => generation,
            Err(e) => return invalid(&e.to_string()),
        };
        if !self.answers_to(&generation.model) {
            return model_not_found(&generation.model);
        }
        let completion = Completion::new(endpoint, &generation.model);
        let mut sequence = self
            .engine
            .submit(generation.prompt_tokens, generation.max_tokens);
        if generation.stream {
            let stream = EventStream::new(completion, sequence);
            let mut response = Response::new(Either::Right(stream));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return response;
        }
        // If the client goes away meanwhile, this future and the sequence
        // with it are dropped, which cancels it.
        let mut text = String::new();
        let mut made = 0;
        while let Some(token) = sequence.next_token().await {
            text.push_str(&token.text());
            made += 1;
        }
        if made < generation.max_tokens {
            let message = "the engine stopped before the completion ended";
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                error(message, "service_unavailable", None),
            );
        }
        reply(
            StatusCode::OK,
            completion.whole(&text, generation.prompt_tokens, made),
        )
    }

    /// `GET /v1/models`: the name and every alias, as vLLM lists its served names.
    fn list(&self) -> Value {
        let names = std::iter::once(&self.name).chain(&self.aliases);
        let data: Vec<Value> = names.map(|name| self.card(name)).collect();
        json!({ "object": "list", "data": data })
    }

    fn card(&self, id: &str) -> Value {
        json!({ "id": id, "object": "model", "created": self.created, "owned_by": "sluice" })
    }

    fn loading(&self) -> Response<Body> {
        let message = format!("model {} is loading", self.name);
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            error(&message, "service_unavailable", Some("model_not_ready")),
        )
    }
}

fn invalid(message: &str) -> Response<Body> {
    reply(
        StatusCode::BAD_REQUEST,
        error(message, "invalid_request_error", None),
    )
}

/// OpenAI's own wording and code.
fn model_not_found(name: &str) -> Response<Body> {
    let message = format!("The model `{name}` does not exist.");
    reply(
        StatusCode::NOT_FOUND,
        error(&message, "invalid_request_error", Some("model_not_found")),
    )
}

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_answer_with_and_without_kserves_prefix() {
        let post = |path| route(&Method::POST, path);
        let get = |path| route(&Method::GET, path);
        assert!(matches!(
            post("/v1/chat/completions"),
            Route::Generate(Endpoint::Chat)
        ));
        assert!(matches!(
            post("/openai/v1/chat/completions"),
            Route::Generate(Endpoint::Chat)
        ));
        assert!(matches!(
            post("/openai/v1/completions"),
            Route::Generate(Endpoint::Completion)
        ));
        assert!(matches!(get("/openai/v1/models"), Route::Models));
        assert!(matches!(
            get("/v1/models/org/name"),
            Route::Model("org/name")
        ));
        assert!(matches!(get("/health"), Route::Health));
        assert!(matches!(get("/openai/health"), Route::Unknown));
        assert!(matches!(get("/v1/completions"), Route::Unknown));
        assert!(matches!(post("/v1/models"), Route::Unknown));
    }
}
