//! An InferenceService read as a sluice service: which fields and
//! annotations count, the port and protocol its predictor declares, and
//! Knative's annotations after them (`knative.rs`). Pure: the watch that
//! feeds it is `inference.rs`.

use super::knative;
use crate::config::{
    validate_service_config, InferenceServices, MetricsSource, ServiceConfig, UpstreamProtocol,
};
use serde_json::{json, Value};
/// The opt-in annotation.
pub const AUTOSCALE: &str = "sluice.dev/autoscale";
/// Overrides `inferenceServices.port`: the pods' port requests go to.
pub const PORT: &str = "sluice.dev/port";
/// Overrides `inferenceServices.metrics`: `gateway` or `pods`.
pub const METRICS: &str = "sluice.dev/metrics";

/// The fields of `spec.predictor` sluice reads, by their own names.
const PREDICTOR_FIELDS: [&str; 5] = [
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "containerConcurrency",
];

pub fn service_from_inference_service(
    isvc: &Value,
    settings: &InferenceServices,
    domain: &str,
) -> Result<Option<ServiceConfig>, String> {
    let metadata = &isvc["metadata"];
    let annotations = &metadata["annotations"];
    if annotations[AUTOSCALE].as_str() != Some("true") {
        return Ok(None);
    }
    let (Some(name), Some(namespace)) = (metadata["name"].as_str(), metadata["namespace"].as_str())
    else {
        return Err("metadata: needs a name and a namespace".into());
    };
    let predictor = &isvc["spec"]["predictor"];
    let declared = declared_port(predictor)?;
    let port = match annotations[PORT].as_str() {
        Some(text) => text
            .parse::<u16>()
            .map_err(|_| format!("metadata.annotations.{PORT}: {text:?} is not a port"))?,
        None => declared.map_or(settings.port, |(port, _)| port),
    };
    let protocol = declared.map_or(UpstreamProtocol::Http1, |(_, protocol)| protocol);
    let metrics = match annotations[METRICS].as_str() {
        Some(text) => json!(text),
        None => json!(match settings.metrics {
            MetricsSource::Gateway => "gateway",
            MetricsSource::Pods => "pods",
        }),
    };
    // KServe 0.20 may name the predictor: `<name>-<predictor>-predictor`.
    let deployment = match predictor["name"].as_str().filter(|n| !n.is_empty()) {
        Some(component) => format!("{name}-{component}-predictor"),
        None => format!("{name}-predictor"),
    };
    let mut service = json!({
        "name": name,
        "namespace": namespace,
        "hosts": [format!("{name}-{namespace}.{domain}")],
        "metrics": metrics,
        "podMetricsPort": settings.pod_metrics_port,
        "protocol": protocol.as_str(),
        "backend": { "kubernetes": { "deployment": deployment, "port": port } },
    });
    for field in PREDICTOR_FIELDS {
        if let Some(value) = predictor.get(field).filter(|v| !v.is_null()) {
            service[field] = value.clone();
        }
    }
    // KServe's fields alone first, so that a bad one is named as KServe's.
    checked(service.clone()).map_err(|e| {
        if PREDICTOR_FIELDS
            .iter()
            .any(|f| e.starts_with(&format!("{f}: ")))
        {
            format!("spec.predictor.{e}")
        } else {
            e
        }
    })?;
    let warnings = knative::apply(annotations, predictor, &mut service, |candidate| {
        checked(candidate.clone()).map(drop)
    });
    // Only annotations that keep the service valid were applied.
    let mut config = checked(service)?;
    config.warnings = warnings;
    Ok(Some(config))
}

/// The service `service` describes, if sluice can run it; else the first
/// field that is wrong, by sluice's name.
fn checked(service: Value) -> Result<ServiceConfig, String> {
    let config: ServiceConfig = serde_path_to_error::deserialize(service).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })?;
    let problems = validate_service_config(&config);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(config)
}

/// The port the predictor's container declares, as KServe reads it: the
/// first of `ports` on the model (or framework) spec or the first container;
/// named `h2c`, it speaks HTTP/2 (gRPC), as in Knative.
fn declared_port(predictor: &Value) -> Result<Option<(u16, UpstreamProtocol)>, String> {
    let Some(fields) = predictor.as_object() else {
        return Ok(None);
    };
    let first_container = predictor["containers"].get(0).map(|c| ("containers[0]", c));
    let specs = fields
        .iter()
        .filter(|(_, spec)| spec.get("ports").is_some())
        .map(|(field, spec)| (field.as_str(), spec));
    for (field, spec) in specs.chain(first_container) {
        let Some(port) = spec["ports"].get(0) else {
            continue;
        };
        let number = port["containerPort"]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("spec.predictor.{field}.ports[0].containerPort: not a port"))?;
        let protocol = UpstreamProtocol::from_port_name(port["name"].as_str());
        return Ok(Some((number, protocol)));
    }
    Ok(None)
}

/// Watches InferenceServices (all namespaces, or the configured ones) and
/// calls `publish` with every opted-in service whenever they change. Keeps
/// the last known set while the API server cannot be reached.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Backend, KubernetesBackend, ScaleMetric};

    const DOMAIN: &str = "example.com";

    /// An InferenceService as `kubectl get isvc -o json` prints it.
    fn fixture() -> Value {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/kubernetes/inferenceservice.json"
        ))
        .expect("the fixture is JSON")
    }

    #[test]
    fn a_real_inference_service_becomes_the_tutorial_service() {
        let service =
            service_from_inference_service(&fixture(), &InferenceServices::default(), DOMAIN)
                .unwrap()
                .expect("it opted in");
        assert_eq!(
            (service.name.as_str(), service.namespace.as_str()),
            ("redwine-week4", "kserve-inference")
        );
        assert_eq!(
            (
                service.min_replicas,
                service.max_replicas(),
                service.scale_target
            ),
            (1, 8, 1.0)
        );
        assert_eq!(service.scale_metric, ScaleMetric::Concurrency);
        assert_eq!(service.container_concurrency, 2);
        assert_eq!(
            service.default_host(DOMAIN),
            "redwine-week4.kserve-inference.example.com"
        );
        // The host of the URL KServe itself reports in raw mode.
        assert_eq!(
            service.hosts,
            ["redwine-week4-kserve-inference.example.com"]
        );
        assert_eq!(
            service.backend,
            Backend {
                kubernetes: Some(KubernetesBackend {
                    deployment: "redwine-week4-predictor".into(),
                    service: None,
                    port: 8080,
                }),
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_named_predictor_is_scaled_through_its_own_deployment() {
        let mut isvc = fixture();
        isvc["spec"]["predictor"]["name"] = json!("blue");
        let service = service_from_inference_service(&isvc, &InferenceServices::default(), DOMAIN)
            .unwrap()
            .unwrap();
        let backend = service.backend.kubernetes.unwrap();
        assert_eq!(backend.deployment, "redwine-week4-blue-predictor");
    }

    #[test]
    fn without_the_annotation_it_is_not_served() {
        let mut isvc = fixture();
        isvc["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(AUTOSCALE);
        let settings = InferenceServices::default();
        assert_eq!(
            service_from_inference_service(&isvc, &settings, DOMAIN),
            Ok(None)
        );
        isvc["metadata"]["annotations"][AUTOSCALE] = json!("false");
        assert_eq!(
            service_from_inference_service(&isvc, &settings, DOMAIN),
            Ok(None)
        );
    }

    #[test]
    fn annotations_choose_the_port_and_the_metrics() {
        let mut isvc = fixture();
        isvc["metadata"]["annotations"][PORT] = json!("8012");
        isvc["metadata"]["annotations"][METRICS] = json!("pods");
        let service = service_from_inference_service(&isvc, &InferenceServices::default(), DOMAIN)
            .unwrap()
            .unwrap();
        assert_eq!(service.backend.kubernetes.unwrap().port, 8012);
        assert_eq!(service.metrics, MetricsSource::Pods);
    }

    #[test]
    fn knative_annotations_are_honoured_after_kserve_fields_and_the_rest_reported() {
        let mut isvc = fixture();
        let annotations = &mut isvc["metadata"]["annotations"];
        for (key, value) in [
            ("min-scale", "0"),
            ("scale-down-delay", "5m"),
            ("initial-scale", "2"),
            ("activation-scale", "3"),
            ("window", "1s"),
            ("panic-threshold-percentage", "150"),
        ] {
            annotations[format!("autoscaling.knative.dev/{key}")] = json!(value);
        }
        let service = service_from_inference_service(&isvc, &InferenceServices::default(), DOMAIN)
            .unwrap()
            .unwrap();
        // spec.predictor.minReplicas (1) is set: KServe's field wins.
        assert_eq!(service.min_replicas, 1);
        assert_eq!(service.scale_down_delay.unwrap().0.as_secs(), 300);
        assert_eq!(
            (service.initial_scale, service.activation_scale),
            (None, Some(3))
        );
        assert_eq!(service.panic_threshold_percentage, Some(150.0));
        // Out of sluice's range: not applied, and said so.
        assert_eq!(service.stable_window, None);
        assert_eq!(service.warnings.len(), 3, "{:#?}", service.warnings);
        assert!(service.warnings[0].contains("initial-scale"));
        assert!(service.warnings[1].contains("min-scale"));
        assert!(
            service.warnings[2].contains("stableWindow: must be between 2s and 1h"),
            "{:#?}",
            service.warnings
        );
    }

    #[test]
    fn a_port_named_h2c_makes_a_grpc_service() {
        let mut isvc = fixture();
        let grpc_port = json!([{ "name": "h2c", "protocol": "TCP", "containerPort": 8081 }]);
        isvc["spec"]["predictor"]["model"]["ports"] = grpc_port.clone();
        let service = service_from_inference_service(&isvc, &InferenceServices::default(), DOMAIN)
            .unwrap()
            .unwrap();
        assert_eq!(service.protocol, UpstreamProtocol::H2c);
        assert_eq!(service.backend.kubernetes.unwrap().port, 8081);

        // A custom container's port counts the same; a port named otherwise is HTTP/1.1.
        let mut isvc = fixture();
        isvc["spec"]["predictor"]["containers"] = json!([{ "name": "kserve-container", "ports": [{ "name": "http1", "containerPort": 9000 }] }]);
        let service = service_from_inference_service(&isvc, &InferenceServices::default(), DOMAIN)
            .unwrap()
            .unwrap();
        assert_eq!(service.protocol, UpstreamProtocol::Http1);
        assert_eq!(service.backend.kubernetes.unwrap().port, 9000);

        // A port that is not one is named, not guessed.
        let mut isvc = fixture();
        isvc["spec"]["predictor"]["model"]["ports"] =
            json!([{ "name": "h2c", "containerPort": "x" }]);
        let error = service_from_inference_service(&isvc, &InferenceServices::default(), DOMAIN)
            .unwrap_err();
        assert!(
            error.contains("spec.predictor.model.ports[0].containerPort"),
            "{error}"
        );
    }

    #[test]
    fn unset_fields_take_kserve_defaults_and_bad_ones_are_named() {
        let mut isvc = fixture();
        let predictor = isvc["spec"]["predictor"].as_object_mut().unwrap();
        for field in PREDICTOR_FIELDS {
            predictor.remove(field);
        }
        let settings = InferenceServices::default();
        let service = service_from_inference_service(&isvc, &settings, DOMAIN)
            .unwrap()
            .unwrap();
        assert_eq!((service.min_replicas, service.max_replicas()), (1, 1));
        assert_eq!(service.container_concurrency, 0);

        isvc["spec"]["predictor"]["scaleMetric"] = json!("cpu");
        let error = service_from_inference_service(&isvc, &settings, DOMAIN).unwrap_err();
        assert!(error.starts_with("spec.predictor.scaleMetric:"), "{error}");

        isvc["spec"]["predictor"]["scaleMetric"] = json!("rps");
        isvc["spec"]["predictor"]["minReplicas"] = json!(5);
        isvc["spec"]["predictor"]["maxReplicas"] = json!(2);
        let error = service_from_inference_service(&isvc, &settings, DOMAIN).unwrap_err();
        assert!(
            error.contains("maxReplicas: 2 must be at least minReplicas (5)"),
            "{error}"
        );

        isvc["metadata"]["annotations"][PORT] = json!("http");
        let error = service_from_inference_service(&isvc, &settings, DOMAIN).unwrap_err();
        assert!(error.contains(PORT), "{error}");
    }
}
