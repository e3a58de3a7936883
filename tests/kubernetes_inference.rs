//! KServe InferenceServices that opt in are served, updated and removed,
//! read from the fake API server.
mod support;

use std::time::Duration;
use support::cluster::*;
use support::config::{quoted, ConfigBuilder};
use support::fake_kube::{deployment, endpoint_slice, EndpointSpec, FakeKube};
use support::upstream::pods_on_one_port;
use support::{client, eventually, get_json, poll_until, send, TestGateway};

/// The InferenceService fixture (as kubectl prints it), pointed at `port`.
fn inference_service(port: u16, max_replicas: u32) -> serde_json::Value {
    let text = std::fs::read_to_string("tests/fixtures/kubernetes/inferenceservice.json").unwrap();
    let mut isvc: serde_json::Value = serde_json::from_str(&text).unwrap();
    isvc["metadata"]["annotations"]["sluice.dev/port"] = port.to_string().into();
    isvc["spec"]["predictor"]["maxReplicas"] = max_replicas.into();
    isvc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_services_that_opt_in_are_served_updated_and_removed() {
    const KS: &str = "kserve-inference";
    let pods = pods_on_one_port(&["127.0.0.1"]).await;
    let port = pods[0].addr.port();
    let fake = FakeKube::start().await;
    fake.apply(deployment(KS, "redwine-week4-predictor", 1));
    fake.apply(endpoint_slice(
        KS,
        "redwine-week4-predictor",
        "redwine-week4-predictor-7xq2k",
        &[EndpointSpec::ready(
            &ip(&pods[0]),
            "redwine-week4-predictor-0",
        )],
        port,
    ));
    // One that did not opt in.
    let mut other = inference_service(port, 8);
    other["metadata"]["name"] = "iris".into();
    other["metadata"]["annotations"] = serde_json::json!({});
    fake.apply(other);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(0, dir.path());
    // Started while the API server is down: not ready until it has listed
    // the InferenceServices, so that no request meets a 404 it should not.
    fake.stop().await;
    let yaml = ConfigBuilder::new()
        .kubernetes("kubeconfig", quoted(&kubeconfig.display().to_string()))
        .kubernetes("inferenceServices", "{ enabled: true }")
        .yaml();
    let gateway = TestGateway::start(&yaml).await;
    let response = send(client().get(gateway.admin_url("/readyz"))).await;
    assert_eq!(response.status(), 503);
    // The watcher may already have failed its first list by now, and then
    // says so on a third line; both answers are right, a 200 never is.
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("starting\nInferenceServices not listed yet\n"),
        "{text}"
    );
    for extra in text.lines().skip(2) {
        assert!(
            extra.starts_with("kubernetes: inferenceservices: failing for "),
            "{text}"
        );
    }
    fake.restart().await;
    eventually(Duration::from_secs(10), "ready once listed", || async {
        send(client().get(gateway.admin_url("/readyz")))
            .await
            .status()
            == 200
    })
    .await;

    fake.apply(inference_service(port, 8));
    let served = poll_until(
        Duration::from_secs(10),
        "the InferenceService served",
        || async {
            let status = get_json(gateway.admin_url("/status")).await;
            match status["services"].as_array().map(Vec::as_slice) {
                Some([one]) if one["readyPods"] == 1 => Ok(one.clone()),
                _ => Err(status["services"].to_string()),
            }
        },
    )
    .await;
    assert_eq!(served["name"], "redwine-week4");
    assert_eq!(served["namespace"], KS);
    assert_eq!(
        (
            served["minReplicas"].as_u64(),
            served["maxReplicas"].as_u64()
        ),
        (Some(1), Some(8))
    );
    assert_eq!(served["containerConcurrency"], 2);
    // The tutorial's host, and the one in KServe's own status.url.
    for host in [
        "redwine-week4.kserve-inference.example.com",
        "redwine-week4-kserve-inference.example.com",
    ] {
        let response = send(
            client()
                .get(gateway.url("/v1/models/redwine-week4"))
                .header("host", host),
        )
        .await;
        assert_eq!(response.status(), 200, "{host}");
    }
    assert!(pods[0].hits() >= 2);

    // Changed: the new maxReplicas applies in place.
    fake.apply(inference_service(port, 3));
    eventually(Duration::from_secs(10), "maxReplicas 3", || async {
        service_status(&gateway).await["maxReplicas"] == 3
    })
    .await;

    // Changed into something sluice cannot serve: it keeps its last valid
    // settings rather than going dark.
    let mut invalid = inference_service(port, 3);
    invalid["spec"]["predictor"]["minReplicas"] = 5.into();
    fake.apply(invalid);
    // Events come in order: once a later one is served, the edit was seen.
    let mut marker = inference_service(port, 2);
    marker["metadata"]["name"] = "marker".into();
    fake.apply(marker);
    let status = poll_until(
        Duration::from_secs(10),
        "the later InferenceService",
        || async {
            let status = get_json(gateway.admin_url("/status")).await;
            let services = status["services"].as_array().cloned().unwrap_or_default();
            let found = services
                .iter()
                .find(|s| s["name"] == "redwine-week4")
                .cloned();
            found
                .filter(|_| services.len() == 2)
                .ok_or(status["services"].to_string())
        },
    )
    .await;
    assert_eq!(
        (
            status["minReplicas"].as_u64(),
            status["maxReplicas"].as_u64()
        ),
        (Some(1), Some(3))
    );
    fake.delete(
        "serving.kserve.io/v1beta1",
        "InferenceService",
        KS,
        "marker",
    );
    let response = send(
        client()
            .get(gateway.url("/v1/models/redwine-week4"))
            .header("host", "redwine-week4.kserve-inference.example.com"),
    )
    .await;
    assert_eq!(response.status(), 200);

    // Deleted: no longer served; the Deployment is left alone.
    fake.delete(
        "serving.kserve.io/v1beta1",
        "InferenceService",
        KS,
        "redwine-week4",
    );
    eventually(Duration::from_secs(10), "no service", || async {
        get_json(gateway.admin_url("/status")).await["services"] == serde_json::json!([])
    })
    .await;
    let response = send(
        client()
            .get(gateway.url("/"))
            .header("host", "redwine-week4.kserve-inference.example.com"),
    )
    .await;
    assert_eq!(response.status(), 404);
    assert_eq!(fake.replicas(KS, "redwine-week4-predictor"), Some(1));
}

/// Knative's autoscaling annotations, as a manifest written for KServe on
/// Knative carries them: honoured, and what sluice cannot honour is in
/// `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knative_annotations_are_honoured_and_the_rest_reported_in_status() {
    const KS: &str = "kserve-inference";
    let fake = FakeKube::start().await;
    // Scaled to zero, no pod.
    fake.apply(deployment(KS, "redwine-week4-predictor", 0));
    let mut isvc = inference_service(8080, 8);
    let predictor = isvc["spec"]["predictor"].as_object_mut().unwrap();
    predictor.remove("minReplicas");
    predictor.remove("maxReplicas");
    let annotations = &mut isvc["metadata"]["annotations"];
    for (key, value) in [
        ("min-scale", "0"),
        ("max-scale", "4"),
        ("target", "1"),
        ("metric", "concurrency"),
        ("target-utilization-percentage", "90"),
        ("window", "20s"),
        ("panic-window-percentage", "20"),
        ("panic-threshold-percentage", "150"),
        ("scale-down-delay", "30s"),
        ("activation-scale", "3"),
        ("scale-to-zero-pod-retention-period", "10s"),
        // Not honoured, each for its own reason.
        ("initial-scale", "2"),
        ("class", "hpa.autoscaling.knative.dev"),
        ("target-burst-capacity", "200"),
        ("max-scale-limit", "10"),
    ] {
        annotations[format!("autoscaling.knative.dev/{key}")] = value.into();
    }
    fake.apply(isvc);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(0, dir.path());
    let yaml = ConfigBuilder::new()
        .kubernetes("kubeconfig", quoted(&kubeconfig.display().to_string()))
        .kubernetes("inferenceServices", "{ enabled: true }")
        .yaml();
    let gateway = TestGateway::start(&yaml).await;
    let served = poll_until(Duration::from_secs(10), "served", || async {
        let status = service_status(&gateway).await;
        match status["name"].as_str() {
            Some("redwine-week4") => Ok(status),
            _ => Err(status.to_string()),
        }
    })
    .await;
    // min-scale and max-scale, in place of the fields removed.
    assert_eq!(
        (
            served["minReplicas"].as_u64(),
            served["maxReplicas"].as_u64()
        ),
        (Some(0), Some(4))
    );
    let warnings: Vec<String> = serde_json::from_value(served["warnings"].clone()).unwrap();
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    for (warning, key) in warnings.iter().zip([
        "class",
        "initial-scale",
        "max-scale-limit",
        "target-burst-capacity",
    ]) {
        assert!(
            warning.starts_with(&format!("autoscaling.knative.dev/{key}: ")),
            "{warning}"
        );
    }
    assert_eq!(fake.replicas(KS, "redwine-week4-predictor"), Some(0));

    // activation-scale: a request held at zero starts 3 replicas at once.
    let held = tokio::spawn(
        client()
            .get(gateway.url("/v1/models/redwine-week4"))
            .header("host", "redwine-week4.kserve-inference.example.com")
            .timeout(Duration::from_secs(20))
            .send(),
    );
    eventually(Duration::from_secs(10), "3 replicas asked for", || async {
        fake.replicas(KS, "redwine-week4-predictor") == Some(3)
    })
    .await;
    held.abort();
    assert!(gateway.gateway.shutdown(Duration::from_secs(5)).await);
}
