//! The errors sluice answers itself. Each becomes a response in one place,
//! [`ProxyError::into_response`]: a JSON body and a `sluice-error` header, so a
//! user can tell sluice's own failures from the model's.

use crate::routing;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::Full;

pub const SLUICE_ERROR: HeaderName = HeaderName::from_static("sluice-error");
/// On a cold-start response: milliseconds (to the microsecond) the request
/// was held for the first pod.
pub const SLUICE_HELD_MS: HeaderName = HeaderName::from_static("sluice-held-ms");

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The client's request is malformed: a broken body, a missing or doubled
    /// Host. Never the pod's fault.
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("no service for host {host:?} and path {path:?}")]
    RouteNotFound { host: String, path: String },
    /// An OpenAI-style body whose top-level `model` is missing or not a string.
    #[error("the request body names no model (a top-level \"model\" string)")]
    NoModelInBody,
    #[error("model {0:?} is not served here")]
    UnknownModel(String),
    #[error("the request body names no model in its first {limit} bytes (gateway.modelPeekLimit)")]
    ModelPastPeekLimit { limit: u64 },
    #[error("request headers are {size} bytes, over the limit of {limit}")]
    HeadersTooLarge { size: usize, limit: u64 },
    #[error("request has {count} header lines, over the limit of {limit}")]
    TooManyHeaders { count: usize, limit: usize },
    #[error("request body is over the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the service's queue is full")]
    QueueFull,
    #[error("timed out after {0:?} waiting for a free pod")]
    QueueTimeout(std::time::Duration),
    #[error("no pod became ready within {0:?}")]
    ActivationTimeout(std::time::Duration),
    #[error("cannot connect to pod {pod}: {reason}")]
    UpstreamConnect { pod: String, reason: String },
    #[error("pod {pod} did not answer within {timeout:?}")]
    UpstreamTimeout {
        pod: String,
        timeout: std::time::Duration,
    },
    #[error("pod {pod} failed: {reason}")]
    Upstream { pod: String, reason: String },
    /// A gRPC call's own deadline (`grpc-timeout`) passed before its response began.
    #[error("the call's deadline of {0:?} passed")]
    DeadlineExceeded(std::time::Duration),
}

/// How a client expects to be told of an error, by what it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// sluice's own JSON.
    Json,
    /// A gRPC status (`grpc-status`), on an HTTP 200.
    Grpc,
    /// OpenAI's error object, on the API's paths (`/v1/chat/completions`, ...).
    OpenAi,
}

impl Dialect {
    pub fn of<B>(req: &http::Request<B>) -> Dialect {
        if super::grpc::is_grpc(req.headers()) {
            Dialect::Grpc
        } else {
            Dialect::of_path(req.uri().path())
        }
    }

    /// The dialect of a request that is not gRPC, by its path.
    pub fn of_path(path: &str) -> Dialect {
        if routing::names_model_in_body(path) || routing::is_model_list(path) {
            Dialect::OpenAi
        } else {
            Dialect::Json
        }
    }

    /// The HTTP status a client gets for `error`: a gRPC status rides on a 200.
    pub fn status(self, error: &ProxyError) -> u16 {
        match self {
            Dialect::Grpc => 200,
            Dialect::Json | Dialect::OpenAi => error.status().as_u16(),
        }
    }
}

impl ProxyError {
    /// The value of the `sluice-error` header and of `error` in the body.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad-request",
            ProxyError::RouteNotFound { .. } => "route-not-found",
            ProxyError::NoModelInBody | ProxyError::UnknownModel(_) => "model-not-found",
            ProxyError::ModelPastPeekLimit { .. } => "model-past-peek-limit",
            ProxyError::HeadersTooLarge { .. } | ProxyError::TooManyHeaders { .. } => {
                "headers-too-large"
            }
            ProxyError::BodyTooLarge { .. } => "body-too-large",
            ProxyError::QueueFull => "queue-full",
            ProxyError::QueueTimeout(_) => "queue-timeout",
            ProxyError::ActivationTimeout(_) => "activation-timeout",
            ProxyError::UpstreamConnect { .. } => "upstream-connect",
            ProxyError::UpstreamTimeout { .. } => "upstream-timeout",
            ProxyError::Upstream { .. } => "upstream-failed",
            ProxyError::DeadlineExceeded(_) => "deadline-exceeded",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::RouteNotFound { .. }
            | ProxyError::NoModelInBody
            | ProxyError::UnknownModel(_) => StatusCode::NOT_FOUND,
            ProxyError::ModelPastPeekLimit { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::HeadersTooLarge { .. } | ProxyError::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::QueueFull
            | ProxyError::QueueTimeout(_)
            | ProxyError::ActivationTimeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamConnect { .. } | ProxyError::Upstream { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout { .. } | ProxyError::DeadlineExceeded(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    /// True when the client is at fault (a 4xx): logged quietly, since any
    /// client can make as many as it likes, and never counted against a pod.
    pub fn is_clients(&self) -> bool {
        self.status().is_client_error()
    }

    /// The answer in the request's own terms: a gRPC status for a gRPC
    /// call, OpenAI's error object for an OpenAI-style call, else JSON.
    pub fn into_response_for(self, dialect: Dialect) -> Response<Full<Bytes>> {
        match dialect {
            Dialect::Json => self.into_response(),
            Dialect::Grpc => self.into_grpc_response(),
            Dialect::OpenAi => self.into_openai_response(),
        }
    }

    /// As OpenAI's API answers errors, so its SDKs show the message:
    /// `{"error": {"message", "type", "code"}}`, with sluice's kind as the
    /// code (`model_not_found`, `queue_timeout`, ...).
    pub fn into_openai_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let kind = if status.is_client_error() {
            "invalid_request_error"
        } else {
            "server_error"
        };
        let body = serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": kind,
                "param": null,
                "code": self.kind().replace('-', "_"),
            }
        });
        self.with_json(body)
    }

    /// As a gRPC client reads it: HTTP 200 and a trailers-only status.
    pub fn into_grpc_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        let headers = response.headers_mut();
        super::grpc::status_headers(headers, &self);
        headers.insert(SLUICE_ERROR, HeaderValue::from_static(self.kind()));
        response
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": self.kind(),
            "message": self.to_string(),
            "status": self.status().as_u16(),
        });
        self.with_json(body)
    }

    fn with_json(self, body: serde_json::Value) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(SLUICE_ERROR, HeaderValue::from_static(self.kind()));
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status_header_and_json() {
        let r = ProxyError::QueueFull.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["sluice-error"], "queue-full");
        assert_eq!(r.headers()["retry-after"], "1");
        let r = ProxyError::UpstreamTimeout {
            pod: "p".into(),
            timeout: std::time::Duration::from_secs(1),
        }
        .into_response();
        assert_eq!(r.status(), 504);
        assert!(r.headers().get("retry-after").is_none());
        assert_eq!(ProxyError::BodyTooLarge { limit: 1 }.status(), 413);
        let r = ProxyError::BadRequest("no Host".into()).into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["sluice-error"], "bad-request");
        assert!(ProxyError::BadRequest(String::new()).is_clients());
        assert!(!ProxyError::QueueFull.is_clients());
        let r = ProxyError::TooManyHeaders { count: 2, limit: 1 }.into_response();
        assert_eq!(r.status(), 431);
        assert_eq!(r.headers()["sluice-error"], "headers-too-large");
        assert_eq!(
            ProxyError::HeadersTooLarge { size: 2, limit: 1 }.status(),
            431
        );
    }

    #[test]
    fn a_grpc_call_gets_a_trailers_only_status() {
        use http_body::Body;
        let r = ProxyError::QueueFull.into_response_for(Dialect::Grpc);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-message"], "the service's queue is full");
        assert_eq!(r.headers()["sluice-error"], "queue-full");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert!(r.body().is_end_stream(), "no body: trailers-only");
        let r = ProxyError::QueueFull.into_response_for(Dialect::Json);
        assert_eq!(r.status(), 503);
    }

    #[tokio::test]
    async fn an_openai_call_gets_openais_error_object() {
        use http_body_util::BodyExt;
        let r = ProxyError::UnknownModel("gpt-x".into()).into_response_for(Dialect::OpenAi);
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["sluice-error"], "model-not-found");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "message": "model \"gpt-x\" is not served here",
                "type": "invalid_request_error",
                "param": null,
                "code": "model_not_found",
            }})
        );
        let r = ProxyError::QueueFull.into_response_for(Dialect::OpenAi);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["type"], "server_error");
        assert_eq!(body["error"]["code"], "queue_full");
        assert_eq!(ProxyError::ModelPastPeekLimit { limit: 1024 }.status(), 413);
    }

    #[test]
    fn the_dialect_follows_the_request() {
        let req = |path: &str, content_type: &str| {
            http::Request::post(path)
                .header("content-type", content_type)
                .body(())
                .unwrap()
        };
        let json = "application/json";
        assert_eq!(
            Dialect::of(&req("/v1/chat/completions", json)),
            Dialect::OpenAi
        );
        assert_eq!(
            Dialect::of(&req("/openai/v1/models", json)),
            Dialect::OpenAi
        );
        assert_eq!(
            Dialect::of(&req("/v1/models/m:predict", json)),
            Dialect::Json
        );
        let grpc = req(
            "/inference.GRPCInferenceService/ModelInfer",
            "application/grpc",
        );
        assert_eq!(Dialect::of(&grpc), Dialect::Grpc);
        assert_eq!(Dialect::Grpc.status(&ProxyError::QueueFull), 200);
        assert_eq!(Dialect::OpenAi.status(&ProxyError::QueueFull), 503);
    }
}
