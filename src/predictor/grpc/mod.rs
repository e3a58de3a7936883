//! KServe v2 gRPC (`inference.GRPCInferenceService`, from KServe's
//! `grpc_predict_v2.proto` in `proto/`) for the stand-in predictor, served on
//! the HTTP port: the same model, service time and workers as the HTTP routes.

mod service;
mod tensor;

use self::proto::grpc_inference_service_server::GrpcInferenceServiceServer;
use self::service::Inference;
use super::{Model, MAX_BODY};
use http::header::CONTENT_TYPE;
use http::Request;
use std::sync::Arc;

/// The code prost and tonic generate from the proto at build time (see
/// `build.rs`): the messages, the server trait, and a client generic over its
/// channel, for tests and benches.
pub mod proto {
    tonic::include_proto!("inference");
}

/// Whether a request is a gRPC call (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC service over the predictor's model; cheap to clone (one per request).
pub(super) fn server(model: Arc<Model>) -> GrpcInferenceServiceServer<Inference> {
    GrpcInferenceServiceServer::new(Inference::new(model)).max_decoding_message_size(MAX_BODY)
}
