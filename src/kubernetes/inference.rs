//! KServe InferenceServices as sluice services.
//!
//! An InferenceService opts in with the annotation `sluice.dev/autoscale:
//! "true"`. sluice reads the tutorial's fields from `spec.predictor`
//! (`minReplicas`, `maxReplicas`, `scaleTarget`, `scaleMetric`,
//! `containerConcurrency`), answers on `<name>.<namespace>.<domain>` and on
//! the host of KServe's own URL in raw mode (`<name>-<namespace>.<domain>`),
//! and scales the `<name>-predictor` Deployment that KServe creates in raw
//! deployment (Standard) mode with `serving.kserve.io/autoscalerClass:
//! external`, reading its pods from the `<name>-predictor` Service's
//! EndpointSlices.

use super::{Cluster, WatchBackoff, PROBE_EVERY, PROBE_TIMEOUT, WATCH_SECONDS};
use crate::config::{validate_service_config, InferenceServices, MetricsSource, ServiceConfig};
use futures_util::StreamExt;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

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

fn api_resource() -> ApiResource {
    ApiResource {
        group: "serving.kserve.io".into(),
        version: "v1beta1".into(),
        api_version: "serving.kserve.io/v1beta1".into(),
        kind: "InferenceService".into(),
        plural: "inferenceservices".into(),
    }
}

/// The service an InferenceService asks for: `Ok(None)` if it did not opt
/// in, `Err` (naming the field) if it opted in with something sluice cannot
/// serve.
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
    let port = match annotations[PORT].as_str() {
        Some(text) => text
            .parse::<u16>()
            .map_err(|_| format!("metadata.annotations.{PORT}: {text:?} is not a port"))?,
        None => settings.port,
    };
    let metrics = match annotations[METRICS].as_str() {
        Some(text) => json!(text),
        None => json!(match settings.metrics {
            MetricsSource::Gateway => "gateway",
            MetricsSource::Pods => "pods",
        }),
    };
    let predictor = &isvc["spec"]["predictor"];
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
        "backend": { "kubernetes": { "deployment": deployment, "port": port } },
    });
    for field in PREDICTOR_FIELDS {
        if let Some(value) = predictor.get(field).filter(|v| !v.is_null()) {
            service[field] = value.clone();
        }
    }
    let config: ServiceConfig = serde_path_to_error::deserialize(service).map_err(|e| {
        let path = e.path().to_string();
        let at = if PREDICTOR_FIELDS.contains(&path.as_str()) {
            format!("spec.predictor.{path}")
        } else {
            path
        };
        format!("{at}: {}", e.into_inner())
    })?;
    let problems = validate_service_config(&config);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(Some(config))
}

/// Watches InferenceServices (all namespaces, or the configured ones) and
/// calls `publish` with every opted-in service whenever they change. Keeps
/// the last known set while the API server cannot be reached.
pub async fn watch_inference_services(
    cluster: Arc<Cluster>,
    domain: String,
    publish: impl Fn(Vec<ServiceConfig>) + Send + 'static,
) {
    let settings = cluster.settings().inference_services.clone();
    // One health source per watch: one namespace failing is not hidden by
    // another that works.
    let health: Vec<String> = if settings.namespaces.is_empty() {
        vec!["inferenceservices".to_string()]
    } else {
        settings
            .namespaces
            .iter()
            .map(|ns| format!("inferenceservices {ns}"))
            .collect()
    };
    let client = loop {
        match cluster.client().await {
            Ok(client) => break client,
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    };
    let resource = api_resource();
    let apis: Vec<Api<DynamicObject>> = if settings.namespaces.is_empty() {
        vec![Api::all_with(client, &resource)]
    } else {
        settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced_with(client.clone(), ns, &resource))
            .collect()
    };
    // Each watch's objects, by namespace/name; `None` until its first list.
    // A re-list is gathered whole and then replaces its own.
    let mut known: Vec<Option<BTreeMap<String, Value>>> = vec![None; apis.len()];
    let mut relist: Vec<Option<BTreeMap<String, Value>>> = vec![None; apis.len()];
    let streams = apis.iter().cloned().enumerate().map(|(i, api)| {
        watcher::watcher(api, watcher::Config::default().timeout(WATCH_SECONDS))
            .backoff(WatchBackoff::default())
            .map(move |event| (i, event))
            .boxed()
    });
    let mut events = futures_util::stream::select_all(streams);
    let mut served = Served::default();
    let mut probe = tokio::time::interval(PROBE_EVERY);
    let mut last_error: Vec<Option<tokio::time::Instant>> = vec![None; apis.len()];
    loop {
        let (i, event) = tokio::select! {
            next = events.next() => match next {
                Some((i, Ok(event))) => (i, event),
                Some((i, Err(e))) => {
                    cluster.health().failed(&health[i], "watch inferenceservices", &e);
                    last_error[i] = Some(tokio::time::Instant::now());
                    continue;
                }
                None => return,
            },
            _ = probe.tick() => {
                // A resumed watch says nothing when it succeeds. While one
                // fails, list: what is served is brought up to date at once,
                // and once the watch has also gone a while without failing
                // (it has retried since), it works again.
                let mut changed = false;
                for (i, api) in apis.iter().enumerate() {
                    if !cluster.health().is_failing(&health[i]) {
                        continue;
                    }
                    if let Some(objects) = list_now(api).await {
                        known[i] = Some(objects);
                        changed = true;
                        let quiet = last_error[i]
                            .is_none_or(|at| at.elapsed() > WatchBackoff::quiet_after_failure());
                        if quiet {
                            cluster.health().succeeded(&health[i]);
                        }
                    }
                }
                if changed && known.iter().all(Option::is_some) {
                    cluster.inference_services_listed();
                    served.publish_if_changed(&known, &settings, &domain, &publish);
                }
                continue;
            }
        };
        // `Init` comes before the list is even asked for: not a success.
        if !matches!(event, Event::Init) {
            cluster.health().succeeded(&health[i]);
        }
        match event {
            Event::Init => relist[i] = Some(BTreeMap::new()),
            Event::InitApply(object) => {
                let (key, value) = entry(object);
                relist[i]
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key, value);
            }
            Event::InitDone => known[i] = Some(relist[i].take().unwrap_or_default()),
            Event::Apply(object) => {
                let (key, value) = entry(object);
                known[i]
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key, value);
            }
            Event::Delete(object) => {
                if let Some(known) = known[i].as_mut() {
                    known.remove(&entry(object).0);
                }
            }
        }
        if known.iter().all(Option::is_some) {
            cluster.inference_services_listed();
            served.publish_if_changed(&known, &settings, &domain, &publish);
        }
    }
}

async fn list_now(api: &Api<DynamicObject>) -> Option<BTreeMap<String, Value>> {
    let list = tokio::time::timeout(PROBE_TIMEOUT, api.list(&ListParams::default()))
        .await
        .ok()?
        .ok()?;
    Some(list.items.into_iter().map(entry).collect())
}

fn entry(object: DynamicObject) -> (String, Value) {
    let key = format!(
        "{}/{}",
        object.metadata.namespace.as_deref().unwrap_or_default(),
        object.metadata.name.as_deref().unwrap_or_default()
    );
    let value = serde_json::to_value(&object).unwrap_or(Value::Null);
    (key, value)
}

/// What is served, by namespace/name. An InferenceService edited into
/// something sluice cannot serve keeps its last valid settings (and the
/// problem is logged once), rather than going dark.
#[derive(Default)]
struct Served {
    last_good: BTreeMap<String, ServiceConfig>,
    reported: BTreeMap<String, String>,
    published: Option<Vec<ServiceConfig>>,
}

impl Served {
    fn publish_if_changed(
        &mut self,
        known: &[Option<BTreeMap<String, Value>>],
        settings: &InferenceServices,
        domain: &str,
        publish: &impl Fn(Vec<ServiceConfig>),
    ) {
        let objects: BTreeMap<&String, &Value> = known.iter().flatten().flatten().collect();
        self.last_good.retain(|key, _| objects.contains_key(key));
        self.reported.retain(|key, _| objects.contains_key(key));
        let mut services = Vec::new();
        for (key, object) in objects {
            match service_from_inference_service(object, settings, domain) {
                Ok(Some(service)) => {
                    self.reported.remove(key);
                    self.last_good.insert(key.clone(), service.clone());
                    services.push(service);
                }
                Ok(None) => {
                    self.last_good.remove(key);
                }
                Err(problem) => {
                    let last = self.last_good.get(key);
                    if self.reported.get(key) != Some(&problem) {
                        let kept = if last.is_some() {
                            "it keeps its last valid settings"
                        } else {
                            "it is not served"
                        };
                        warn!(inference_service = %key, "InferenceService cannot be served as it is ({kept}): {problem}");
                        self.reported.insert(key.clone(), problem);
                    }
                    services.extend(last.cloned());
                }
            }
        }
        if self.published.as_ref() != Some(&services) {
            info!(
                services = services.len(),
                "InferenceServices changed: serving {} of them",
                services.len()
            );
            publish(services.clone());
            self.published = Some(services);
        }
    }
}

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
