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
    assert_eq!(
        response.text().await.unwrap(),
        "starting\nInferenceServices not listed yet\n"
    );
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
