//! The `kubernetes` actuator: a Deployment's replica count through its
//! `scale` subresource, its ready pods from its Service's EndpointSlices.
//!
//! Only the autoscaling leader writes replica counts, and only when they
//! differ from the current one. Any gateway holding a request for a service
//! at zero raises it from zero (and only from zero): that write is
//! conditional on the scale's resourceVersion, so it is idempotent however
//! many gateways make it.

use super::endpoints::{self, Endpoint, PodSource};
use super::{is_conflict, Cluster};
use crate::actuator::{Actuator, BoxFuture, Phase, ReplicaCounts, ReplicaStatus};
use crate::config::KubernetesBackend;
use crate::pods::Dispatcher;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// How often the leader re-reads the scale even when its decision has not
/// changed, so that a count changed by someone else is put back.
const RESYNC: Duration = Duration::from_secs(10);
/// After a failed read or write, the next try: doubling from the first to
/// the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_LAST: Duration = Duration::from_secs(30);
/// Longest a read-and-write of the scale may take: an API server that
/// accepts and never answers must not stall this service's scaling for the
/// client's own 295 s read timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct KubernetesActuator {
    shared: Arc<Shared>,
    dispatcher: Arc<Dispatcher>,
    /// As last listed; `None` until the first list.
    endpoints: Arc<Mutex<Option<Vec<Endpoint>>>>,
    desired: watch::Sender<Option<u32>>,
    counts: ReplicaCounts,
    tasks: Vec<JoinHandle<()>>,
}

/// What the actuator's tasks share.
#[derive(Debug)]
struct Shared {
    cluster: Arc<Cluster>,
    namespace: String,
    deployment: String,
    pods: PodSource,
    /// The Deployment's replica count as last read or written; -1 unknown.
    replicas: AtomicI64,
    activating: AtomicBool,
}

impl KubernetesActuator {
    /// Starts watching the pods and keeping the scale. Must run in the runtime.
    pub fn new(
        cluster: Arc<Cluster>,
        namespace: &str,
        backend: &KubernetesBackend,
        stats_port: Option<u16>,
        dispatcher: Arc<Dispatcher>,
    ) -> Self {
        let shared = Arc::new(Shared {
            cluster,
            namespace: namespace.to_string(),
            deployment: backend.deployment.clone(),
            pods: PodSource {
                namespace: namespace.to_string(),
                service: backend.service_name().to_string(),
                port: backend.port,
                stats_port,
            },
            replicas: AtomicI64::new(-1),
            activating: AtomicBool::new(false),
        });
        let endpoints = Arc::new(Mutex::new(None));
        let (desired, wanted) = watch::channel(None);
        let tasks = vec![
            tokio::spawn(endpoints::watch(
                shared.cluster.clone(),
                shared.pods.clone(),
                dispatcher.clone(),
                endpoints.clone(),
            )),
            tokio::spawn(keep_scale(shared.clone(), wanted)),
        ];
        KubernetesActuator {
            shared,
            dispatcher,
            endpoints,
            desired,
            counts: ReplicaCounts::default(),
            tasks,
        }
    }

    fn lock_endpoints(&self) -> std::sync::MutexGuard<'_, Option<Vec<Endpoint>>> {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The Deployment's replica count as last read or written.
    pub fn deployment_replicas(&self) -> Option<u32> {
        u32::try_from(self.shared.replicas.load(Ordering::Relaxed)).ok()
    }
}

impl Actuator for KubernetesActuator {
    fn scale(&self, replicas: u32) {
        self.desired.send_if_modified(|d| {
            let changed = *d != Some(replicas);
            *d = Some(replicas);
            changed
        });
    }

    fn activate(&self, replicas: u32) {
        self.scale(replicas);
        if self.shared.activating.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let raised =
                tokio::time::timeout(CALL_TIMEOUT, raise_from_zero(&shared, replicas.max(1)))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {CALL_TIMEOUT:?}")));
            if let Err(e) = raised {
                shared
                    .cluster
                    .health()
                    .failed(&shared.scale_source(), "scale", &e);
            }
            shared.activating.store(false, Ordering::Release);
        });
    }

    fn scales(&self) -> bool {
        true
    }

    fn owns_replicas(&self) -> bool {
        false
    }

    fn replicas(&self) -> Vec<ReplicaStatus> {
        let pods = self.dispatcher.pods();
        let endpoints = self.lock_endpoints();
        endpoints
            .iter()
            .flatten()
            .map(|e| ReplicaStatus {
                name: e.pod.clone(),
                address: e.address.to_string(),
                pid: None,
                sidecar_pid: None,
                phase: match (e.ready, e.terminating) {
                    (_, true) => Phase::Draining,
                    (true, _) => Phase::Ready,
                    (false, _) => Phase::Starting,
                },
                in_flight: pods
                    .iter()
                    .find(|p| p.authority() == &e.address)
                    .map_or(0, |p| p.in_flight()),
                restarts: 0,
                age_seconds: pods
                    .iter()
                    .find(|p| p.authority() == &e.address)
                    .map_or(0, |p| p.age().as_secs()),
            })
            .collect()
    }

    fn counts(&self) -> &ReplicaCounts {
        &self.counts
    }

    fn unhealthy(&self) -> Option<String> {
        if self.lock_endpoints().is_none() {
            return Some(format!(
                "the pods of {} are not listed yet",
                self.shared.pods.health_source()
            ));
        }
        let health = self.shared.cluster.health();
        [self.shared.pods.health_source(), self.shared.scale_source()]
            .into_iter()
            .find(|source| health.is_failing(source))
            .map(|source| format!("{source} is failing"))
    }

    /// Stops watching; the Deployment keeps its replicas (they are not ours
    /// to stop: another gateway, or the user, may still want them).
    fn shutdown(&self) -> BoxFuture {
        for task in &self.tasks {
            task.abort();
        }
        let health = self.shared.cluster.health();
        health.forget(&self.shared.pods.health_source());
        health.forget(&self.shared.scale_source());
        Box::pin(async {})
    }
}

impl Drop for KubernetesActuator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Shared {
    fn scale_source(&self) -> String {
        format!("deployments/scale {}/{}", self.namespace, self.deployment)
    }

    async fn api(&self) -> Result<Api<Deployment>, String> {
        let client = self.cluster.client().await?;
        Ok(Api::namespaced(client, &self.namespace))
    }
}

/// The leader's loop: whenever the decision changes, leadership is gained,
/// or every [`RESYNC`], make the Deployment's count the decision.
async fn keep_scale(shared: Arc<Shared>, mut wanted: watch::Receiver<Option<u32>>) {
    let leadership = shared.cluster.leadership().clone();
    let mut leading = leadership.subscribe();
    let mut wait = Duration::ZERO;
    let mut retry = RETRY_FIRST;
    loop {
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { return },
            _ = leading.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        wait = RESYNC;
        let Some(want) = *wanted.borrow_and_update() else {
            continue;
        };
        if !leadership.is_leader() {
            continue;
        }
        let written = tokio::time::timeout(
            CALL_TIMEOUT,
            set_replicas(&shared, want, || leadership.is_leader()),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {CALL_TIMEOUT:?}")));
        match written {
            Ok(written) => {
                retry = RETRY_FIRST;
                shared.cluster.health().succeeded(&shared.scale_source());
                if let Some(from) = written {
                    info!(namespace = %shared.namespace, deployment = %shared.deployment, from, to = want, "replicas written");
                }
            }
            Err(e) => {
                shared
                    .cluster
                    .health()
                    .failed(&shared.scale_source(), "scale", &e);
                wait = retry;
                retry = (retry * 2).min(RETRY_LAST);
            }
        }
    }
}

/// Reads the scale and, if it differs and `may_write()` still holds, writes
/// `want` conditionally on what was read; on a conflict, reads again.
/// Returns the count it replaced, if it wrote.
async fn set_replicas(
    shared: &Shared,
    want: u32,
    may_write: impl Fn() -> bool,
) -> Result<Option<i32>, String> {
    let api = shared.api().await?;
    let want = i32::try_from(want).unwrap_or(i32::MAX);
    for _ in 0..3 {
        let mut scale = api
            .get_scale(&shared.deployment)
            .await
            .map_err(|e| e.to_string())?;
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        shared.replicas.store(current.into(), Ordering::Relaxed);
        if current == want || !may_write() {
            return Ok(None);
        }
        scale.spec.get_or_insert_with(Default::default).replicas = Some(want);
        scale.status = None;
        match api
            .replace_scale(&shared.deployment, &PostParams::default(), &scale)
            .await
        {
            Ok(_) => {
                shared.replicas.store(want.into(), Ordering::Relaxed);
                shared.cluster.metrics().scale_written();
                return Ok(Some(current));
            }
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("the scale kept changing under us (3 conflicts); trying again".into())
}

/// Any gateway holding a request: 0 becomes `to`; any other count stays.
async fn raise_from_zero(shared: &Shared, to: u32) -> Result<(), String> {
    let may_write = || shared.replicas.load(Ordering::Relaxed) == 0;
    // `set_replicas` reads before it asks `may_write`, so this writes only
    // when the count it just read is zero.
    if let Some(from) = set_replicas(shared, to, may_write).await? {
        info!(namespace = %shared.namespace, deployment = %shared.deployment, from, to, "activating: replicas raised from zero");
    }
    shared.cluster.health().succeeded(&shared.scale_source());
    Ok(())
}
