//! OpenAI-compatible calls through the gateway: routed by the `model` their
//! JSON body names when the Host names no service, the body forwarded
//! intact, errors in OpenAI's shape, `GET /v1/models`, and the time to the
//! first byte of a streamed answer.

mod support;

use serde_json::{json, Value};
use support::config::{ConfigBuilder, Service};
use support::upstream::{upstream, Upstream};
use support::{client, TestGateway};

/// Two model services on static pods: `llama` (also called by its
/// Hugging Face name) and `mistral`.
async fn two_models(gateway_keys: &[(&str, &str)]) -> (TestGateway, Upstream, Upstream) {
    let (llama, mistral) = (upstream().await, upstream().await);
    let mut config = ConfigBuilder::new()
        .service(
            Service::static_pods("llama", "models", &[llama.addr])
                .set("modelAliases", "[meta-llama/Llama-3.1-8B-Instruct]"),
        )
        .service(Service::static_pods("mistral", "models", &[mistral.addr]));
    for (key, value) in gateway_keys {
        config = config.gateway(key, value);
    }
    let gateway = TestGateway::start(&config.yaml()).await;
    (gateway, llama, mistral)
}

async fn post(gateway: &TestGateway, path: &str, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    // The gateway's own address as Host: it names no service.
    let response = client()
        .post(gateway.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let pod = response
        .headers()
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, pod, response.bytes().await.unwrap().to_vec())
}

fn chat(model: &str, prompt: &str) -> Vec<u8> {
    let body = json!({
        "messages": [{"role": "user", "content": prompt}],
        "model": model,
        "stream": false,
    });
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn calls_go_to_the_model_their_body_names_with_the_body_intact() {
    let (gateway, llama, mistral) = two_models(&[]).await;
    for (path, model, pod) in [
        ("/v1/chat/completions", "mistral", &mistral),
        ("/v1/chat/completions", "llama", &llama),
        (
            "/v1/completions",
            "meta-llama/Llama-3.1-8B-Instruct",
            &llama,
        ),
        ("/openai/v1/chat/completions", "mistral", &mistral),
        ("/v1/embeddings", "llama", &llama),
    ] {
        let body = chat(model, "Say hello");
        let (status, answered_by, echoed) = post(&gateway, path, body.clone()).await;
        assert_eq!(status, 200, "{path} {model}");
        assert_eq!(answered_by, pod.addr.to_string(), "{path} {model}");
        assert_eq!(echoed, body, "the pod got the body intact");
    }
    // A prompt of 300 KB before the model (the OpenAI SDKs write `messages`
    // first): under the default limit of 1 MiB, found, and sent whole.
    let long = chat("mistral", &"token ".repeat(50_000));
    assert!(long.len() > 300_000);
    let (status, answered_by, echoed) = post(&gateway, "/v1/chat/completions", long.clone()).await;
    assert_eq!((status, answered_by), (200, mistral.addr.to_string()));
    assert_eq!(echoed.len(), long.len());
    assert!(echoed == long, "the long body arrived intact");

    // A Host that names a service wins over the body.
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .header("host", "llama.models.example.com")
        .body(chat("mistral", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-upstream"], llama.addr.to_string());
}

#[tokio::test]
async fn a_model_past_the_peek_limit_or_unknown_is_refused_in_openais_shape() {
    let (gateway, llama, mistral) = two_models(&[("modelPeekLimit", "4KiB")]).await;
    let refused = |status: u16, code: &str, body: &[u8]| {
        let body: Value = serde_json::from_slice(body).unwrap();
        let error = &body["error"];
        assert_eq!(error["code"], code, "{body}");
        let kind = if status < 500 {
            "invalid_request_error"
        } else {
            "server_error"
        };
        assert_eq!(error["type"], kind, "{body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    };

    // The model after 10 KB of prompt: not within the first 4 KiB.
    let (status, _, body) = post(
        &gateway,
        "/v1/chat/completions",
        chat("llama", &"x".repeat(10_000)),
    )
    .await;
    assert_eq!(status, 413);
    refused(413, "model_past_peek_limit", &body);
    // The same prompt after the model: only the start is needed.
    let first = format!(r#"{{"model":"llama","prompt":"{}"}}"#, "x".repeat(10_000));
    let (status, pod, echoed) = post(&gateway, "/v1/completions", first.clone().into_bytes()).await;
    assert_eq!((status, pod), (200, llama.addr.to_string()));
    assert_eq!(echoed, first.as_bytes());

    let (status, _, body) = post(&gateway, "/v1/chat/completions", chat("gpt-4o", "hi")).await;
    assert_eq!(status, 404);
    refused(404, "model_not_found", &body);
    let (status, _, body) = post(&gateway, "/v1/completions", br#"{"prompt":"hi"}"#.to_vec()).await;
    assert_eq!(status, 404);
    refused(404, "model_not_found", &body);
    let (status, _, body) = post(&gateway, "/v1/completions", b"{\"model\": llama}".to_vec()).await;
    assert_eq!(status, 400);
    refused(400, "bad_request", &body);
    let (status, _, body) = post(&gateway, "/v1/completions", Vec::new()).await;
    assert_eq!(status, 400);
    refused(400, "bad_request", &body);

    // Only the one call that named a served model (within the limit) reached a pod.
    assert_eq!(llama.hits() + mistral.hits(), 1);
    // The refusals are counted as requests no service took.
    let metrics = support::get_text(gateway.admin_url("/metrics")).await;
    assert_eq!(
        support::metric(&metrics, "sluice_unrouted_requests_total"),
        Some(5.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn v1_models_lists_every_model_the_gateway_routes() {
    let (gateway, _llama, _mistral) = two_models(&[]).await;
    for path in ["/v1/models", "/openai/v1/models"] {
        let listed = support::get_json(gateway.url(path)).await;
        assert_eq!(listed["object"], "list");
        let ids: Vec<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["llama", "meta-llama/Llama-3.1-8B-Instruct", "mistral"]
        );
        assert_eq!(listed["data"][0]["object"], "model");
        assert_eq!(listed["data"][0]["owned_by"], "models");
    }
}

#[tokio::test]
async fn the_time_to_the_first_byte_is_measured_per_service() {
    let pod = upstream().await;
    let yaml = ConfigBuilder::new()
        .service(Service::static_pods("streamer", "models", &[pod.addr]))
        .yaml();
    let gateway = TestGateway::start(&yaml).await;
    // Three chunks 150 ms apart: the first byte after 150 ms, the end after 450.
    let response = client()
        .get(gateway.url("/stream?chunks=3&ms=150"))
        .header("host", "streamer.models.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let labels = r#"{service="streamer",namespace="models"}"#;
    let metrics = support::get_text(gateway.admin_url("/metrics")).await;
    let series = |name: &str| support::metric(&metrics, &format!("{name}{labels}"));
    assert_eq!(series("sluice_time_to_first_byte_seconds_count"), Some(1.0));
    let first_byte = series("sluice_time_to_first_byte_seconds_sum").unwrap();
    let whole = series("sluice_request_duration_seconds_sum").unwrap();
    assert!(first_byte >= 0.15, "{first_byte}");
    assert!(whole >= 0.45 && first_byte < whole, "{first_byte} {whole}");
}

/// Reads a streamed response until its first chunk, then drops it and the
/// client's connection: a user closing the chat window mid-answer.
async fn leave_after_the_first_chunk(request: reqwest::RequestBuilder) {
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"chunk 0;"), "{first:?}");
}

/// Where a client leaves mid-stream, the proxy cancels the pod's request at
/// once and frees its slot: with `containerConcurrency: 1`, the next stream
/// gets the pod long before the first would have ended (10 s) or the queue
/// timeout (3 s) would have refused it.
async fn a_stream_left_mid_way_frees_its_slot(base: &str, host: &str, pod: &Upstream) {
    let long_stream = format!("{base}/stream?chunks=100&ms=100");
    // A client of its own, so dropping the response closes its connection.
    let leaving = reqwest::Client::new();
    leave_after_the_first_chunk(leaving.get(&long_stream).header("host", host)).await;
    drop(leaving);
    support::eventually(
        std::time::Duration::from_secs(2),
        "the pod's stream to be dropped",
        || async { pod.streams_open() == 0 },
    )
    .await;
    let next = client().get(&long_stream).header("host", host);
    leave_after_the_first_chunk(next).await;
    assert_eq!(pod.hits(), 2);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_the_pods_request_through_the_gateway() {
    let pod = upstream().await;
    let yaml = ConfigBuilder::new()
        .service(
            Service::static_pods("streamer", "models", &[pod.addr])
                .set("containerConcurrency", 1)
                .set("queueTimeout", "3s"),
        )
        .yaml();
    let gateway = TestGateway::start(&yaml).await;
    let base = format!("http://{}", gateway.gateway.data_addr());
    a_stream_left_mid_way_frees_its_slot(&base, "streamer.models.example.com", &pod).await;
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_an_h2c_pods_stream() {
    let pod = upstream().await;
    let yaml = ConfigBuilder::new()
        .service(
            Service::static_pods("streamer", "models", &[pod.addr])
                .set("protocol", "h2c")
                .set("containerConcurrency", 1)
                .set("queueTimeout", "3s"),
        )
        .yaml();
    let gateway = TestGateway::start(&yaml).await;
    let base = format!("http://{}", gateway.gateway.data_addr());
    a_stream_left_mid_way_frees_its_slot(&base, "streamer.models.example.com", &pod).await;
    assert_eq!(pod.seen.http2.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_the_pods_request_through_the_sidecar() {
    let pod = upstream().await;
    let sidecar = sluice::sidecar::Sidecar::start(sluice::sidecar::SidecarOptions {
        queue_timeout: std::time::Duration::from_secs(3),
        ..support::sidecar_options(pod.addr, 1)
    })
    .await
    .unwrap();
    let base = format!("http://{}", sidecar.data_addr);
    a_stream_left_mid_way_frees_its_slot(&base, "anything", &pod).await;
}

/// The stand-in language model (`predictor --openai`) in this process.
async fn language_model(name: &str, batch_size: usize) -> sluice::predictor::Predictor {
    use sluice::predictor::openai::{EngineSettings, OpenAiOptions};
    sluice::predictor::Predictor::start(sluice::predictor::PredictorOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        model: name.into(),
        service_time: std::time::Duration::ZERO,
        workers: 1,
        startup_delay: std::time::Duration::ZERO,
        openai: Some(OpenAiOptions {
            aliases: vec![],
            engine: EngineSettings {
                batch_size,
                time_to_first_token: std::time::Duration::from_millis(20),
                tokens_per_second: 20.0,
                kv_cache_tokens: 1000,
            },
        }),
    })
    .await
    .unwrap()
}

async fn server_gauge(model: std::net::SocketAddr, name: &str) -> f64 {
    let text = support::get_text(format!("http://{model}/metrics")).await;
    support::metric(&text, &format!("{name}{{model_name=\"llama\"}}")).unwrap_or(-1.0)
}

/// A real model server behind the gateway, routed by the body's model: a
/// stream whose client leaves is cancelled in the model server itself, whose
/// one batch slot goes at once to the request queued behind it.
#[tokio::test]
async fn a_client_that_leaves_cancels_its_sequence_in_the_model_server_behind_the_gateway() {
    let model = language_model("llama", 1).await;
    let yaml = ConfigBuilder::new()
        .service(Service::static_pods("llama", "models", &[model.addr]))
        .yaml();
    let gateway = TestGateway::start(&yaml).await;
    // 4000 tokens at 20 a second: the first stream would hold the slot 200 s.
    let long =
        json!({"model": "llama", "prompt": "Once upon a time", "max_tokens": 4000, "stream": true});
    let open = |client: reqwest::Client| {
        let (url, body) = (gateway.url("/v1/completions"), long.clone());
        async move {
            let mut response = client.post(url).json(&body).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let first = response.chunk().await.unwrap().unwrap();
            assert!(first.starts_with(b"data: {"), "{first:?}");
            response
        }
    };
    let leaving = reqwest::Client::new();
    let first = open(leaving.clone()).await;
    let queued = tokio::spawn(open(client()));
    support::eventually(
        std::time::Duration::from_secs(5),
        "the second stream queued at the server",
        || async { server_gauge(model.addr, "vllm:num_requests_waiting").await == 1.0 },
    )
    .await;
    assert_eq!(
        server_gauge(model.addr, "vllm:num_requests_running").await,
        1.0
    );
    drop(first);
    drop(leaving);
    let second = tokio::time::timeout(std::time::Duration::from_secs(5), queued)
        .await
        .expect("the queued stream got the slot the leaving client freed")
        .unwrap();
    assert_eq!(
        server_gauge(model.addr, "vllm:num_requests_waiting").await,
        0.0
    );
    assert_eq!(
        server_gauge(model.addr, "vllm:num_requests_running").await,
        1.0
    );
    drop(second);
    model.stop().await;
}

/// `scaleMetric: queue` from end to end: stand-in language models as local
/// replicas, one sequence decoded at a time each, and four long streams at
/// once sent to the first replica by another client, not through sluice
/// (sluice has nothing in flight, so `concurrency` would not move). Its
/// server reports 1 running and 3 waiting; at 2 per replica the autoscaler
/// wants 2.
#[tokio::test]
async fn scale_metric_queue_scales_on_what_the_model_servers_report() {
    let command = [
        env!("CARGO_BIN_EXE_sluice"),
        "--log",
        "warn",
        "predictor",
        "--openai",
        "--port",
        "{port}",
        "--model-name",
        "{name}",
        "--batch-size",
        "1",
        "--tokens-per-second",
        "20",
    ];
    let yaml = ConfigBuilder::new()
        .autoscaler("stableWindow", "6s")
        .autoscaler("tickInterval", "1s")
        .service(
            Service::process("llama", "models", &command)
                .backend("readinessPath", "/health")
                .backend("stopGracePeriod", "1s")
                .set("maxReplicas", 3)
                .set("scaleMetric", "queue")
                .set("scaleTarget", 2)
                .set("podMetrics", "{interval: 50ms}"),
        )
        .yaml();
    let gateway = TestGateway::start(&yaml).await;
    let service = gateway.gateway.shared().routes.load().services()[0].clone();
    support::eventually(
        std::time::Duration::from_secs(20),
        "the first replica ready",
        || async { service.dispatcher().pods().len() == 1 },
    )
    .await;
    let body =
        json!({"model": "llama", "prompt": "Once upon a time", "max_tokens": 4000, "stream": true});
    let mut streams = Vec::new();
    let first = service.dispatcher().pods()[0].addr().to_string();
    for _ in 0..4 {
        let request = client()
            .post(format!("http://{first}/v1/completions"))
            .json(&body);
        streams.push(tokio::spawn(async move {
            let mut response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            // Read until the test ends: a stream that is not read would stall.
            while let Ok(Some(_)) = response.chunk().await {}
        }));
    }
    support::eventually(
        std::time::Duration::from_secs(30),
        "2 replicas for a queue of 4 at 2 each",
        || async { service.dispatcher().pods().len() == 2 },
    )
    .await;
    let metrics = support::get_text(gateway.admin_url("/metrics")).await;
    let desired = support::metric(
        &metrics,
        r#"sluice_desired_replicas{service="llama",namespace="models"}"#,
    );
    assert_eq!(desired, Some(2.0), "{metrics}");
    for stream in streams {
        stream.abort();
    }
    gateway
        .gateway
        .shutdown(std::time::Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn the_gateways_limits_come_before_the_body_is_read() {
    let (gateway, llama, _mistral) = two_models(&[("maxRequestBodySize", "2KiB")]).await;
    // Declared over the limit: refused on its headers, whatever its model.
    let first = format!(r#"{{"model":"llama","prompt":"{}"}}"#, "x".repeat(5_000));
    let (status, _, body) = post(&gateway, "/v1/completions", first.into_bytes()).await;
    assert_eq!(status, 413);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    // Within it, and the model after the prompt: found within the 2 KiB.
    let (status, pod, _) = post(
        &gateway,
        "/v1/completions",
        chat("llama", &"x".repeat(1_500)),
    )
    .await;
    assert_eq!((status, pod), (200, llama.addr.to_string()));
    assert_eq!(llama.hits(), 1);
}
