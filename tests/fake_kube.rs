mod support;

// The fake API server, checked with the real kube-rs client: if these pass,
// kube-rs talks to the fake as it talks to a cluster.

use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use support::fake_kube::{deployment, endpoint_slice, inference_service, EndpointSpec, FakeKube};
use support::{client, eventually, get_json, poll_until};

const WITHIN: Duration = Duration::from_secs(10);
const NS: &str = "kserve-inference";

#[tokio::test]
async fn leases_are_created_read_replaced_and_deleted_as_by_the_api_server() {
    bounded(async {
        let fake = FakeKube::start().await;
        let leases: Api<Lease> = Api::default_namespaced(fake.client(0));

        let created = leases
            .create(&PostParams::default(), &lease("leader", "gateway-a"))
            .await
            .unwrap();
        let meta = &created.metadata;
        assert!(
            meta.uid.as_deref().is_some_and(|uid| uid.len() == 36),
            "{meta:?}"
        );
        assert!(meta.creation_timestamp.is_some(), "{meta:?}");
        assert_eq!(meta.namespace.as_deref(), Some("default"));
        assert_eq!(
            meta.resource_version.as_deref(),
            Some(fake.resource_version().as_str())
        );
        assert_eq!(leases.get("leader").await.unwrap(), created);
        let list = leases.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items, vec![created.clone()]);
        assert_eq!(
            list.metadata.resource_version,
            Some(fake.resource_version())
        );

        let again = leases
            .create(&PostParams::default(), &lease("leader", "gateway-b"))
            .await;
        assert_eq!(api_error(again), (409, "AlreadyExists".into()));

        let mut taken = created.clone();
        taken.spec.as_mut().unwrap().holder_identity = Some("gateway-b".into());
        let replaced = leases
            .replace("leader", &PostParams::default(), &taken)
            .await
            .unwrap();
        assert_eq!(
            fake.lease_holder("default", "leader").as_deref(),
            Some("gateway-b")
        );
        let version = |l: &Lease| l.resource_version().unwrap().parse::<u64>().unwrap();
        assert!(version(&replaced) > version(&created));
        assert_eq!(replaced.metadata.uid, created.metadata.uid);

        // A replace from the stale read loses, as optimistic concurrency says.
        let stale = leases
            .replace("leader", &PostParams::default(), &created)
            .await;
        assert_eq!(api_error(stale), (409, "Conflict".into()));
        // Leases do not allow unconditional updates.
        let mut unversioned = lease("leader", "gateway-c");
        unversioned.metadata.resource_version = None;
        let unconditional = leases
            .replace("leader", &PostParams::default(), &unversioned)
            .await;
        assert_eq!(api_error(unconditional), (422, "Invalid".into()));
        // But a PUT may create one (`AllowCreateOnUpdate`).
        leases
            .replace("follower", &PostParams::default(), &lease("follower", "x"))
            .await
            .unwrap();

        assert_eq!(
            api_error(leases.get("nope").await),
            (404, "NotFound".into())
        );
        let deleted = leases
            .delete("leader", &DeleteParams::default())
            .await
            .unwrap();
        assert!(deleted.is_right(), "a Status, not the object");
        assert_eq!(
            api_error(leases.get("leader").await),
            (404, "NotFound".into())
        );
        assert_eq!(fake.lease_holder("default", "leader"), None);
    })
    .await
}

#[tokio::test]
async fn responses_are_the_api_servers_json() {
    bounded(async {
        let fake = FakeKube::start().await;
        let slices = "/apis/discovery.k8s.io/v1/namespaces/kserve-inference/endpointslices";
        let base = format!("{}{slices}", fake.url(0));
        let before = fake.resource_version();
        fake.apply(slice("redwine", "redwine-abcde", &["10.0.0.1"]));

        let list = get_json(base.clone()).await;
        assert_eq!(list["kind"], "EndpointSliceList");
        assert_eq!(list["apiVersion"], "discovery.k8s.io/v1");
        assert_eq!(
            list["metadata"],
            json!({"resourceVersion": fake.resource_version()})
        );
        let item = &list["items"][0];
        assert!(
            item.get("kind").is_none() && item.get("apiVersion").is_none(),
            "{item}"
        );
        let created = item["metadata"]["creationTimestamp"].as_str().unwrap();
        assert!(created.len() == 20 && created.ends_with('Z'), "{created}");
        assert_eq!(item["metadata"]["generation"], 1);

        let response = client().get(format!("{base}/nope")).send().await.unwrap();
        assert_eq!(response.status(), 404);
        let status: Value = response.json().await.unwrap();
        assert_eq!(
            status,
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "endpointslices.discovery.k8s.io \"nope\" not found",
                "reason": "NotFound",
                "details": {"name": "nope", "group": "discovery.k8s.io", "kind": "endpointslices"},
                "code": 404,
            })
        );

        // A watch is chunked NDJSON; events carry kind and apiVersion, and
        // `timeoutSeconds` ends it.
        let query =
            format!("watch=1&allowWatchBookmarks=true&timeoutSeconds=2&resourceVersion={before}");
        let watch = format!("{base}?{query}");
        let mut response = client().get(watch).send().await.unwrap();
        eventually(WITHIN, "the watch is open", || async {
            fake.open_watches() == 1
        })
        .await;
        fake.bookmark();
        let mut body = String::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            body.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        let events: Vec<Value> = body
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{body}");
        assert_eq!(events[0]["type"], "ADDED");
        assert_eq!(events[0]["object"]["kind"], "EndpointSlice");
        assert_eq!(
            events[1],
            json!({"type": "BOOKMARK", "object": {
                "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                "metadata": {"resourceVersion": fake.resource_version()},
            }})
        );
        assert_eq!(fake.open_watches(), 0);

        // A client that goes away closes its watch.
        let response = client()
            .get(format!("{base}?watch=true"))
            .send()
            .await
            .unwrap();
        eventually(WITHIN, "the watch is open", || async {
            fake.open_watches() == 1
        })
        .await;
        drop(response);
        eventually(WITHIN, "the watch is closed", || async {
            fake.open_watches() == 0
        })
        .await;
    })
    .await
}

#[tokio::test]
async fn the_scale_subresource_reads_and_writes_the_deployment() {
    bounded(async {
        let fake = FakeKube::start().await;
        fake.apply(deployment(NS, "redwine", 1));
        let second = fake.add_listener().await;
        let deployments: Api<Deployment> = Api::namespaced(fake.client(second), NS);

        let scale = deployments.get_scale("redwine").await.unwrap();
        assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(1));
        let status = scale.status.as_ref().unwrap();
        assert_eq!(
            (status.replicas, status.selector.as_deref()),
            (1, Some("app=redwine"))
        );
        assert_eq!(
            scale.metadata.resource_version,
            Some(fake.resource_version())
        );

        let mut watch = deployments
            .watch(&WatchParams::default(), &fake.resource_version())
            .await
            .unwrap()
            .boxed();
        let patched = deployments
            .patch_scale(
                "redwine",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 3}})),
            )
            .await
            .unwrap();
        assert_eq!(patched.spec.unwrap().replicas, Some(3));
        assert_eq!(fake.replicas(NS, "redwine"), Some(3));
        let Some(WatchEvent::Modified(modified)) = watch.try_next().await.unwrap() else {
            panic!("a MODIFIED event for the deployment")
        };
        assert_eq!(modified.spec.unwrap().replicas, Some(3));
        assert_eq!(modified.metadata.generation, Some(2));
        assert_eq!(
            modified.metadata.resource_version,
            Some(fake.resource_version())
        );

        // A replace from the stale Scale is a conflict on the deployment.
        let stale = deployments
            .replace_scale("redwine", &PostParams::default(), &scale)
            .await;
        assert_eq!(api_error(stale), (409, "Conflict".into()));
        let mut fresh = deployments.get_scale("redwine").await.unwrap();
        fresh.spec.as_mut().unwrap().replicas = Some(0);
        deployments
            .replace_scale("redwine", &PostParams::default(), &fresh)
            .await
            .unwrap();
        assert_eq!(fake.replicas(NS, "redwine"), Some(0));

        // A conflict injected for the next write, then the retry succeeds.
        fake.conflict_next_writes(1);
        let to_two = Patch::Strategic(json!({"spec": {"replicas": 2}}));
        let injected = deployments
            .patch_scale("redwine", &PatchParams::default(), &to_two)
            .await;
        assert_eq!(api_error(injected), (409, "Conflict".into()));
        deployments
            .patch_scale("redwine", &PatchParams::default(), &to_two)
            .await
            .unwrap();

        let writes: Vec<_> = fake
            .scale_writes()
            .iter()
            .map(|w| (w.listener, w.from, w.to))
            .collect();
        assert_eq!(writes, vec![(second, 1, 3), (second, 3, 0), (second, 0, 2)]);
        let scale_requests = fake
            .requests()
            .into_iter()
            .filter(|r| r.path_and_query.contains("/scale"))
            .count();
        assert_eq!(scale_requests, 7);
        assert!(fake.requests().iter().all(|r| r.listener == second));
    })
    .await
}

#[tokio::test]
async fn the_watcher_lists_then_watches_its_selector() {
    bounded(async {
        let fake = FakeKube::start().await;
        fake.apply(slice("redwine", "redwine-1", &["10.0.0.1"]));
        fake.apply(slice("other", "other-1", &["10.0.0.9"]));
        let slices: Api<EndpointSlice> = Api::namespaced(fake.client(0), NS);
        let config = watcher::Config::default().labels("kubernetes.io/service-name=redwine");
        let mut events = watcher(slices, config).boxed();

        assert_eq!(next_event(&mut events).await, "Init");
        assert_eq!(next_event(&mut events).await, "InitApply(redwine-1)");
        assert_eq!(next_event(&mut events).await, "InitDone");

        fake.apply(slice("redwine", "redwine-2", &["10.0.0.2"]));
        assert_eq!(next_event(&mut events).await, "Apply(redwine-2)");
        fake.bookmark();
        fake.apply(slice("other", "other-1", &["10.0.0.8"]));
        fake.apply(slice("redwine", "redwine-1", &["10.0.0.1", "10.0.0.3"]));
        assert_eq!(next_event(&mut events).await, "Apply(redwine-1)");
        // Relabelled away from the selector: a DELETED, as the watch cache says.
        fake.apply(slice("other", "redwine-2", &["10.0.0.2"]));
        assert_eq!(next_event(&mut events).await, "Delete(redwine-2)");
        fake.delete("discovery.k8s.io/v1", "EndpointSlice", NS, "redwine-1");
        assert_eq!(next_event(&mut events).await, "Delete(redwine-1)");

        let requests: Vec<String> = fake
            .requests()
            .into_iter()
            .map(|r| r.path_and_query)
            .collect();
        let selector = "labelSelector=kubernetes.io%2Fservice-name%3Dredwine";
        assert!(
            requests[0].contains(selector) && requests[0].contains("limit=500"),
            "{requests:?}"
        );
        assert!(
            requests[1].contains("watch=true") && requests[1].contains("allowWatchBookmarks=true"),
            "{requests:?}"
        );
        assert_eq!(requests.len(), 2, "one list, one watch: {requests:?}");
    })
    .await
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_is_told_410_expired() {
    bounded(async {
        let fake = FakeKube::start().await;
        let slices: Api<EndpointSlice> = Api::namespaced(fake.client(0), NS);
        let old = fake.resource_version();
        fake.apply(slice("redwine", "redwine-1", &["10.0.0.1"]));
        fake.compact();

        let mut watch = slices
            .watch(&WatchParams::default(), &old)
            .await
            .unwrap()
            .boxed();
        let Some(WatchEvent::Error(status)) = watch.try_next().await.unwrap() else {
            panic!("an ERROR event")
        };
        assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        let expected = format!(
            "too old resource version: {old} ({})",
            fake.resource_version()
        );
        assert_eq!(status.message, expected);
        assert!(watch.try_next().await.unwrap().is_none(), "the stream ends");

        // From the compaction on, watches resume as before.
        let mut watch = slices
            .watch(&WatchParams::default(), &fake.resource_version())
            .await
            .unwrap()
            .boxed();
        fake.apply(slice("redwine", "redwine-2", &["10.0.0.2"]));
        let Some(WatchEvent::Added(added)) = watch.try_next().await.unwrap() else {
            panic!("an ADDED event")
        };
        assert_eq!(added.name_any(), "redwine-2");
    })
    .await
}

#[tokio::test]
async fn the_watcher_relists_after_410_and_ends_with_the_right_set() {
    bounded(async {
        let fake = FakeKube::start().await;
        fake.apply(slice("redwine", "a", &["10.0.0.1"]));
        fake.apply(slice("redwine", "b", &["10.0.0.2"]));
        let (mut events, mut mirror) = mirror_slices(&fake).await;
        assert_eq!(mirror.names(), ["a", "b"]);

        // Missed while down, and the history that would replay it is gone.
        fake.stop().await;
        fake.delete("discovery.k8s.io/v1", "EndpointSlice", NS, "a");
        fake.apply(slice("redwine", "c", &["10.0.0.3"]));
        fake.compact();
        fake.restart().await;

        mirror
            .follow_until(&mut events, |mirror, event| {
                mirror.saw_expired && matches!(event, Event::InitDone)
            })
            .await;
        assert_eq!(mirror.names(), ["b", "c"]);
    })
    .await
}

#[tokio::test]
async fn the_watcher_resumes_after_the_api_server_restarts() {
    bounded(async {
        let fake = FakeKube::start().await;
        fake.apply(slice("redwine", "a", &["10.0.0.1"]));
        let (mut events, mut mirror) = mirror_slices(&fake).await;
        eventually(WITHIN, "the watch is open", || async {
            fake.open_watches() == 1
        })
        .await;

        fake.stop().await;
        assert_eq!(fake.open_watches(), 0);
        assert!(
            tokio::net::TcpStream::connect(fake.addr(0)).await.is_err(),
            "refused while down"
        );
        fake.apply(slice("redwine", "b", &["10.0.0.2"]));
        let requests_before_restart = fake.requests().len();
        fake.restart().await;

        mirror
            .follow_until(&mut events, |mirror, _| mirror.names() == ["a", "b"])
            .await;
        // Resumed from its resourceVersion: the history replayed, no re-list.
        let since: Vec<_> = fake
            .requests()
            .into_iter()
            .skip(requests_before_restart)
            .collect();
        assert!(
            since
                .iter()
                .all(|r| r.path_and_query.contains("watch=true")),
            "{since:?}"
        );
    })
    .await
}

#[tokio::test]
async fn inference_services_are_listed_and_watched_as_dynamic_objects() {
    bounded(async {
        let fake = FakeKube::start().await;
        let predictor = json!({
            "minReplicas": 0,
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://models/redwine"},
        });
        let annotations = [("sluice.dev/max-concurrency", "4")];
        fake.apply(inference_service(
            "team-a",
            "redwine",
            &annotations,
            predictor.clone(),
        ));
        fake.apply(inference_service(
            "team-b",
            "whitewine",
            &[],
            predictor.clone(),
        ));
        let resource = ApiResource {
            group: "serving.kserve.io".into(),
            version: "v1beta1".into(),
            api_version: "serving.kserve.io/v1beta1".into(),
            kind: "InferenceService".into(),
            plural: "inferenceservices".into(),
        };
        let all: Api<DynamicObject> = Api::all_with(fake.client(0), &resource);

        let list = all.list(&ListParams::default()).await.unwrap();
        let names: Vec<_> = list
            .items
            .iter()
            .map(|i| (i.namespace().unwrap(), i.name_any()))
            .collect();
        let expected = [("team-a", "redwine"), ("team-b", "whitewine")]
            .map(|(ns, name)| (ns.to_string(), name.to_string()));
        assert_eq!(names, expected);
        let first = &list.items[0];
        let kind = &first
            .types
            .as_ref()
            .expect("custom resources keep their type")
            .kind;
        assert_eq!(kind, "InferenceService");
        assert_eq!(first.annotations()["sluice.dev/max-concurrency"], "4");
        assert_eq!(first.data["spec"]["predictor"], predictor);

        let mut events = watcher(all, watcher::Config::default()).boxed();
        assert_eq!(next_event(&mut events).await, "Init");
        assert_eq!(next_event(&mut events).await, "InitApply(redwine)");
        assert_eq!(next_event(&mut events).await, "InitApply(whitewine)");
        assert_eq!(next_event(&mut events).await, "InitDone");
        fake.apply(inference_service("team-c", "rose", &[], predictor.clone()));
        assert_eq!(next_event(&mut events).await, "Apply(rose)");
        fake.delete(
            "serving.kserve.io/v1beta1",
            "InferenceService",
            "team-a",
            "redwine",
        );
        assert_eq!(next_event(&mut events).await, "Delete(redwine)");

        // Custom resources take no strategic merge patch.
        let team_b: Api<DynamicObject> = Api::namespaced_with(fake.client(0), "team-b", &resource);
        let strategic = Patch::Strategic(json!({"metadata": {"labels": {"x": "y"}}}));
        let refused = team_b
            .patch("whitewine", &PatchParams::default(), &strategic)
            .await;
        assert_eq!(api_error(refused), (415, "UnsupportedMediaType".into()));
        let merge = Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}));
        let patched = team_b
            .patch("whitewine", &PatchParams::default(), &merge)
            .await
            .unwrap();
        assert_eq!(patched.labels()["x"], "y");
    })
    .await
}

#[tokio::test]
async fn streaming_lists_and_field_selectors_work() {
    bounded(async {
        let fake = FakeKube::start().await;
        fake.apply(slice("redwine", "a", &["10.0.0.1"]));
        fake.apply(slice("redwine", "b", &["10.0.0.2"]));
        let slices: Api<EndpointSlice> = Api::namespaced(fake.client(0), NS);
        let config = watcher::Config::default()
            .streaming_lists()
            .fields("metadata.name=b");
        let mut events = watcher(slices.clone(), config).boxed();
        assert_eq!(next_event(&mut events).await, "Init");
        assert_eq!(next_event(&mut events).await, "InitApply(b)");
        assert_eq!(next_event(&mut events).await, "InitDone");
        assert!(
            fake.requests()
                .iter()
                .all(|r| !r.path_and_query.contains("limit=")),
            "no list"
        );

        let unsupported = slices
            .list(&ListParams::default().fields("spec.nodeName=x"))
            .await;
        assert_eq!(api_error(unsupported), (400, "BadRequest".into()));
    })
    .await
}

#[tokio::test]
async fn a_kubeconfig_points_clients_at_the_fake() {
    bounded(async {
        let fake = FakeKube::start().await;
        fake.apply(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "leader"}, "spec": {"holderIdentity": "gateway-a"},
        }));
        let dir = tempfile::tempdir().unwrap();
        let path = fake.write_kubeconfig(0, dir.path());
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .unwrap();
        let leases: Api<Lease> = Api::default_namespaced(kube::Client::try_from(config).unwrap());
        let holder = leases
            .get("leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity;
        assert_eq!(holder.as_deref(), Some("gateway-a"));
    })
    .await
}

#[tokio::test]
async fn stop_refuses_connections_and_dropping_frees_every_port() {
    bounded(async {
        let fake = FakeKube::start().await;
        fake.add_listener().await;
        let addrs = [fake.addr(0), fake.addr(1)];
        fake.stop().await;
        for addr in addrs {
            assert!(
                tokio::net::TcpStream::connect(addr).await.is_err(),
                "{addr} refused"
            );
        }
        fake.restart().await;
        let leases: Api<Lease> = Api::default_namespaced(fake.client(1));
        leases.list(&ListParams::default()).await.unwrap();

        drop(fake);
        for addr in addrs {
            poll_until(WITHIN, "the port is free", || async move {
                match tokio::net::TcpStream::connect(addr).await {
                    Err(_) => Ok(()),
                    Ok(_) => Err(format!("{addr} still accepts")),
                }
            })
            .await;
        }
    })
    .await
}

// === helpers ===

/// Every test ends within a bound, whatever the fake does.
async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("the test finishes within 60s")
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }),
    }
}

/// An EndpointSlice of `service` in NS with ready endpoints at `ips`.
fn slice(service: &str, name: &str, ips: &[&str]) -> Value {
    let endpoints: Vec<_> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| EndpointSpec::ready(ip, &format!("{name}-pod-{i}")))
        .collect();
    endpoint_slice(NS, service, name, &endpoints, 8080)
}

fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

type Events<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;

/// Polls the watcher in a task of its own, as a controller would, so that
/// it reconnects while the test is busy elsewhere; its events are queued.
fn driven<K: Send + 'static>(
    watcher: impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
) -> Events<K> {
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    tokio::spawn(watcher.map(Ok).forward(sender));
    receiver.boxed()
}

/// A default kube-rs watcher of the fake's EndpointSlices in `NS`, driven
/// in its own task, and its mirror once the first list is done.
async fn mirror_slices(fake: &FakeKube) -> (Events<EndpointSlice>, Mirror) {
    let slices: Api<EndpointSlice> = Api::namespaced(fake.client(0), NS);
    let mut events = driven(watcher(slices, watcher::Config::default()).default_backoff());
    let mut mirror = Mirror::default();
    mirror
        .follow_until(&mut events, |_, event| matches!(event, Event::InitDone))
        .await;
    (events, mirror)
}

/// The next watcher event, described (`Init`, `Apply(name)`, ...); an error
/// fails the test.
async fn next_event<K: ResourceExt>(events: &mut Events<K>) -> String {
    match tokio::time::timeout(WITHIN, events.next()).await {
        Ok(Some(Ok(event))) => event.to_string(),
        Ok(Some(Err(error))) => panic!("watcher error: {error}"),
        Ok(None) => panic!("the watcher ended"),
        Err(_) => panic!("no watcher event within {WITHIN:?}"),
    }
}

/// The names a reflector would hold after the events seen so far.
#[derive(Default)]
struct Mirror {
    names: BTreeSet<String>,
    relisting: Option<BTreeSet<String>>,
    saw_expired: bool,
}

impl Mirror {
    fn names(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).collect()
    }

    fn apply<K: ResourceExt>(&mut self, event: &Event<K>) {
        match event {
            Event::Init => self.relisting = Some(BTreeSet::new()),
            Event::InitApply(object) => {
                self.relisting
                    .get_or_insert_default()
                    .insert(object.name_any());
            }
            Event::InitDone => self.names = self.relisting.take().unwrap_or_default(),
            Event::Apply(object) => {
                self.names.insert(object.name_any());
            }
            Event::Delete(object) => {
                self.names.remove(&object.name_any());
            }
        }
    }

    /// Follows the watcher until `done` holds after an event; returns the
    /// errors seen on the way (the watcher recovers from them).
    async fn follow_until<K: ResourceExt>(
        &mut self,
        events: &mut Events<K>,
        done: impl Fn(&Mirror, &Event<K>) -> bool,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout_at(deadline, events.next()).await;
            match next
                .expect("the watcher gets there within 30s")
                .expect("the watcher does not end")
            {
                Ok(event) => {
                    self.apply(&event);
                    if done(self, &event) {
                        return errors;
                    }
                }
                Err(error) => {
                    self.saw_expired |=
                        matches!(&error, watcher::Error::WatchError(s) if s.code == 410);
                    errors.push(format!("{error}: {:?}", std::error::Error::source(&error)));
                }
            }
        }
    }
}
