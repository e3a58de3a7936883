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
//! EndpointSlices. Knative's `autoscaling.knative.dev/*` annotations are
//! honoured after those fields (see `knative.rs`); what cannot be is a
//! warning in `/status` and the log.

use super::isvc::service_from_inference_service;
use super::{Cluster, WatchBackoff, PROBE_EVERY, PROBE_TIMEOUT, WATCH_SECONDS};
use crate::config::{InferenceServices, ServiceConfig};
use futures_util::StreamExt;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

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
    /// The annotations not honoured, by namespace/name, as last logged.
    warned: BTreeMap<String, Vec<String>>,
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
        self.warned.retain(|key, _| objects.contains_key(key));
        let mut services = Vec::new();
        for (key, object) in objects {
            match service_from_inference_service(object, settings, domain) {
                Ok(Some(service)) => {
                    self.reported.remove(key);
                    if self.warned.get(key) != Some(&service.warnings) {
                        for warning in &service.warnings {
                            warn!(inference_service = %key, "annotation not honoured: {warning}");
                        }
                        self.warned.insert(key.clone(), service.warnings.clone());
                    }
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
