//! The AdmissionReview properties: `review` answers what has a request uid
//! with a well-formed response whose patch gives the pod a sidecar that can
//! start, and refuses the rest with a message; it never panics.

use super::QUICK;
use base64::Engine;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Value};
use sluice::config::ranges;
use sluice::webhook::{review, Injection, SIDECAR_NAME};
use std::time::Instant;

fn injection() -> Injection {
    Injection {
        image: "ghcr.io/example/sluice:0.1.0".into(),
        port: 8012,
        admin_port: 9091,
        pre_stop_seconds: 5,
    }
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/admission-review-pod.json")).unwrap()
}

/// Strings that mean something to the webhook, or to a parser of numbers.
#[rustfmt::skip]
const ODD_STRINGS: &[&str] = &[
    "true", "TRUE", "True", "false", "Pod", "pod", "sluice-sidecar", "sluice.dev/inject",
    "sluice.dev/injected", "0", "1", "-1", "8080", "65535", "65536", "070", "+80", " 80", "80 ",
    "８０", "1e3", "18446744073709551615", "18446744073709551616", "99999999999999999999999",
    "100000", "100001", "", "\u{0}", "/", "a/b~c", "~1", "~0", "/spec/containers/-", "no-slash",
];

#[rustfmt::skip]
const JSON_KEYS: &[&str] = &[
    "apiVersion", "kind", "request", "response", "uid", "object", "metadata", "labels",
    "annotations", "spec", "containers", "name", "ports", "containerPort", "readinessProbe",
    "httpGet", "path", "sluice.dev/inject", "sluice.dev/injected", "sluice.dev/model-port",
    "sluice.dev/container-concurrency", "patch", "allowed",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON numbers are finite", |x| {
            serde_json::Number::from_f64(x).map(Value::Number)
        }),
        ".{0,24}".prop_map(Value::from),
        select(ODD_STRINGS).prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        let key = prop_oneof![select(JSON_KEYS).prop_map(String::from), ".{0,8}"];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Values of the wrong shape where the webhook looks.
fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => json_value(),
        1 => (0usize..100_000).prop_map(|n| Value::from("x".repeat(n))),
        1 => select(vec![
            json!([1]), json!([[]]), json!([{}]), json!([null]), json!({"a": 1}),
            json!([{"name": "sluice-sidecar"}]), json!([{"ports": "80"}]),
            json!([{"ports": [{"containerPort": 70000}]}]),
            json!([{"ports": [{"containerPort": -1}]}]),
            json!([{"ports": [{"containerPort": 0}]}]),
            json!([{"ports": [{"containerPort": 1.5}]}]),
            json!([{"readinessProbe": null}]), json!([{"readinessProbe": {"httpGet": {"path": 7}}}]),
            json!([{"readinessProbe": {"httpGet": {"path": "healthz"}}}]),
            json!([{"readinessProbe": {"httpGet": {"path": "/a b"}}}]),
        ]),
        1 => Just(Value::Array(vec![json!({"name": "c"}); 1000])),
    ]
}

/// Where in a review the webhook looks (pointer segments; created if missing).
const WHERE: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["request"],
    &["request", "uid"],
    &["request", "kind"],
    &["request", "kind", "kind"],
    &["request", "object"],
    &["request", "object", "metadata"],
    &["request", "object", "metadata", "labels"],
    &[
        "request",
        "object",
        "metadata",
        "labels",
        "sluice.dev/inject",
    ],
    &["request", "object", "metadata", "annotations"],
    &[
        "request",
        "object",
        "metadata",
        "annotations",
        "sluice.dev/inject",
    ],
    &[
        "request",
        "object",
        "metadata",
        "annotations",
        "sluice.dev/injected",
    ],
    &[
        "request",
        "object",
        "metadata",
        "annotations",
        "sluice.dev/model-port",
    ],
    &[
        "request",
        "object",
        "metadata",
        "annotations",
        "sluice.dev/container-concurrency",
    ],
    &["request", "object", "spec"],
    &["request", "object", "spec", "containers"],
    &["request", "object", "spec", "containers", "0"],
    &["request", "object", "spec", "containers", "0", "name"],
    &["request", "object", "spec", "containers", "0", "ports"],
    &[
        "request",
        "object",
        "spec",
        "containers",
        "0",
        "ports",
        "0",
        "containerPort",
    ],
    &[
        "request",
        "object",
        "spec",
        "containers",
        "0",
        "readinessProbe",
    ],
    &[
        "request",
        "object",
        "spec",
        "containers",
        "0",
        "readinessProbe",
        "httpGet",
        "path",
    ],
];

#[derive(Clone, Debug)]
enum Edit {
    /// Sets the value at a place the webhook reads, creating what is missing.
    Set(&'static [&'static str], Value),
    /// Removes the value at any place in the fixture.
    Remove(Index),
    /// Replaces the value at any place in the fixture.
    Replace(Index, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (select(WHERE), odd_value()).prop_map(|(at, v)| Edit::Set(at, v)),
        1 => any::<Index>().prop_map(Edit::Remove),
        1 => (any::<Index>(), odd_value()).prop_map(|(at, v)| Edit::Replace(at, v)),
    ]
}

/// JSON pointers to every value in `value`, the root excepted.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => vec![],
    };
    for (segment, child) in children {
        let pointer = format!("{at}/{segment}");
        out.push(pointer.clone());
        pointers(child, pointer, out);
    }
}

impl Edit {
    fn apply(&self, review: &mut Value) {
        let mut all = Vec::new();
        pointers(review, String::new(), &mut all);
        if all.is_empty() && !matches!(self, Edit::Set(..)) {
            return;
        }
        match self {
            Edit::Set(segments, new) => {
                let mut here = review;
                for segment in *segments {
                    here = if *segment == "0" {
                        if here.as_array().is_none_or(|items| items.is_empty()) {
                            *here = json!([null]);
                        }
                        &mut here.as_array_mut().unwrap()[0]
                    } else {
                        if !here.is_object() {
                            *here = json!({});
                        }
                        let object = here.as_object_mut().unwrap();
                        object.entry(segment.to_string()).or_insert(Value::Null)
                    };
                }
                *here = new.clone();
            }
            Edit::Remove(at) => {
                let pointer = at.get(&all);
                let (parent, last) = pointer.rsplit_once('/').unwrap();
                let last = last.replace("~1", "/").replace("~0", "~");
                match review.pointer_mut(parent).unwrap() {
                    Value::Object(map) => {
                        map.remove(&last);
                    }
                    Value::Array(items) => {
                        items.remove(last.parse::<usize>().unwrap());
                    }
                    _ => unreachable!(),
                }
            }
            Edit::Replace(at, new) => {
                *review.pointer_mut(at.get(&all).as_str()).unwrap() = new.clone()
            }
        }
    }
}

/// `review` answers what has a `request.uid` with a well-formed response,
/// and refuses the rest with a message; it never panics.
fn answered_or_refused(body: &[u8]) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let answer = review(body, &injection());
    prop_assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    let input: Option<Value> = serde_json::from_slice(body).ok();
    let uid = input.as_ref().and_then(|v| v["request"]["uid"].as_str());
    match (answer, uid) {
        (Ok(answer), Some(uid)) => well_formed(&answer, &input.as_ref().unwrap()["request"], uid),
        (Err(error), None) => {
            let message = error.to_string();
            prop_assert!(message.starts_with("not an AdmissionReview: "), "{message}");
            prop_assert!(
                message.len() > "not an AdmissionReview: ".len(),
                "{message}"
            );
            Ok(())
        }
        (Ok(answer), None) => Err(TestCaseError::fail(format!(
            "answered a body with no request.uid: {answer}"
        ))),
        (Err(error), Some(_)) => Err(TestCaseError::fail(format!(
            "refused a review with a request.uid: {error}"
        ))),
    }
}

/// An AdmissionReview v1 response for this uid, allowed; a patch, if any,
/// applies to the pod, injects one sidecar the sidecar command accepts, and
/// a second review of the patched pod changes nothing.
fn well_formed(answer: &Value, request: &Value, uid: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(&answer["apiVersion"], "admission.k8s.io/v1");
    prop_assert_eq!(&answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    prop_assert_eq!(&response["uid"], uid);
    prop_assert_eq!(&response["allowed"], true);
    let Some(patch) = response.get("patch") else {
        prop_assert!(response.get("patchType").is_none(), "{answer}");
        return Ok(());
    };
    prop_assert_eq!(&response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch.as_str().unwrap_or_default())
        .map_err(|e| TestCaseError::fail(format!("patch is not base64: {e}")))?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes)
        .map_err(|e| TestCaseError::fail(format!("not a JSON Patch: {e}")))?;
    let mut pod = request["object"].clone();
    json_patch::patch(&mut pod, &patch)
        .map_err(|e| TestCaseError::fail(format!("the patch does not apply: {e}\n{request}")))?;

    let containers = pod["spec"]["containers"].as_array().unwrap();
    let sidecars = containers.iter().filter(|c| c["name"] == SIDECAR_NAME);
    prop_assert_eq!(sidecars.count(), 1);
    prop_assert_eq!(
        &pod["metadata"]["annotations"]["sluice.dev/injected"],
        "true"
    );
    let sidecar = containers.last().unwrap();
    let env = |name: &str| {
        sidecar["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == name))
            .and_then(|e| e["value"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let upstream: std::net::SocketAddr = env("SLUICE_UPSTREAM").parse().unwrap();
    prop_assert!(upstream.port() != 0, "upstream {upstream} from {request}");
    let concurrency = env("SLUICE_CONTAINER_CONCURRENCY").parse::<u64>();
    prop_assert!(
        concurrency
            .as_ref()
            .is_ok_and(|c| ranges::CONTAINER_CONCURRENCY.contains(*c)),
        "containerConcurrency {concurrency:?}, which the sidecar refuses, from {request}"
    );

    // What the sidecar checks of its readiness path when it starts.
    let probe = format!("http://{upstream}{}", env("SLUICE_READINESS_PATH"));
    prop_assert!(
        probe.parse::<http::Uri>().is_ok(),
        "readiness probe {probe:?}, which the sidecar refuses, from {request}"
    );

    let mut again = json!({ "request": request.clone() });
    again["request"]["object"] = pod;
    let second = review(again.to_string().as_bytes(), &injection()).unwrap();
    prop_assert!(
        second["response"].get("patch").is_none(),
        "a second pass patched again"
    );
    Ok(())
}

proptest! {
    // Fewer cases: some carry a 100 000-character string or 1000 containers.
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// The tutorial's pod with one to four fields removed, replaced or odd.
    #[test]
    fn an_edited_review_is_answered_or_refused(edits in prop::collection::vec(edit(), 1..=4)) {
        let mut review = fixture();
        for edit in &edits {
            edit.apply(&mut review);
        }
        answered_or_refused(review.to_string().as_bytes())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any JSON, bare or as the request or pod of a review.
    #[test]
    fn any_json_is_answered_or_refused(value in json_value(), wrap in 0..3) {
        let body = match wrap {
            0 => value,
            1 => json!({ "request": { "uid": "u", "kind": { "kind": "Pod" }, "object": value } }),
            _ => json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": value }),
        };
        answered_or_refused(body.to_string().as_bytes())?;
    }

    /// Random bytes, and the fixture's text with bytes changed.
    #[test]
    fn any_bytes_are_answered_or_refused(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        changes in prop::collection::vec((any::<Index>(), any::<u8>(), 0..3), 0..8),
    ) {
        answered_or_refused(&bytes)?;
        let mut text = fixture().to_string().into_bytes();
        for (at, byte, how) in changes {
            let i = at.index(text.len());
            match how {
                0 => text[i] = byte,
                1 => text.insert(i, byte),
                _ => { text.remove(i); }
            }
        }
        answered_or_refused(&text)?;
    }
}
