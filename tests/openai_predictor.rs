//! `sluice predictor --openai` in this process on 127.0.0.1 port 0, spoken
//! to over real HTTP: whole and streamed completions, the model list, errors
//! in OpenAI's shape, and vLLM's metrics following the batch, including a
//! client that goes away mid-stream.

mod support;

use serde_json::{json, Value};
use sluice::predictor::openai::{EngineSettings, OpenAiOptions};
use sluice::predictor::{Predictor, PredictorOptions};
use std::net::SocketAddr;
use std::time::Duration;
use support::{client, eventually, metric};

const MODEL: &str = "tiny-llm";
const WITHIN: Duration = Duration::from_secs(10);

/// A predictor with this batch size and decode pace, 20ms to the first token.
async fn start(batch_size: usize, tokens_per_second: f64) -> Predictor {
    start_with(batch_size, tokens_per_second, Duration::ZERO).await
}

async fn start_with(
    batch_size: usize,
    tokens_per_second: f64,
    startup_delay: Duration,
) -> Predictor {
    Predictor::start(PredictorOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        model: MODEL.into(),
        service_time: Duration::ZERO,
        workers: 1,
        startup_delay,
        openai: Some(OpenAiOptions {
            aliases: vec!["tiny".into()],
            engine: EngineSettings {
                batch_size,
                time_to_first_token: Duration::from_millis(20),
                tokens_per_second,
                kv_cache_tokens: 1000,
            },
        }),
    })
    .await
    .unwrap()
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("http://{addr}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn chat(max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": MODEL,
        "messages": [{ "role": "user", "content": "say something please" }],
        "max_tokens": max_tokens,
        "stream": stream,
    })
}

/// A series of the model's metrics, as the predictor reports it now.
async fn gauge(addr: SocketAddr, name: &str) -> f64 {
    let text = support::get_text(format!("http://{addr}/metrics")).await;
    metric(&text, &format!("{name}{{model_name=\"{MODEL}\"}}"))
        .unwrap_or_else(|| panic!("{name} in:\n{text}"))
}

/// A streamed response read one body chunk at a time.
struct Events {
    response: reqwest::Response,
    pending: String,
    reads: usize,
}

impl Events {
    fn new(response: reqwest::Response) -> Events {
        assert_eq!(response.status(), 200);
        let content_type = &response.headers()["content-type"];
        assert_eq!(content_type, "text/event-stream");
        Events {
            response,
            pending: String::new(),
            reads: 0,
        }
    }

    /// The next event's data, reading more of the body if need be; `None`
    /// at its end.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                let data = event.trim_end().strip_prefix("data: ");
                return Some(data.unwrap_or_else(|| panic!("not data: {event:?}")).into());
            }
            let chunk = self.response.chunk().await.unwrap()?;
            self.reads += 1;
            self.pending.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Events already read and not yet taken.
    fn buffered(&self) -> usize {
        self.pending.matches("\n\n").count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_completion_answers_whole_with_usage() {
    let predictor = start(8, 1000.0).await;
    let response = post(predictor.addr, "/v1/chat/completions", chat(5, false)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["id"].as_str().unwrap().starts_with("chatcmpl-"),
        "{body}"
    );
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "sluice stands in for a");
    assert_eq!(choice["finish_reason"], "length");
    let usage = json!({ "prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8 });
    assert_eq!(body["usage"], usage);
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_answers_under_kserves_prefix_and_to_an_alias() {
    let predictor = start(8, 1000.0).await;
    let request = json!({ "model": "tiny", "prompt": "once upon", "max_tokens": 3 });
    let response = post(predictor.addr, "/openai/v1/completions", request).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"), "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], "tiny");
    assert_eq!(body["choices"][0]["text"], "sluice stands in");
    assert_eq!(body["usage"]["prompt_tokens"], 2);
    assert_eq!(body["usage"]["completion_tokens"], 3);
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_chat_arrives_token_by_token() {
    // 40 tokens at 20 a second: two seconds of stream.
    let predictor = start(8, 20.0).await;
    let response = post(predictor.addr, "/v1/chat/completions", chat(40, true)).await;
    let mut events = Events::new(response);

    let first: Value = serde_json::from_str(&events.next().await.unwrap()).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["content"], "sluice");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
    // The first token came alone, while the rest are still to be made.
    assert_eq!((events.reads, events.buffered()), (1, 0));
    let made = gauge(predictor.addr, "vllm:generation_tokens_total").await;
    assert!(made < 40.0, "{made} tokens made by the first event");

    let mut text = first["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let mut finish = None;
    let mut done = false;
    while let Some(data) = events.next().await {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        assert!(!done, "an event after [DONE]: {data}");
        let chunk: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(chunk["id"], first["id"]);
        let choice = &chunk["choices"][0];
        match choice["delta"]["content"].as_str() {
            Some(content) => text.push_str(content),
            None => finish = choice["finish_reason"].as_str().map(String::from),
        }
    }
    assert!(done, "the stream ends with [DONE]");
    assert_eq!(finish.as_deref(), Some("length"));
    assert_eq!(text.split(' ').count(), 40, "{text}");
    assert!(text.starts_with("sluice stands in for a language model"));
    assert!(events.reads > 40, "{} reads for 42 events", events.reads);
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_completion_carries_text_chunks() {
    let predictor = start(8, 1000.0).await;
    let request = json!({ "model": MODEL, "prompt": "go", "max_tokens": 3, "stream": true });
    let response = post(predictor.addr, "/v1/completions", request).await;
    let mut events = Events::new(response);
    let mut data = Vec::new();
    while let Some(event) = events.next().await {
        data.push(event);
    }
    assert_eq!(data.len(), 5, "{data:?}");
    let chunks: Vec<Value> = data[..4]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let texts: Vec<_> = chunks.iter().map(|c| &c["choices"][0]["text"]).collect();
    assert_eq!(texts, ["sluice", " stands", " in", ""]);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
    assert_eq!(data[4], "[DONE]");
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_the_name_and_its_aliases() {
    let predictor = start(8, 1000.0).await;
    let body = support::get_json(format!("http://{}/v1/models", predictor.addr)).await;
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    let ids: Vec<_> = data.iter().map(|m| &m["id"]).collect();
    assert_eq!(ids, [MODEL, "tiny"]);
    for model in data {
        assert_eq!(model["object"], "model");
        assert_eq!(model["owned_by"], "sluice");
        assert!(model["created"].as_u64().unwrap() > 1_600_000_000);
    }
    let one = support::get_json(format!("http://{}/openai/v1/models/tiny", predictor.addr)).await;
    assert_eq!(one["id"], "tiny");
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_not_found_in_openais_shape() {
    let predictor = start(8, 1000.0).await;
    let request = json!({ "model": "gpt-5", "messages": [{ "role": "user", "content": "hi" }] });
    let response = post(predictor.addr, "/v1/chat/completions", request).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    let error = json!({
        "message": "The model `gpt-5` does not exist.",
        "type": "invalid_request_error",
        "code": "model_not_found",
    });
    assert_eq!(body, json!({ "error": error }));
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_bad_request_in_openais_shape() {
    let predictor = start(8, 1000.0).await;
    let cases = [
        ("/v1/chat/completions", "{\"model\": "),
        ("/v1/completions", "not json"),
        ("/v1/completions", "{\"model\": \"tiny-llm\"}"),
        (
            "/v1/completions",
            "{\"model\": \"tiny-llm\", \"prompt\": 1, \"max_tokens\": 1e9}",
        ),
    ];
    for (path, body) in cases {
        let response = client()
            .post(format!("http://{}{path}", predictor.addr))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().len() > 5);
    }
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_running_and_waiting_requests() {
    // One slot; each stream would take 100s.
    let predictor = start(1, 10.0).await;
    let addr = predictor.addr;
    let mut first = Events::new(post(addr, "/v1/chat/completions", chat(1000, true)).await);
    first.next().await.unwrap();
    let second = Events::new(post(addr, "/v1/chat/completions", chat(1000, true)).await);
    eventually(WITHIN, "the second request waits", || async move {
        gauge(addr, "vllm:num_requests_waiting").await == 1.0
    })
    .await;
    assert_eq!(gauge(addr, "vllm:num_requests_running").await, 1.0);
    // Its 3 prompt words and at least its first token, of 1000.
    let usage = gauge(addr, "vllm:kv_cache_usage_perc").await;
    assert!((0.004..0.1).contains(&usage), "{usage}");
    assert_eq!(gauge(addr, "vllm:prompt_tokens_total").await, 3.0);
    let text = support::get_text(format!("http://{addr}/metrics")).await;
    for line in [
        "# TYPE vllm:num_requests_running gauge",
        "# TYPE vllm:request_success_total counter",
        "# TYPE vllm:time_to_first_token_seconds histogram",
        "vllm:time_to_first_token_seconds_count{model_name=\"tiny-llm\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    drop((first, second));
    eventually(WITHIN, "both requests are gone", || async move {
        gauge(addr, "vllm:num_requests_running").await == 0.0
            && gauge(addr, "vllm:num_requests_waiting").await == 0.0
    })
    .await;
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_stream_frees_its_slot() {
    let predictor = start(1, 10.0).await;
    let addr = predictor.addr;
    let mut talker = Events::new(post(addr, "/v1/chat/completions", chat(1000, true)).await);
    talker.next().await.unwrap();
    talker.next().await.unwrap();
    let mut waiter = Events::new(post(addr, "/v1/chat/completions", chat(2, true)).await);
    eventually(WITHIN, "the second request waits", || async move {
        gauge(addr, "vllm:num_requests_waiting").await == 1.0
    })
    .await;

    // The talker would hold the only slot for 100s; hanging up frees it.
    drop(talker);
    let first = tokio::time::timeout(WITHIN, waiter.next()).await;
    let first = first.expect("the waiter starts well before the talker would end");
    let first: Value = serde_json::from_str(&first.unwrap()).unwrap();
    assert_eq!(first["choices"][0]["delta"]["content"], "sluice");
    assert_eq!(gauge(addr, "vllm:num_requests_waiting").await, 0.0);
    while waiter.next().await.is_some() {}
    eventually(WITHIN, "the batch is empty", || async move {
        gauge(addr, "vllm:num_requests_running").await == 0.0
    })
    .await;
    // Only the waiter finished; the talker was cancelled.
    assert_eq!(gauge(addr, "vllm:request_success_total").await, 1.0);
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_completions_wait_for_the_model_to_load() {
    let predictor = start_with(8, 1000.0, Duration::from_millis(500)).await;
    let addr = predictor.addr;
    let health = format!("http://{addr}/health");
    let status = client().get(&health).send().await.unwrap().status();
    assert_eq!(status, 503);
    let response = post(addr, "/v1/chat/completions", chat(2, false)).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_ready");

    eventually(WITHIN, "the model loads", || {
        let health = health.clone();
        async move { client().get(health).send().await.unwrap().status() == 200 }
    })
    .await;
    let response = post(addr, "/v1/chat/completions", chat(2, false)).await;
    assert_eq!(response.status(), 200);
    predictor.stop().await;
}
