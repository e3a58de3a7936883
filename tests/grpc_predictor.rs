//! The stand-in predictor's KServe v2 gRPC service: a tonic client over
//! 127.0.0.1 to `sluice predictor` run as a child process, on the same port
//! as its HTTP/JSON routes; and the same through a gateway (`protocol: h2c`)
//! whose process actuator starts and scales the predictors.

mod support;

use sluice::predictor::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use sluice::predictor::grpc::proto::model_infer_request::InferInputTensor;
use sluice::predictor::grpc::proto::{
    InferTensorContents, ModelInferRequest, ModelMetadataRequest, ModelReadyRequest,
    ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use sluice::predictor::{predict, FEATURES};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::config::{quoted, Service as ServiceConfig};
use support::process::PredictorProcess;
use support::*;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

const MODEL: &str = "redwine-week4";

/// Two rows of the red wine data set.
const ROWS: [[f64; FEATURES]; 2] = [
    [
        7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
    ],
    [
        7.8, 0.88, 0.0, 2.6, 0.098, 25.0, 67.0, 0.9968, 3.2, 0.68, 9.8,
    ],
];

async fn client(addr: SocketAddr) -> GrpcInferenceServiceClient<Channel> {
    client_for(addr, None).await
}

/// A client of `addr` whose calls carry `authority` (a gateway routes on it).
async fn client_for(
    addr: SocketAddr,
    authority: Option<&str>,
) -> GrpcInferenceServiceClient<Channel> {
    let mut endpoint = Endpoint::from_shared(format!("http://{addr}")).unwrap();
    if let Some(authority) = authority {
        endpoint = endpoint.origin(format!("http://{authority}").parse().unwrap());
    }
    let channel = endpoint
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to the predictor at {addr}: {e}"));
    GrpcInferenceServiceClient::new(channel)
}

fn flat() -> Vec<f64> {
    ROWS.concat()
}

fn expected() -> Vec<f64> {
    ROWS.iter().map(|row| predict(row)).collect()
}

/// A ModelInfer request for `model` with one `[rows, 11]` tensor.
fn infer(
    model: &str,
    datatype: &str,
    shape: Vec<i64>,
    contents: InferTensorContents,
) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        id: "call-1".into(),
        inputs: vec![InferInputTensor {
            name: "input-0".into(),
            datatype: datatype.into(),
            shape,
            contents: Some(contents),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn fp64(data: Vec<f64>) -> InferTensorContents {
    InferTensorContents {
        fp64_contents: data,
        ..Default::default()
    }
}

#[tokio::test]
async fn health_and_metadata_calls_answer_for_the_model() {
    let predictor = PredictorProcess::start(&["--model-name", MODEL]);
    let mut grpc = client(predictor.addr).await;

    let live = grpc.server_live(ServerLiveRequest {}).await.unwrap();
    assert!(live.into_inner().live);
    let ready = grpc.server_ready(ServerReadyRequest {}).await.unwrap();
    assert!(ready.into_inner().ready);
    let ready = grpc
        .model_ready(ModelReadyRequest {
            name: MODEL.into(),
            version: String::new(),
        })
        .await
        .unwrap();
    assert!(ready.into_inner().ready);

    let server = grpc
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap();
    let server = server.into_inner();
    assert_eq!(server.name, "sluice-predictor");
    assert_eq!(server.version, env!("CARGO_PKG_VERSION"));

    let model = grpc
        .model_metadata(ModelMetadataRequest {
            name: MODEL.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(model.name, MODEL);
    assert_eq!(model.inputs.len(), 1);
    assert_eq!(model.inputs[0].shape, vec![-1, FEATURES as i64]);
    assert_eq!(model.outputs.len(), 1);
    assert_eq!(model.outputs[0].name, "output-0");
    assert_eq!(model.outputs[0].datatype, "FP64");
}

#[tokio::test]
async fn an_unknown_model_is_not_found() {
    let predictor = PredictorProcess::start(&["--model-name", MODEL]);
    let mut grpc = client(predictor.addr).await;
    let other = "whitewine";

    let ready = grpc
        .model_ready(ModelReadyRequest {
            name: other.into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(ready.code(), Code::NotFound, "{ready:?}");
    assert!(ready.message().contains(other), "{ready:?}");
    let metadata = grpc
        .model_metadata(ModelMetadataRequest {
            name: other.into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(metadata.code(), Code::NotFound, "{metadata:?}");
    let call = infer(other, "FP64", vec![2, 11], fp64(flat()));
    let infer = grpc.model_infer(call).await.unwrap_err();
    assert_eq!(infer.code(), Code::NotFound, "{infer:?}");
}

#[tokio::test]
async fn model_infer_predicts_each_row_as_the_http_route_does() {
    let predictor = PredictorProcess::start(&["--model-name", MODEL]);
    let mut grpc = client(predictor.addr).await;

    // FP64 in `contents`: the answer comes back in `contents`.
    let call = infer(MODEL, "FP64", vec![2, 11], fp64(flat()));
    let answer = grpc.model_infer(call).await.unwrap().into_inner();
    assert_eq!(answer.model_name, MODEL);
    assert_eq!(answer.id, "call-1", "the request's id is echoed");
    let [output] = answer.outputs.as_slice() else {
        panic!("one output: {answer:?}");
    };
    assert_eq!(
        (output.name.as_str(), output.datatype.as_str()),
        ("output-0", "FP64")
    );
    assert_eq!(output.shape, vec![2]);
    let predictions = output.contents.as_ref().unwrap().fp64_contents.clone();
    assert_eq!(predictions, expected());

    // The same port's HTTP/JSON v2 route gives the same numbers.
    let url = format!("http://{}/v2/models/{MODEL}/infer", predictor.addr);
    let body = serde_json::json!({
        "inputs": [{ "name": "input-0", "shape": [2, 11], "datatype": "FP64", "data": flat() }]
    });
    let http: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http["outputs"][0]["data"], serde_json::json!(predictions));

    // FP32 (KServe's usual input) also works, to f32's precision.
    let contents = InferTensorContents {
        fp32_contents: flat().iter().map(|&x| x as f32).collect(),
        ..Default::default()
    };
    let answer = grpc
        .model_infer(infer(MODEL, "FP32", vec![2, 11], contents))
        .await
        .unwrap()
        .into_inner();
    let fp32 = &answer.outputs[0].contents.as_ref().unwrap().fp64_contents;
    assert_eq!(fp32.len(), 2);
    for (got, want) in fp32.iter().zip(expected()) {
        assert!((got - want).abs() < 0.01, "{got} against {want}");
    }

    // Raw little-endian input: the answer comes back raw too.
    let mut raw = infer(MODEL, "FP64", vec![2, 11], fp64(vec![]));
    raw.inputs[0].contents = None;
    raw.raw_input_contents = vec![flat().iter().flat_map(|x| x.to_le_bytes()).collect()];
    let answer = grpc.model_infer(raw).await.unwrap().into_inner();
    assert!(answer.outputs[0].contents.is_none());
    let [bytes] = answer.raw_output_contents.as_slice() else {
        panic!("one raw output: {answer:?}");
    };
    let raw: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(raw, expected());
}

#[tokio::test]
async fn a_bad_tensor_is_an_invalid_argument() {
    let predictor = PredictorProcess::start(&["--model-name", MODEL]);
    let mut grpc = client(predictor.addr).await;
    let cases = [
        // Two rows' shape, one row's numbers.
        (
            infer(MODEL, "FP64", vec![2, 11], fp64(ROWS[0].to_vec())),
            "needs 22 numbers, got 11",
        ),
        // Not [N, 11].
        (
            infer(MODEL, "FP64", vec![22], fp64(flat())),
            "expected [N, 11]",
        ),
        // A datatype the model does not take.
        (
            infer(MODEL, "BYTES", vec![2, 11], fp64(flat())),
            "expected FP32 or FP64",
        ),
        // No input at all.
        (
            ModelInferRequest {
                model_name: MODEL.into(),
                ..Default::default()
            },
            "exactly one tensor",
        ),
    ];
    for (call, message) in cases {
        let status = grpc.model_infer(call).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(message), "{message}: {status:?}");
    }
    // An output the model does not have.
    let mut call = infer(MODEL, "FP64", vec![2, 11], fp64(flat()));
    call.outputs = vec![Default::default()];
    call.outputs[0].name = "probabilities".into();
    let status = grpc.model_infer(call).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("probabilities"), "{status:?}");
    // The predictor is still serving.
    let call = infer(MODEL, "FP64", vec![2, 11], fp64(flat()));
    assert!(grpc.model_infer(call).await.is_ok());
}

#[tokio::test]
async fn a_loading_model_is_not_ready_and_unavailable_until_it_is() {
    let predictor = PredictorProcess::start(&["--model-name", MODEL, "--startup-delay", "1s"]);
    let mut grpc = client(predictor.addr).await;
    let ready = grpc.server_ready(ServerReadyRequest {}).await.unwrap();
    assert!(!ready.into_inner().ready, "not ready while loading");
    let call = infer(MODEL, "FP64", vec![2, 11], fp64(flat()));
    let status = grpc.model_infer(call.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let deadline = Instant::now() + Duration::from_secs(20);
    while !grpc
        .model_ready(ModelReadyRequest {
            name: MODEL.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .ready
    {
        assert!(Instant::now() < deadline, "the model never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = grpc.model_infer(call).await.unwrap().into_inner();
    assert_eq!(
        answer.outputs[0].contents.as_ref().unwrap().fp64_contents,
        expected()
    );
}

#[tokio::test]
async fn calls_take_the_service_time_on_the_predictors_workers() {
    // One worker, 300 ms a call: three calls at once over one HTTP/2
    // connection are served one after another, so the last ends no sooner
    // than 900 ms after they were sent (a lower bound: a slow machine only
    // makes it later).
    let service_time = Duration::from_millis(300);
    let predictor = PredictorProcess::start(&[
        "--model-name",
        MODEL,
        "--service-time",
        "300ms",
        "--workers",
        "1",
    ]);
    let grpc = client(predictor.addr).await;
    let started = Instant::now();
    let calls = (0..3).map(|_| {
        let mut grpc = grpc.clone();
        let call = infer(MODEL, "FP64", vec![2, 11], fp64(flat()));
        async move { grpc.model_infer(call).await }
    });
    let answers = futures::future::join_all(calls).await;
    let elapsed = started.elapsed();
    for answer in answers {
        let answer = answer.unwrap().into_inner();
        assert_eq!(
            answer.outputs[0].contents.as_ref().unwrap().fp64_contents,
            expected()
        );
    }
    assert!(
        elapsed >= service_time * 3,
        "three calls on one worker took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_gateway_a_grpc_model_answers_and_scales_out() {
    // config/examples/grpc.yaml's story, faster: predictors started by the
    // process actuator, spoken to over h2c, 100 ms a call, one at a time.
    let service = ServiceConfig::predictor(
        "redwine-grpc",
        "kserve-inference",
        &["--service-time", "100ms"],
    )
    .set("protocol", "h2c")
    .set("minReplicas", 1)
    .set("maxReplicas", 3)
    .set("scaleTarget", 1);
    let yaml = ConfigBuilder::new()
        .autoscaler("stableWindow", "6s")
        .autoscaler("panicWindowPercentage", 50)
        .autoscaler("tickInterval", "1s")
        .service(service)
        .yaml();
    let gw = TestGateway::start(&yaml).await;
    let s = gw.gateway.shared().routes.load().services()[0].clone();
    eventually(
        Duration::from_secs(20),
        "the first replica ready",
        || async { s.dispatcher().pods().len() == 1 },
    )
    .await;
    let authority = "redwine-grpc.kserve-inference.example.com";
    let grpc = client_for(gw.gateway.data_addr(), Some(authority)).await;

    // The pod's own gRPC statuses come back through the gateway.
    let status = grpc
        .clone()
        .model_infer(infer("whitewine", "FP64", vec![2, 11], fp64(flat())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = grpc
        .clone()
        .model_infer(infer("redwine-grpc", "FP64", vec![22], fp64(flat())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Without the service's host, a call is routed by the model it names.
    let mut by_model = client_for(gw.gateway.data_addr(), None).await;
    let call = infer("redwine-grpc", "FP64", vec![2, 11], fp64(flat()));
    let answer = by_model.model_infer(call).await.unwrap().into_inner();
    assert_eq!(
        answer.outputs[0].contents.as_ref().unwrap().fp64_contents,
        expected()
    );
    let ready = by_model
        .model_ready(ModelReadyRequest {
            name: "redwine-grpc".into(),
            version: String::new(),
        })
        .await
        .unwrap();
    assert!(ready.into_inner().ready);

    // Three callers back to back: three calls in flight for a target of one.
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (mut grpc, stop) = (grpc.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let call = infer("redwine-grpc", "FP64", vec![2, 11], fp64(flat()));
                    answers.push(grpc.model_infer(call).await.map(|a| a.into_inner()));
                }
                answers
            })
        })
        .collect();
    eventually(
        Duration::from_secs(30),
        "more than one replica ready",
        || async { s.dispatcher().pods().len() > 1 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut calls = 0;
    for caller in callers {
        for answer in caller.await.unwrap() {
            let answer = answer.unwrap_or_else(|status| panic!("a call failed: {status:?}"));
            assert_eq!(
                answer.outputs[0].contents.as_ref().unwrap().fp64_contents,
                expected()
            );
            calls += 1;
        }
    }
    assert!(calls >= 3, "{calls} calls");
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_zero_grpc_calls_are_held_then_served_one_at_a_time_through_the_sidecar() {
    // Gateway -> sidecar -> predictor, HTTP/2 on both hops, scaled from
    // zero; containerConcurrency 1 and one replica: calls take turns.
    let bin = env!("CARGO_BIN_EXE_sluice");
    let args = ["--service-time", "300ms", "--startup-delay", "300ms"];
    let service = ServiceConfig::predictor("redwine-grpc", "kserve-inference", &args)
        .backend("sidecar", format!("{{ executable: {} }}", quoted(bin)))
        .set("protocol", "h2c")
        .set("minReplicas", 0)
        .set("initialScale", 0)
        .set("maxReplicas", 1)
        .set("containerConcurrency", 1);
    let gw = TestGateway::start(&ConfigBuilder::new().service(service).yaml()).await;
    let s = gw.gateway.shared().routes.load().services()[0].clone();
    assert_eq!(s.dispatcher().pods().len(), 0, "minReplicas 0 starts none");
    let authority = "redwine-grpc.kserve-inference.example.com";
    let grpc = client_for(gw.gateway.data_addr(), Some(authority)).await;
    let started = Instant::now();
    let calls = (0..3).map(|_| {
        let mut grpc = grpc.clone();
        let call = infer("redwine-grpc", "FP64", vec![2, 11], fp64(flat()));
        async move { grpc.model_infer(call).await }
    });
    let answers = futures::future::join_all(calls).await;
    let elapsed = started.elapsed();
    let mut held = 0;
    for answer in answers {
        let answer = answer.unwrap_or_else(|status| panic!("a held call failed: {status:?}"));
        held += usize::from(answer.metadata().get("sluice-held-ms").is_some());
        let answer = answer.into_inner();
        assert_eq!(
            answer.outputs[0].contents.as_ref().unwrap().fp64_contents,
            expected()
        );
    }
    assert_eq!(held, 3, "every call was held while the replica started");
    // A lower bound (a slow machine only makes it later): the model's
    // startup, then three calls of 300 ms one after another.
    assert!(
        elapsed >= Duration::from_millis(300 + 3 * 300),
        "{elapsed:?}"
    );
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_client_reads_sluices_own_errors_as_grpc_codes() {
    let predictor = PredictorProcess::start(&["--model-name", MODEL, "--service-time", "2s"]);
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let yaml = ConfigBuilder::new()
        .service(
            tutorial(&[predictor.addr])
                .set("protocol", "h2c")
                .set("requestTimeout", "300ms"),
        )
        .service(
            ServiceConfig::static_pods("gone", "kserve-inference", &[gone]).set("protocol", "h2c"),
        )
        .yaml();
    let gw = TestGateway::start(&yaml).await;
    let error_of = |status: &tonic::Status| {
        let error = status.metadata().get("sluice-error");
        (
            status.code(),
            error.map(|v| v.to_str().unwrap().to_string()),
        )
    };

    // No pod to be reached: UNAVAILABLE, which clients retry.
    let mut grpc = client_for(
        gw.gateway.data_addr(),
        Some("gone.kserve-inference.example.com"),
    )
    .await;
    let status = grpc.server_ready(ServerReadyRequest {}).await.unwrap_err();
    assert_eq!(
        error_of(&status),
        (Code::Unavailable, Some("upstream-connect".into()))
    );

    // Neither the host nor the model names a service: UNIMPLEMENTED.
    let mut grpc = client_for(gw.gateway.data_addr(), Some("nobody.example.com")).await;
    let call = infer("nobody", "FP64", vec![2, 11], fp64(flat()));
    let status = grpc.model_infer(call).await.unwrap_err();
    assert_eq!(
        error_of(&status),
        (Code::Unimplemented, Some("route-not-found".into()))
    );

    // The pod takes longer than the service's requestTimeout (300 ms):
    // DEADLINE_EXCEEDED. (A call's own grpc-timeout is tested in h2c.rs
    // with a raw HTTP/2 client: tonic cancels the call itself at that
    // instant, racing sluice's answer.)
    let mut grpc = client_for(gw.gateway.data_addr(), Some(HOST)).await;
    let call = infer(MODEL, "FP64", vec![2, 11], fp64(flat()));
    let status = grpc.model_infer(call).await.unwrap_err();
    assert_eq!(
        error_of(&status),
        (Code::DeadlineExceeded, Some("upstream-timeout".into()))
    );
}
