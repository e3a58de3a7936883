//! A fake Kubernetes API server for integration tests: real HTTP/1.1 on
//! 127.0.0.1, the real REST paths and JSON, so that kube-rs (and anything
//! given a kubeconfig) talks to it as to a cluster.
//!
//! It serves Deployments (with their `scale` subresource), EndpointSlices,
//! Leases and KServe InferenceServices: list, watch, get, create, replace,
//! patch and delete, with one global resourceVersion, a watch history that
//! `compact` forgets (410 Expired, as after an etcd compaction), bookmarks
//! on demand, and `stop`/`restart` to take the API server away.
//!
//! The test side plays the cluster's controllers: `apply` writes objects
//! (status included) and `get`/`replicas`/`lease_holder` read them.
//!
//! Where it differs from a real API server (none of which sluice relies
//! on): no TLS, authentication or RBAC (but `refuse_watches` answers 403 as
//! RBAC would); HTTP/1.1 and JSON only; no discovery; lists come in one page
//! (`limit`/`continue` ignored) at the latest version; no periodic bookmarks
//! and history kept until `compact`; strategic merge patch treated as merge
//! patch, server-side apply approximated; no controllers (a Deployment's
//! status never changes by itself), no finalizers or graceful deletion;
//! field selectors only on `metadata.name` and `metadata.namespace`.

mod decode;
mod handlers;
mod listeners;
mod objects;
mod patch;
mod resources;
mod routes;
mod scale;
mod selector;
mod store;
mod watch;
mod writes;

#[allow(unused_imports)]
pub use self::objects::{deployment, endpoint_slice, inference_service, EndpointSpec};

use self::listeners::Listeners;
use self::resources::{deployments, ResourceType};
use self::store::{ObjectKey, Store};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The API server. Dropping it aborts every task it started.
pub struct FakeKube {
    shared: Arc<Shared>,
}

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub listener: usize,
    pub method: http::Method,
    pub path_and_query: String,
}

/// A successful write to a Deployment's `scale` subresource (including one
/// that left the replicas as they were).
#[derive(Debug, Clone)]
pub struct ScaleWrite {
    pub at: Instant,
    pub listener: usize,
    pub namespace: String,
    pub name: String,
    pub from: i64,
    pub to: i64,
}

/// What the server tasks and the test share.
struct Shared {
    store: Mutex<Store>,
    log: Mutex<Log>,
    listeners: Mutex<Listeners>,
}

#[derive(Default)]
struct Log {
    requests: Vec<Request>,
    scale_writes: Vec<ScaleWrite>,
    conflicts_to_inject: usize,
    refuse_watches: bool,
}

// === impl FakeKube ===

impl FakeKube {
    /// Starts the server with listener 0 on 127.0.0.1:0.
    pub async fn start() -> FakeKube {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            log: Mutex::new(Log::default()),
            listeners: Mutex::new(Listeners::new()),
        });
        let fake = FakeKube { shared };
        fake.add_listener().await;
        fake
    }

    /// Another port on the same state, so tests can tell two clients (two
    /// gateways) apart in `requests` and `scale_writes`.
    pub async fn add_listener(&self) -> usize {
        listeners::add(&self.shared).await
    }

    pub fn addr(&self, listener: usize) -> SocketAddr {
        lock(&self.shared.listeners).addrs[listener]
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self, listener: usize) -> String {
        format!("http://{}", self.addr(listener))
    }

    /// A kube-rs client of this listener, default namespace "default". Call
    /// it within a tokio runtime (the client spawns a task).
    pub fn client(&self, listener: usize) -> kube::Client {
        let url = self.url(listener).parse().expect("a valid URL");
        kube::Client::try_from(kube::Config::new(url)).expect("a kube client")
    }

    /// Writes a kubeconfig for this listener into `dir`, for child processes
    /// (`KUBECONFIG=...`). Returns its path.
    pub fn write_kubeconfig(&self, listener: usize, dir: &Path) -> PathBuf {
        let server = self.url(listener);
        let kubeconfig = format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: fake-kube
  cluster:
    server: {server}
users:
- name: fake-kube
  user: {{}}
contexts:
- name: fake-kube
  context:
    cluster: fake-kube
    user: fake-kube
    namespace: default
current-context: fake-kube
"#
        );
        let path = dir.join(format!("kubeconfig-{listener}.yaml"));
        std::fs::write(&path, kubeconfig).expect("write kubeconfig");
        path
    }

    /// Creates or overwrites an object by its apiVersion, kind, namespace
    /// ("default" if unset) and name, status included, as a controller
    /// would; watches see ADDED or MODIFIED. Returns its resourceVersion
    /// (unchanged when the object already was exactly this).
    pub fn apply(&self, object: Value) -> String {
        let resource = resource_of(&object);
        let stored = lock(&self.shared.store).apply_from_test(resource, object);
        stored["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Deletes an object; watches see DELETED. Returns whether it existed.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let resource = resource_type(api_version, kind);
        let key = ObjectKey::new(resource, namespace, name);
        lock(&self.shared.store)
            .commit_delete(resource, &key)
            .is_some()
    }

    /// An object as a GET answers it.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = ObjectKey::new(resource_type(api_version, kind), namespace, name);
        lock(&self.shared.store).get(&key).cloned()
    }

    /// A Deployment's `spec.replicas`.
    pub fn replicas(&self, namespace: &str, deployment: &str) -> Option<i64> {
        let key = ObjectKey::new(deployments(), namespace, deployment);
        lock(&self.shared.store).get(&key)?["spec"]["replicas"].as_i64()
    }

    /// A Lease's `spec.holderIdentity`.
    pub fn lease_holder(&self, namespace: &str, name: &str) -> Option<String> {
        let lease = self.get("coordination.k8s.io/v1", "Lease", namespace, name)?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_string)
    }

    /// The current resourceVersion, as a list would report it.
    pub fn resource_version(&self) -> String {
        lock(&self.shared.store).resource_version.to_string()
    }

    /// Forgets the watch history: a watch resuming from a version before now
    /// gets one ERROR event, 410 Expired, and must list again.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// Sends a BOOKMARK at the current version to every open watch that
    /// allows them.
    pub fn bookmark(&self) {
        lock(&self.shared.store).bookmark_all();
    }

    /// Takes the API server down: closes every listener and aborts every
    /// connection (watch streams end abruptly). Connections are then refused.
    pub async fn stop(&self) {
        listeners::stop(&self.shared).await;
    }

    /// Listens again on the same ports. The objects and history are kept.
    pub async fn restart(&self) {
        listeners::restart(&self.shared).await;
    }

    /// The next `n` writes (POST, PUT, PATCH) are answered 409 Conflict, as
    /// when another writer got there first.
    pub fn conflict_next_writes(&self, n: usize) {
        lock(&self.shared.log).conflicts_to_inject = n;
    }

    /// From now on (or no longer), every new watch is answered 403, as by
    /// RBAC that allows list but not watch; lists still work.
    pub fn refuse_watches(&self, refuse: bool) {
        lock(&self.shared.log).refuse_watches = refuse;
    }

    pub fn scale_writes(&self) -> Vec<ScaleWrite> {
        lock(&self.shared.log).scale_writes.clone()
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).requests.clone()
    }

    pub fn open_watches(&self) -> usize {
        lock(&self.shared.store).watches.len()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        listeners::abort_all(&self.shared);
    }
}

// === impl Shared ===

impl Shared {
    fn log_request(&self, listener: usize, method: &http::Method, path_and_query: &str) {
        lock(&self.log).requests.push(Request {
            listener,
            method: method.clone(),
            path_and_query: path_and_query.to_string(),
        });
    }

    fn refusing_watches(&self) -> bool {
        lock(&self.log).refuse_watches
    }

    /// Whether this write is one `conflict_next_writes` asked to refuse.
    fn take_injected_conflict(&self) -> bool {
        let mut log = lock(&self.log);
        let inject = log.conflicts_to_inject > 0;
        log.conflicts_to_inject = log.conflicts_to_inject.saturating_sub(1);
        inject
    }

    fn record_scale_write(&self, listener: usize, namespace: &str, name: &str, from: i64, to: i64) {
        lock(&self.log).scale_writes.push(ScaleWrite {
            at: Instant::now(),
            listener,
            namespace: namespace.to_string(),
            name: name.to_string(),
            from,
            to,
        });
    }
}

/// Locks, ignoring poisoning: a test that panicked while holding a lock
/// should not turn every later drop into a second panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn resource_of(object: &Value) -> &'static ResourceType {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    resource_type(api_version, object["kind"].as_str().unwrap_or_default())
}

fn resource_type(api_version: &str, kind: &str) -> &'static ResourceType {
    ResourceType::from_type(api_version, kind)
        .unwrap_or_else(|| panic!("the fake API server does not serve {api_version} {kind}"))
}
