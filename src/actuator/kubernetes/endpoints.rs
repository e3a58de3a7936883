//! Ready pods from the EndpointSlices of a Service, kept current by a watch.
//!
//! A pod gets requests only while its endpoint is ready and not
//! terminating: a pod being removed gets no new requests (those in flight
//! finish). When the API server cannot be reached, the last known pods stay.

use crate::kubernetes::{Cluster, WatchBackoff, PROBE_EVERY, PROBE_TIMEOUT, WATCH_SECONDS};
use crate::pods::Dispatcher;
use futures_util::StreamExt;
use http::uri::Authority;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::info;

/// One pod as the EndpointSlices list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod's name (targetRef), else its address.
    pub pod: String,
    /// Pod IP and the configured port.
    pub address: Authority,
    /// Serving (else ready; unknown reads as ready, as Kubernetes says) and
    /// not terminating: it may get new requests.
    pub ready: bool,
    pub terminating: bool,
}

/// The pods of a Service's slices, in pod order. A pod listed by two slices
/// (while the controller moves it, or one per address family on a
/// dual-stack Service) is taken once: at its IPv4 address if it has one,
/// ready if either slice says so.
pub fn endpoints_of<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    port: u16,
) -> Vec<Endpoint> {
    let mut pods: BTreeMap<String, Endpoint> = BTreeMap::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        for endpoint in &slice.endpoints {
            // Every address of an endpoint is the same pod; use the first.
            let Some(ip) = endpoint.addresses.first() else {
                continue;
            };
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.clone()
            };
            let Ok(address) = Authority::try_from(format!("{host}:{port}")) else {
                continue;
            };
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            let terminating = conditions.terminating == Some(true);
            // `serving` is the pod's own readiness, also where a Service
            // publishes not-ready addresses (which marks them `ready`).
            let serving = conditions.serving.or(conditions.ready).unwrap_or(true);
            let ready = serving && !terminating;
            let pod = endpoint
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .unwrap_or_else(|| ip.clone());
            let entry = Endpoint {
                pod,
                address,
                ready,
                terminating,
            };
            let ipv4 = !ip.contains(':');
            pods.entry(entry.pod.clone())
                .and_modify(|seen| {
                    // Terminating in either slice wins: no new requests.
                    let terminating = seen.terminating || entry.terminating;
                    let ready = (seen.ready || entry.ready) && !terminating;
                    if ipv4 && seen.address.host().starts_with('[') {
                        *seen = entry.clone();
                    }
                    (seen.ready, seen.terminating) = (ready, terminating);
                })
                .or_insert(entry);
        }
    }
    pods.into_values().collect()
}

/// Where one service's pods come from.
#[derive(Debug, Clone)]
pub struct PodSource {
    pub namespace: String,
    pub service: String,
    pub port: u16,
    /// The sidecars' admin port, when the autoscaler reads the pods.
    pub stats_port: Option<u16>,
}

impl PodSource {
    pub fn health_source(&self) -> String {
        format!("endpointslices {}/{}", self.namespace, self.service)
    }
}

/// Watches the Service's EndpointSlices forever (kube-rs's watcher re-lists
/// after a 410 Gone and reconnects with backoff), and keeps the dispatcher's
/// pods and `seen` current.
pub async fn watch(
    cluster: Arc<Cluster>,
    source: PodSource,
    dispatcher: Arc<Dispatcher>,
    seen: Arc<Mutex<Option<Vec<Endpoint>>>>,
) {
    let health = source.health_source();
    let client = loop {
        match cluster.client().await {
            Ok(client) => break client,
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    };
    let api: Api<EndpointSlice> = Api::namespaced(client, &source.namespace);
    let selector = format!("kubernetes.io/service-name={}", source.service);
    let config = watcher::Config::default()
        .labels(&selector)
        .timeout(WATCH_SECONDS);
    let mut events = watcher::watcher(api.clone(), config)
        .backoff(WatchBackoff::default())
        .boxed();
    let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    // A re-list is gathered whole before it replaces what is known, so a
    // reconnect never empties the balancer for a moment.
    let mut relist: Option<BTreeMap<String, EndpointSlice>> = None;
    let mut probe = tokio::time::interval(PROBE_EVERY);
    let mut last_error: Option<tokio::time::Instant> = None;
    loop {
        let event = tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    cluster.health().failed(&health, "watch endpointslices", &e);
                    last_error = Some(tokio::time::Instant::now());
                    continue;
                }
                None => return,
            },
            _ = probe.tick() => {
                // A watch that resumes after an outage says nothing when it
                // succeeds. While failing, list: the pods are brought up to
                // date at once, and once the watch has also gone a while
                // without failing (it has retried since), it works again.
                if cluster.health().is_failing(&health) {
                    if let Some(listed) = list_now(&api, &selector).await {
                        slices = listed;
                        publish(&source, &slices, &dispatcher, &seen);
                        let quiet = last_error
                            .is_none_or(|at| at.elapsed() > WatchBackoff::quiet_after_failure());
                        if quiet {
                            cluster.health().succeeded(&health);
                        }
                    }
                }
                continue;
            }
        };
        // `Init` comes before the list is even asked for: not a success.
        if !matches!(event, Event::Init) {
            cluster.health().succeeded(&health);
        }
        match event {
            Event::Init => relist = Some(BTreeMap::new()),
            Event::InitApply(slice) => {
                relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key(&slice), slice);
            }
            Event::InitDone => {
                slices = relist.take().unwrap_or_default();
                publish(&source, &slices, &dispatcher, &seen);
            }
            Event::Apply(slice) => {
                slices.insert(key(&slice), slice);
                publish(&source, &slices, &dispatcher, &seen);
            }
            Event::Delete(slice) => {
                slices.remove(&key(&slice));
                publish(&source, &slices, &dispatcher, &seen);
            }
        }
    }
}

async fn list_now(
    api: &Api<EndpointSlice>,
    selector: &str,
) -> Option<BTreeMap<String, EndpointSlice>> {
    let params = ListParams::default().labels(selector);
    let list = tokio::time::timeout(PROBE_TIMEOUT, api.list(&params))
        .await
        .ok()?
        .ok()?;
    Some(list.items.into_iter().map(|s| (key(&s), s)).collect())
}

fn key(slice: &EndpointSlice) -> String {
    slice.metadata.name.clone().unwrap_or_default()
}

fn publish(
    source: &PodSource,
    slices: &BTreeMap<String, EndpointSlice>,
    dispatcher: &Dispatcher,
    seen: &Mutex<Option<Vec<Endpoint>>>,
) {
    let endpoints = endpoints_of(slices.values(), source.port);
    let ready: Vec<Authority> = endpoints
        .iter()
        .filter(|e| e.ready)
        .map(|e| e.address.clone())
        .collect();
    let before = dispatcher.pods().len();
    dispatcher.set_pods(&ready);
    for pod in dispatcher.pods() {
        let stats = source
            .stats_port
            .and_then(|port| format!("{}:{port}", pod.authority().host()).parse().ok());
        pod.set_stats_addr(stats);
    }
    if before != ready.len() {
        info!(
            namespace = %source.namespace,
            service = %source.service,
            ready = ready.len(),
            listed = endpoints.len(),
            "pods changed"
        );
    }
    *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(endpoints);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EndpointSlice as `kubectl get endpointslice -o json` prints it.
    fn fixture() -> EndpointSlice {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/kubernetes/endpointslice.json"
        ))
        .expect("the fixture is a valid EndpointSlice")
    }

    #[test]
    fn only_the_ready_endpoint_of_a_real_slice_gets_requests() {
        let endpoints = endpoints_of([&fixture()], 8080);
        let summary: Vec<(&str, String, bool, bool)> = endpoints
            .iter()
            .map(|e| {
                (
                    e.pod.as_str(),
                    e.address.to_string(),
                    e.ready,
                    e.terminating,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "redwine-week4-predictor-6c9d7b8f5d-4kx2p",
                    "10.0.1.201:8080".into(),
                    true,
                    false
                ),
                (
                    "redwine-week4-predictor-6c9d7b8f5d-9wzfm",
                    "10.0.2.58:8080".into(),
                    false,
                    true
                ),
                (
                    "redwine-week4-predictor-6c9d7b8f5d-tq7hn",
                    "10.0.3.117:8080".into(),
                    false,
                    false
                ),
            ]
        );
    }

    #[test]
    fn unknown_readiness_is_ready_but_terminating_never_is() {
        let mut slice = fixture();
        // Unknown means ready, as Kubernetes says; publishNotReadyAddresses
        // may mark a terminating pod ready.
        let first = slice.endpoints[0].conditions.as_mut().unwrap();
        (first.ready, first.serving) = (None, None);
        slice.endpoints[1].conditions.as_mut().unwrap().ready = Some(true);
        let endpoints = endpoints_of([&slice], 8012);
        assert!(endpoints[0].ready);
        assert!(!endpoints[1].ready, "terminating pods get no new requests");
    }

    #[test]
    fn a_pod_published_as_ready_but_not_serving_gets_nothing() {
        // What a Service with publishNotReadyAddresses lists for a pod
        // that fails its readiness probe.
        let mut slice = fixture();
        let third = slice.endpoints[2].conditions.as_mut().unwrap();
        (third.ready, third.serving) = (Some(true), Some(false));
        assert!(!endpoints_of([&slice], 8080)[2].ready);
    }

    #[test]
    fn a_dual_stack_pod_is_one_pod_at_its_ipv4_address() {
        let v4 = fixture();
        let mut v6 = fixture();
        v6.metadata.name = Some("redwine-week4-predictor-v6".into());
        v6.address_type = "IPv6".into();
        for (i, endpoint) in v6.endpoints.iter_mut().enumerate() {
            endpoint.addresses = vec![format!("fd00::{i}")];
        }
        for slices in [[&v6, &v4], [&v4, &v6]] {
            let endpoints = endpoints_of(slices, 8080);
            assert_eq!(endpoints.len(), 3);
            assert_eq!(endpoints[0].address, "10.0.1.201:8080");
        }
        // One slice already says the pod is going away: it is.
        let mut stale = v6.clone();
        let first = stale.endpoints[1].conditions.as_mut().unwrap();
        (first.ready, first.serving, first.terminating) = (Some(true), Some(true), Some(false));
        for slices in [[&stale, &v4], [&v4, &stale]] {
            let pod = &endpoints_of(slices, 8080)[1];
            assert!(pod.terminating && !pod.ready, "{pod:?}");
        }
    }

    #[test]
    fn a_pod_in_two_slices_is_listed_once_and_ready_if_either_says_so() {
        let first = fixture();
        let mut second = fixture();
        second.metadata.name = Some("redwine-week4-predictor-other".into());
        let third = second.endpoints[2].conditions.as_mut().unwrap();
        (third.ready, third.serving) = (Some(true), Some(true));
        let endpoints = endpoints_of([&first, &second], 8080);
        assert_eq!(endpoints.len(), 3);
        assert_eq!(endpoints.iter().filter(|e| e.ready).count(), 2);
    }

    #[test]
    fn ipv6_addresses_are_bracketed_and_fqdn_slices_skipped() {
        let mut slice = fixture();
        slice.address_type = "IPv6".into();
        slice.endpoints.truncate(1);
        slice.endpoints[0].addresses = vec!["fd00::1".into()];
        slice.endpoints[0].target_ref = None;
        assert_eq!(endpoints_of([&slice], 80)[0].address, "[fd00::1]:80");
        slice.address_type = "FQDN".into();
        assert!(endpoints_of([&slice], 80).is_empty());
    }
}
