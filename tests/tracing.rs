//! W3C trace context through sluice, and the spans it exports over OTLP to
//! a real receiver (tests/support/otlp.rs): the caller's trace continues
//! through sluice to the pod, and the exported spans link up.

#[path = "support/otlp.rs"]
mod otlp;
mod support;

use otlp::{otlp_receiver, ReceivedSpan};
use sluice::config::{Config, OtlpSettings, TracingSettings};
use sluice::sidecar::{Sidecar, SidecarOptions};
use std::time::Duration;
use support::*;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The tutorial's service on `pod`, exporting to `endpoint` at `ratio`.
fn traced(pod: &Upstream, endpoint: &str, ratio: f64) -> String {
    format!(
        "{}tracing:\n  otlp:\n    endpoint: {endpoint}\n    samplingRatio: {ratio}\n    serviceName: test-gateway\n",
        one_service(&[pod], "")
    )
}

/// The pod's `traceparent` for the last request: (trace id, parent id, flags).
fn pods_traceparent(pod: &Upstream) -> (String, String, String) {
    let headers = pod.last_headers();
    let value = headers
        .get("traceparent")
        .expect("the pod got a traceparent")
        .to_str()
        .unwrap();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    assert_eq!(parts[1].len(), 32, "{value}");
    assert_eq!(parts[2].len(), 16, "{value}");
    assert_ne!(parts[1], "0".repeat(32), "{value}");
    assert_ne!(parts[2], "0".repeat(16), "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

async fn get(gw: &TestGateway, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client()
        .get(gw.url("/v1/models/redwine-week4"))
        .header("host", HOST);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn named<'a>(spans: &'a [ReceivedSpan], trace: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name)
        .collect()
}

fn only<'a>(spans: &'a [ReceivedSpan], trace: &str, name: &str) -> &'a ReceivedSpan {
    let found = named(spans, trace, name);
    assert_eq!(found.len(), 1, "one {name} span in {trace}: {spans:#?}");
    found[0]
}

#[tokio::test]
async fn the_callers_trace_continues_through_sluice_to_the_pod_and_the_spans_link_up() {
    let receiver = otlp_receiver().await;
    let pod = upstream().await;
    let gw = TestGateway::start(&traced(&pod, &receiver.endpoint(), 1.0)).await;

    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let r = get(
        &gw,
        &[
            ("traceparent", &traceparent),
            ("tracestate", "vendor=abc,other=1"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let (trace, parent, flags) = pods_traceparent(&pod);
    assert_eq!(trace, CLIENT_TRACE, "the caller's trace continues");
    assert_ne!(parent, CLIENT_SPAN, "the pod's parent is sluice's span");
    assert_eq!(flags, "01", "sampled, as the caller decided");
    assert_eq!(pod.last_headers()["tracestate"], "vendor=abc,other=1");

    // Shutting down sends what is batched.
    gw.gateway.shutdown(Duration::from_secs(5)).await;
    let spans = receiver.spans();
    let request = only(&spans, CLIENT_TRACE, "request");
    let upstream = only(&spans, CLIENT_TRACE, "upstream");
    let queue = only(&spans, CLIENT_TRACE, "queue");
    // client span -> sluice's request span -> its children; the pod's parent
    // is the upstream span.
    assert_eq!(request.parent_span_id, CLIENT_SPAN);
    assert_eq!(request.kind, 2, "server");
    assert_eq!(upstream.parent_span_id, request.span_id);
    assert_eq!(upstream.kind, 3, "client");
    assert_eq!(queue.parent_span_id, request.span_id);
    assert_eq!(upstream.span_id, parent, "the pod's parent was exported");
    assert!(
        named(&spans, CLIENT_TRACE, "activation").is_empty(),
        "no cold start"
    );

    assert_eq!(request.service_name, "test-gateway");
    assert_eq!(
        request.attribute("sluice.service"),
        Some("kserve-inference/redwine-week4")
    );
    assert_eq!(request.attribute("http.response.status_code"), Some("200"));
    assert_eq!(request.attribute("http.request.method"), Some("GET"));
    assert_eq!(
        request.attribute("url.path"),
        Some("/v1/models/redwine-week4")
    );
    assert_eq!(
        request.attribute("sluice.request_id"),
        Some(request_id.as_str())
    );
    let pod_addr = pod.addr.to_string();
    assert_eq!(
        upstream.attribute("server.address"),
        Some(pod_addr.as_str())
    );
    assert_eq!(upstream.attribute("http.response.status_code"), Some("200"));
    assert_eq!(queue.attribute("sluice.pod"), Some(pod_addr.as_str()));
    // The children lie within the request.
    for child in [upstream, queue] {
        assert!(
            child.start_unix_nano >= request.start_unix_nano,
            "{child:?}"
        );
        assert!(child.end_unix_nano <= request.end_unix_nano, "{child:?}");
    }
    assert!(queue.end_unix_nano <= upstream.start_unix_nano);
}

#[tokio::test]
async fn a_missing_or_malformed_traceparent_starts_a_new_trace() {
    let receiver = otlp_receiver().await;
    let pod = upstream().await;
    let gw = TestGateway::start(&traced(&pod, &receiver.endpoint(), 1.0)).await;

    assert_eq!(get(&gw, &[]).await.status(), 200);
    let (fresh, fresh_parent, flags) = pods_traceparent(&pod);
    assert_eq!(flags, "01", "a ratio of 1 samples every new trace");
    assert!(pod.last_headers().get("tracestate").is_none());

    let mut malformed_traces = Vec::new();
    for malformed in [
        "00-xyz-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "garbage",
    ] {
        let r = get(
            &gw,
            &[("traceparent", malformed), ("tracestate", "vendor=abc")],
        )
        .await;
        assert_eq!(r.status(), 200, "{malformed}: never an error");
        let (trace, _, flags) = pods_traceparent(&pod);
        assert!(
            !malformed.to_lowercase().contains(&trace),
            "{malformed}: replaced by {trace}"
        );
        assert_ne!(trace, fresh);
        assert_eq!(flags, "01");
        assert!(
            pod.last_headers().get("tracestate").is_none(),
            "{malformed}: its tracestate goes with it"
        );
        malformed_traces.push(trace);
    }
    // A request no service takes is traced too, as sluice's own 404.
    let r = client()
        .get(gw.url("/nowhere"))
        .header("host", "nobody.example.com")
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    gw.gateway.shutdown(Duration::from_secs(5)).await;
    let spans = receiver.spans();
    let root = only(&spans, &fresh, "request");
    assert_eq!(root.parent_span_id, "", "a new trace's root");
    assert_eq!(only(&spans, &fresh, "upstream").span_id, fresh_parent);
    for trace in &malformed_traces {
        assert_eq!(only(&spans, trace, "request").parent_span_id, "");
    }
    let unrouted = only(&spans, CLIENT_TRACE, "request");
    assert_eq!(unrouted.attribute("http.response.status_code"), Some("404"));
    assert_eq!(unrouted.attribute("sluice.error"), Some("route-not-found"));
    assert!(named(&spans, CLIENT_TRACE, "upstream").is_empty());
}

#[tokio::test]
async fn a_sampling_ratio_of_zero_exports_nothing_new_but_still_propagates() {
    let receiver = otlp_receiver().await;
    let pod = upstream().await;
    let gw = TestGateway::start(&traced(&pod, &receiver.endpoint(), 0.0)).await;

    let mut unsampled = Vec::new();
    for _ in 0..5 {
        assert_eq!(get(&gw, &[]).await.status(), 200);
        let (trace, _, flags) = pods_traceparent(&pod);
        assert_eq!(flags, "00", "not sampled, and the pod is told so");
        unsampled.push(trace);
    }
    let unsampled_parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    assert_eq!(
        get(&gw, &[("traceparent", &unsampled_parent)])
            .await
            .status(),
        200
    );
    let (trace, parent, flags) = pods_traceparent(&pod);
    assert_eq!((trace.as_str(), flags.as_str()), (CLIENT_TRACE, "00"));
    assert_ne!(parent, CLIENT_SPAN);
    // Parent-based: a caller that sampled its trace gets sluice's spans even
    // at ratio 0 (and shows that the exporter works in this very gateway).
    let sampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let sampled_parent = format!("00-{sampled_trace}-b7ad6b7169203331-01");
    assert_eq!(
        get(&gw, &[("traceparent", &sampled_parent)]).await.status(),
        200
    );
    assert_eq!(pods_traceparent(&pod).2, "01");

    gw.gateway.shutdown(Duration::from_secs(5)).await;
    let spans = receiver.spans();
    assert!(
        !named(&spans, sampled_trace, "request").is_empty(),
        "{spans:#?}"
    );
    assert!(
        spans.iter().all(|s| s.trace_id == sampled_trace),
        "only the sampled caller's trace: {spans:#?}"
    );
}

#[tokio::test]
async fn requests_are_served_while_the_receiver_is_down() {
    // A port nothing listens on any more.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let pod = upstream().await;
    let gw = TestGateway::start(&traced(&pod, &endpoint, 1.0)).await;
    for _ in 0..20 {
        let r = get(
            &gw,
            &[(
                "traceparent",
                &format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
            )],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(pods_traceparent(&pod).0, CLIENT_TRACE);
    }
    assert_eq!(pod.hits(), 20);
    gw.gateway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn without_a_tracing_section_trace_headers_pass_through_untouched() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    for traceparent in [
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
        "garbage".into(),
    ] {
        let r = get(
            &gw,
            &[("traceparent", &traceparent), ("tracestate", "vendor=abc")],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(pod.last_headers()["traceparent"], traceparent.as_str());
        assert_eq!(pod.last_headers()["tracestate"], "vendor=abc");
    }
    assert_eq!(get(&gw, &[]).await.status(), 200);
    assert!(pod.last_headers().get("traceparent").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_continues_the_trace_and_exports_its_spans() {
    let receiver = otlp_receiver().await;
    let model = upstream().await;
    let sidecar = Sidecar::start(SidecarOptions {
        queue_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        drain_period: Duration::ZERO,
        drain_timeout: Duration::from_secs(5),
        workers: 1,
        tracing: TracingSettings {
            otlp: Some(OtlpSettings {
                service_name: "test-sidecar".into(),
                ..OtlpSettings::new(&receiver.endpoint())
            }),
        },
        ..sidecar_options(model.addr, 1)
    })
    .await
    .unwrap();
    let r = client()
        .post(format!("http://{}/v1/models/m:predict", sidecar.data_addr))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (trace, parent, _) = pods_traceparent(&model);
    assert_eq!(trace, CLIENT_TRACE);

    sidecar.drain(Duration::from_secs(5)).await;
    let spans = receiver.spans();
    let request = only(&spans, CLIENT_TRACE, "request");
    assert_eq!(request.service_name, "test-sidecar");
    assert_eq!(request.parent_span_id, CLIENT_SPAN);
    assert_eq!(request.attribute("sluice.service"), Some("pod/model"));
    let upstream = only(&spans, CLIENT_TRACE, "upstream");
    assert_eq!(upstream.parent_span_id, request.span_id);
    assert_eq!(upstream.span_id, parent);
}

#[test]
fn a_bad_tracing_section_is_refused_naming_its_field() {
    let with = |otlp: &str| format!("tracing:\n  otlp:\n{otlp}");
    for (section, says) in [
        (
            with("    endpoint: collector:4318\n"),
            "tracing.otlp.endpoint: ",
        ),
        (
            with("    endpoint: http://c:4318\n    samplingRatio: 2\n"),
            "tracing.otlp.samplingRatio: must be between 0 and 1, got 2",
        ),
        (
            with("    endpoint: http://c:4318\n    protocol: grpc\n"),
            "tracing.otlp.protocol: ",
        ),
        (
            with("    endpoint: http://c:4318\n    sample: 1\n"),
            "tracing.otlp.sample: unknown field `sample`",
        ),
        (
            with("    samplingRatio: 1\n"),
            "tracing.otlp: missing field `endpoint`",
        ),
    ] {
        let error = Config::parse(&section).unwrap_err().to_string();
        assert!(error.contains(says), "{section}: {error}");
    }
    let ok = with("    endpoint: http://otel-collector.observability:4318/v1/traces\n");
    let config = Config::parse(&ok).unwrap();
    let otlp = config.tracing.otlp.unwrap();
    assert_eq!(otlp.sampling_ratio, 1.0);
    assert_eq!(otlp.service_name, "sluice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_at_zero_has_an_activation_span() {
    let receiver = otlp_receiver().await;
    let args = ["--startup-delay", "300ms"];
    let service = support::config::Service::predictor("redwine-week4", "kserve-inference", &args)
        .set("minReplicas", 0)
        .set("initialScale", 0)
        .set("maxReplicas", 1);
    let yaml = format!(
        "{}tracing:\n  otlp:\n    endpoint: {}\n",
        ConfigBuilder::new().service(service).yaml(),
        receiver.endpoint()
    );
    let gw = TestGateway::start(&yaml).await;
    let r = client()
        .post(gw.url("/v1/models/redwine-week4:predict"))
        .header("host", HOST)
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .body(r#"{"instances": [[7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4]]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let held_ms: f64 = r.headers()["sluice-held-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    r.bytes().await.unwrap();

    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
    let spans = receiver.spans();
    let request = only(&spans, CLIENT_TRACE, "request");
    let queue = only(&spans, CLIENT_TRACE, "queue");
    let activation = only(&spans, CLIENT_TRACE, "activation");
    assert_eq!(activation.parent_span_id, request.span_id);
    assert!(activation.start_unix_nano >= queue.start_unix_nano);
    assert_eq!(
        activation.end_unix_nano, queue.end_unix_nano,
        "held until admitted"
    );
    let recorded: f64 = queue.attribute("sluice.held_ms").unwrap().parse().unwrap();
    assert!((recorded - held_ms).abs() < 0.01, "{recorded} vs {held_ms}");
    let activation_ms = (activation.end_unix_nano - activation.start_unix_nano) as f64 / 1e6;
    assert!(
        (activation_ms - held_ms).abs() < 0.01,
        "{activation_ms} vs {held_ms}"
    );
}

#[test]
fn the_sidecars_tracing_flags_are_checked_as_the_gateways_section() {
    let sidecar = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "sidecar",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    for (args, says) in [
        (
            &["--otlp-endpoint", "https://collector:4318"][..],
            "tracing.otlp.endpoint: \"https://collector:4318\" uses https",
        ),
        (
            &[
                "--otlp-endpoint",
                "http://c:4318",
                "--otlp-sampling-ratio",
                "1.5",
            ][..],
            "tracing.otlp.samplingRatio: must be between 0 and 1, got 1.5",
        ),
    ] {
        let output = sidecar(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
