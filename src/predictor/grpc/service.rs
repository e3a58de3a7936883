//! The six calls of `inference.GRPCInferenceService` over the predictor's model.

use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use super::tensor::{read_input, write_output, OUTPUT_NAME};
use crate::predictor::model::{predict_rows, FEATURES};
use crate::predictor::Model;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// What `ServerMetadata` calls this server.
const SERVER_NAME: &str = "sluice-predictor";

pub struct Inference {
    model: Arc<Model>,
}

// === impl Inference ===

impl Inference {
    pub(super) fn new(model: Arc<Model>) -> Self {
        Inference { model }
    }

    /// NOT_FOUND unless `name` is the predictor's model. The model has one
    /// version, so a requested version is not checked.
    fn known(&self, name: &str) -> Result<(), Status> {
        if name == self.model.name {
            Ok(())
        } else {
            Err(Status::not_found(format!("model {name} not found")))
        }
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.model.is_ready();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        self.known(&request.get_ref().name)?;
        let ready = self.model.is_ready();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: SERVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        self.known(&request.get_ref().name)?;
        let tensor = |name: &str, datatype: &str, shape: Vec<i64>| TensorMetadata {
            name: name.into(),
            datatype: datatype.into(),
            shape,
        };
        Ok(Response::new(ModelMetadataResponse {
            name: self.model.name.clone(),
            versions: Vec::new(),
            platform: SERVER_NAME.into(),
            // FP64 is taken too; metadata has room for one datatype, and FP32
            // is what KServe's v2 examples send.
            inputs: vec![tensor("input-0", "FP32", vec![-1, FEATURES as i64])],
            outputs: vec![tensor(OUTPUT_NAME, "FP64", vec![-1])],
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let request = request.into_inner();
        self.known(&request.model_name)?;
        if !self.model.is_ready() {
            return Err(Status::unavailable(format!(
                "model {} is not ready",
                self.model.name
            )));
        }
        // Bad input is refused before it takes a worker: nothing to compute.
        let input = read_input(&request).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(other) = request.outputs.iter().find(|o| o.name != OUTPUT_NAME) {
            return Err(Status::invalid_argument(format!(
                "outputs: the model has one output, {OUTPUT_NAME}, not {:?}",
                other.name
            )));
        }
        let predictions = self.model.work(|| predict_rows(&input.data)).await;
        Ok(Response::new(write_output(
            &self.model.name,
            request.id,
            &predictions,
            input.raw,
        )))
    }
}
