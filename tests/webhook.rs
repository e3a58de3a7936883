//! The sidecar-injecting admission webhook: AdmissionReview JSON in, a
//! JSONPatch out, applied to the pod and checked; malformed input; HTTPS.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use sluice::webhook::review;
use support::webhook::injection;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/admission-review-pod.json")).unwrap()
}

/// Applies the review's patch to its pod, as the API server would.
fn patched(review_request: &Value, answer: &Value) -> Value {
    let encoded = answer["response"]["patch"].as_str().expect("a patch");
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut pod = review_request["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    pod
}

fn env(container: &Value, name: &str) -> String {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn an_opted_in_pod_gets_the_sidecar_and_a_second_pass_changes_nothing() {
    let request = fixture();
    let answer = review(request.to_string().as_bytes(), &injection()).unwrap();
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(answer["response"]["allowed"], true);

    let pod = patched(&request, &answer);
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    let (model, sidecar) = (&containers[0], &containers[1]);
    assert_eq!(sidecar["name"], "sluice-sidecar");
    assert_eq!(sidecar["image"], "ghcr.io/example/sluice:0.1.0");
    assert_eq!(sidecar["args"], json!(["sidecar"]));
    assert_eq!(env(sidecar, "SLUICE_UPSTREAM"), "127.0.0.1:8080");
    assert_eq!(env(sidecar, "SLUICE_LISTEN"), "0.0.0.0:8012");
    assert_eq!(
        env(sidecar, "SLUICE_CONTAINER_CONCURRENCY"),
        "1",
        "from the pod's annotation"
    );
    assert_eq!(
        env(sidecar, "SLUICE_READINESS_PATH"),
        "/v1/models/redwine-week4",
        "the model's probe"
    );
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["port"], 9091);
    assert_eq!(sidecar["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
    assert_eq!(
        sidecar["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert!(
        model.get("readinessProbe").is_none(),
        "the pod's readiness is the sidecar's now"
    );
    assert_eq!(
        model["image"], "kserve/sklearnserver:v0.11.0",
        "the model is otherwise untouched"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["sluice.dev/injected"],
        "true"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["serving.kserve.io/deploymentMode"],
        "RawDeployment"
    );

    // The API server may call again (reinvocation): nothing more to do.
    let mut again = request.clone();
    again["request"]["object"] = pod;
    let answer = review(again.to_string().as_bytes(), &injection()).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
}

#[test]
fn pods_that_did_not_opt_in_and_other_objects_pass_unchanged() {
    let mut request = fixture();
    request["request"]["object"]["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("sluice.dev/inject");
    let answer = review(request.to_string().as_bytes(), &injection()).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());

    // Opting in by annotation works too, even without annotations to start from.
    let mut request = fixture();
    let metadata = &mut request["request"]["object"]["metadata"];
    metadata["labels"]
        .as_object_mut()
        .unwrap()
        .remove("sluice.dev/inject");
    metadata.as_object_mut().unwrap().remove("annotations");
    let answer = review(request.to_string().as_bytes(), &injection()).unwrap();
    assert!(
        answer["response"].get("patch").is_none(),
        "no annotation, no label: not opted in"
    );

    // Opted in by annotation alone.
    let mut request = fixture();
    let metadata = &mut request["request"]["object"]["metadata"];
    metadata["labels"]
        .as_object_mut()
        .unwrap()
        .remove("sluice.dev/inject");
    metadata["annotations"]["sluice.dev/inject"] = json!("true");
    let answer = review(request.to_string().as_bytes(), &injection()).unwrap();
    assert_eq!(
        patched(&request, &answer)["spec"]["containers"][1]["name"],
        "sluice-sidecar"
    );

    // Opted in by label, on a pod with no annotations at all: they are created.
    let mut request = fixture();
    request["request"]["object"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    let answer = review(request.to_string().as_bytes(), &injection()).unwrap();
    let pod = patched(&request, &answer);
    assert_eq!(
        pod["metadata"]["annotations"]["sluice.dev/injected"],
        "true"
    );
    assert_eq!(
        env(
            &pod["spec"]["containers"][1],
            "SLUICE_CONTAINER_CONCURRENCY"
        ),
        "0"
    );

    let mut request = fixture();
    request["request"]["kind"]["kind"] = json!("ConfigMap");
    let answer = review(request.to_string().as_bytes(), &injection()).unwrap();
    assert!(answer["response"].get("patch").is_none());
}

#[test]
fn malformed_input_is_rejected_not_a_crash() {
    for body in [
        &b"not json"[..],
        b"{}",
        br#"{"request": {"kind": {"kind": "Pod"}}}"#,
        b"[1,2]",
        b"",
    ] {
        assert!(
            review(body, &injection()).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // A pod with no containers, or a containers field of the wrong type: allowed, untouched.
    let mut request = fixture();
    request["request"]["object"]["spec"]["containers"] = json!("nope");
    let answer = review(request.to_string().as_bytes(), &injection()).unwrap();
    assert!(answer["response"].get("patch").is_none());
}

#[tokio::test]
async fn the_webhook_serves_https() {
    use http_body_util::{BodyExt, Full};

    let (webhook, connector, _dir) = support::webhook::start(Default::default()).await;

    for (body, status) in [(fixture().to_string(), 200), ("{broken".to_string(), 400)] {
        let mut sender = support::webhook::https(webhook.addr, &connector).await;
        let request = http::Request::post("/mutate")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), status);
        let answer: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        if status == 200 {
            assert_eq!(
                answer["response"]["uid"],
                "705ab4f5-6393-11e8-b7cc-42010a800002"
            );
            assert!(answer["response"]["patch"].is_string());
        } else {
            assert!(answer["error"]
                .as_str()
                .unwrap()
                .contains("not an AdmissionReview"));
        }
    }
    webhook.stop().await;
}
