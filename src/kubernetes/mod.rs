//! sluice's client of the Kubernetes API: the connection and its health,
//! leader election among gateway replicas, and services read from KServe
//! InferenceServices. The `kubernetes` actuator (a Deployment's scale
//! subresource, ready pods from EndpointSlices) is in `actuator/kubernetes/`.
//!
//! Everything talks to the API server through kube-rs. When the API server
//! cannot be reached, the gateway keeps serving with what it last knew,
//! retries with backoff, and reports the condition (`/readyz`, logs,
//! `sluice_kubernetes_api_reachable`).

mod health;
mod inference;
mod isvc;
mod knative;
mod leader;

pub use self::health::ApiHealth;
pub use self::inference::watch_inference_services;
pub use self::isvc::service_from_inference_service;
pub use self::leader::{step, Leadership, Step};

use crate::config::KubernetesSettings;
use crate::metrics::KubernetesMetrics;
use std::sync::Arc;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tracing::info;

/// Why there is no Kubernetes client (yet): retried on the next call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kubeconfig {}: {source}", .path.display())]
    Kubeconfig {
        path: std::path::PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration: {0}")]
    NoConfiguration(#[from] kube::config::InferConfigError),
    #[error("Kubernetes client for {url}: {source}")]
    Client { url: http::Uri, source: kube::Error },
    #[error("reading the kubeconfig: {0}")]
    Runtime(String),
}

/// Why a call to the API server failed: reported to the API's health and
/// tried again with backoff.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Client(Box<ClientError>),
    #[error(transparent)]
    Api(Box<kube::Error>),
    #[error("no answer within {0:?}")]
    TimedOut(std::time::Duration),
    #[error("the object kept changing under us ({0} conflicts); trying again")]
    KeptChanging(u32),
}

impl From<ClientError> for CallError {
    fn from(error: ClientError) -> Self {
        CallError::Client(Box::new(error))
    }
}

impl From<kube::Error> for CallError {
    fn from(error: kube::Error) -> Self {
        CallError::Api(Box::new(error))
    }
}

/// Longest wait for any byte from the API server.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a watch may last before the server ends it (and the watcher
/// starts the next one): shorter than [`READ_TIMEOUT`], so that a quiet
/// watch is never mistaken for a hung server.
pub(crate) const WATCH_SECONDS: u32 = 50;
/// While a watch fails, how often a cheap list checks whether the API
/// server answers again (a resumed watch says nothing when it succeeds).
pub(crate) const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// A probe list may take this long (an API server just back may be slow).
pub(crate) const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What every Kubernetes part of a gateway shares: one client (connected on
/// first use), the API's health, and who leads autoscaling.
pub struct Cluster {
    settings: KubernetesSettings,
    client: OnceCell<kube::Client>,
    health: ApiHealth,
    leadership: Leadership,
    metrics: KubernetesMetrics,
    elector: std::sync::Mutex<Option<JoinHandle<()>>>,
    inference_services_listed: std::sync::atomic::AtomicBool,
    /// Everything was listed once: the gateway is ready for good.
    listed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("connected", &self.client.initialized())
            .field("leadership", &self.leadership)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Nothing is contacted until a part asks for the client.
    pub fn new(settings: KubernetesSettings, metrics: KubernetesMetrics) -> Arc<Cluster> {
        let election = &settings.leader_election;
        let leadership = if election.enabled {
            Leadership::elected(leader::identity(election.identity.as_deref()))
        } else {
            Leadership::always()
        };
        metrics.set_leader(leadership.is_leader());
        Arc::new(Cluster {
            health: ApiHealth::new(metrics.clone()),
            settings,
            client: OnceCell::new(),
            leadership,
            metrics,
            elector: std::sync::Mutex::new(None),
            inference_services_listed: std::sync::atomic::AtomicBool::new(false),
            listed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts the leader election, if it is enabled. Must run in the runtime.
    pub fn start(self: &Arc<Self>) {
        if self.settings.leader_election.enabled {
            let task = tokio::spawn(leader::run(self.clone()));
            *self.elector.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        }
    }

    /// Stops the election and hands the lease back, so that another gateway
    /// takes over at once rather than after the lease expires.
    pub async fn shutdown(&self) {
        let task = self
            .elector
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
            // Wait until it has stopped (a renewal in flight is cut short;
            // if it landed anyway, the release reads again).
            let _ = task.await;
            let bounded = std::time::Duration::from_secs(2);
            if tokio::time::timeout(bounded, leader::release(self))
                .await
                .is_err()
            {
                tracing::warn!("could not hand the lease back in time; it expires by itself");
            }
        }
    }

    /// The client, connected on first use (in-cluster, or a kubeconfig). A
    /// failure is reported and tried again on the next call.
    pub async fn client(&self) -> Result<kube::Client, ClientError> {
        let connect = || async {
            let mut config = match &self.settings.kubeconfig {
                Some(path) => {
                    let kubeconfig = |source| ClientError::Kubeconfig {
                        path: path.clone(),
                        source,
                    };
                    // Read off the runtime's threads: it is a file, maybe on
                    // a slow mount, and the async path must not block on it.
                    let read = {
                        let path = path.clone();
                        tokio::task::spawn_blocking(move || {
                            kube::config::Kubeconfig::read_from(path)
                        })
                    };
                    let file = read
                        .await
                        .map_err(|e| ClientError::Runtime(e.to_string()))?
                        .map_err(kubeconfig)?;
                    kube::Config::from_custom_kubeconfig(file, &Default::default())
                        .await
                        .map_err(kubeconfig)?
                }
                None => kube::Config::infer().await?,
            };
            // kube-rs sets no read timeout: a server that accepts and never
            // answers would hang a list or a watch forever, unnoticed. Watches
            // ask the server to end them before this (`WATCH_SECONDS`).
            config.read_timeout = Some(READ_TIMEOUT);
            // Time a connection spent idle in the pool is not a slow answer.
            config.reset_reader_on_write = true;
            let url = config.cluster_url.clone();
            let client = kube::Client::try_from(config).map_err(|source| ClientError::Client {
                url: url.clone(),
                source,
            })?;
            info!(api = %url, namespace = client.default_namespace(), "Kubernetes client ready");
            Ok::<_, ClientError>(client)
        };
        match self.client.get_or_try_init(connect).await {
            Ok(client) => {
                self.health.succeeded("client");
                Ok(client.clone())
            }
            Err(e) => {
                self.health.failed("client", "connect", &e);
                Err(e)
            }
        }
    }

    /// The InferenceServices have been listed once (so the gateway serves
    /// every one of them).
    pub(crate) fn inference_services_listed(&self) {
        self.inference_services_listed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// What keeps the gateway from being ready: something not yet listed
    /// from Kubernetes. (Once listed, an unreachable API server does not:
    /// the gateway serves with what it last knew.)
    pub fn not_listed_yet(&self) -> Option<&'static str> {
        let waiting = self.settings.inference_services.enabled
            && !self
                .inference_services_listed
                .load(std::sync::atomic::Ordering::Relaxed);
        waiting.then_some("InferenceServices not listed yet")
    }

    /// Everything this gateway serves from Kubernetes has been listed once.
    pub fn set_listed(&self) {
        self.listed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn was_listed(&self) -> bool {
        self.listed.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn settings(&self) -> &KubernetesSettings {
        &self.settings
    }

    pub fn health(&self) -> &ApiHealth {
        &self.health
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    pub fn metrics(&self) -> &KubernetesMetrics {
        &self.metrics
    }
}

/// Whether a Kubernetes API error is a resourceVersion conflict (someone
/// else wrote first): read again and decide again.
pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Watch reconnects: doubling from 500 ms to 5 s, reset by a success.
/// Shorter than kube-rs's default (up to 30 s), so that watches resume soon
/// after the API server is back.
#[derive(Debug, Clone)]
pub(crate) struct WatchBackoff {
    next: std::time::Duration,
}

impl WatchBackoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(500);
    const LAST: std::time::Duration = std::time::Duration::from_secs(5);

    /// A watch that has not failed for this long has had a try since its
    /// last failure (the longest backoff) and is taken as working again.
    pub(crate) fn quiet_after_failure() -> std::time::Duration {
        Self::LAST + PROBE_EVERY
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        let delay = self.next;
        self.next = (delay * 2).min(Self::LAST);
        Some(delay)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}
