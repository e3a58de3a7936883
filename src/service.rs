//! A service as the gateway runs it: its dispatcher, actuator, autoscaler,
//! settings and metrics.

use crate::actuator::Actuator;
use crate::autoscaler::{Event, Scaled, ScalerStatus, ScalingSettings, Spec};
use crate::config::{Backend, Config, MetricsSource, ServiceConfig};
use crate::history::{History, Mark};
use crate::kubernetes::Cluster;
use crate::metrics::{Metrics, ServiceMetrics};
use crate::pods::server_load::{poll, PollSettings};
use crate::pods::Dispatcher;
use crate::routing::RouteTable;
use crate::supervise::PanicReports;
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::info;

/// The routing table the gateway swaps whole on reload.
pub type Routes = RouteTable<Arc<Service>>;

#[derive(Debug)]
pub struct Service {
    name: Arc<str>,
    namespace: Arc<str>,
    dispatcher: Arc<Dispatcher>,
    actuator: RwLock<Arc<dyn Actuator>>,
    settings: ArcSwap<ServiceSettings>,
    scaler: Mutex<ScalerStatus>,
    autoscaler: Mutex<Option<JoinHandle<()>>>,
    /// Reads the model servers' own load (`podMetrics`), if set.
    server_load: Mutex<Option<JoinHandle<()>>>,
    metrics: ServiceMetrics,
    /// Its tasks' panics, counted and the last kept for `/status`.
    panics: Arc<PanicReports>,
    /// The last minutes, for `/history` and the live page.
    history: History,
    created: Instant,
}

/// What a reload may change about a running service.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub config: ServiceConfig,
    /// Every host it answers to, its default host first.
    pub hosts: Vec<String>,
    pub request_timeout: Duration,
    pub queue_timeout: Duration,
    pub activation_timeout: Duration,
    pub queue_depth: usize,
    pub spec: Spec,
    pub tick_interval: Duration,
}

// === impl Service ===

impl Service {
    /// Creates the service, its actuator and (if it can scale) its
    /// autoscaler task. Must run inside the tokio runtime.
    pub fn new(
        sc: &ServiceConfig,
        config: &Config,
        metrics: &Metrics,
        cluster: &Arc<Cluster>,
    ) -> Arc<Self> {
        Service::with_actuator(sc, config, metrics, |settings, dispatcher, panics| {
            actuator_for(sc, settings, dispatcher, cluster, panics)
        })
    }

    /// A service over the fixed pods of its `static` backend, which needs
    /// no Kubernetes client: the sidecar's one service.
    pub fn fixed(sc: &ServiceConfig, config: &Config, metrics: &Metrics) -> Arc<Self> {
        Service::with_actuator(sc, config, metrics, |_, dispatcher, _| {
            let pods: Vec<http::uri::Authority> = (sc.backend.static_pods.iter().flatten())
                .filter_map(|addr| addr.parse().ok())
                .collect();
            Arc::new(crate::actuator::StaticActuator::new(
                dispatcher.clone(),
                &pods,
            ))
        })
    }

    fn with_actuator(
        sc: &ServiceConfig,
        config: &Config,
        metrics: &Metrics,
        actuator_for: impl FnOnce(
            &ServiceSettings,
            &Arc<Dispatcher>,
            &Arc<PanicReports>,
        ) -> Arc<dyn Actuator>,
    ) -> Arc<Self> {
        let settings = ServiceSettings::resolve(sc, config);
        let dispatcher = Dispatcher::new(
            sc.container_concurrency,
            settings.queue_depth,
            fastrand::Rng::new(),
        );
        let service_metrics = metrics.service(&sc.name, &sc.namespace);
        let panics = PanicReports::new(service_metrics.tasks.clone(), &sc.name, &sc.namespace);
        let actuator = actuator_for(&settings, &dispatcher, &panics);
        let service = Arc::new(Service {
            metrics: service_metrics,
            name: sc.name.as_str().into(),
            namespace: sc.namespace.as_str().into(),
            dispatcher,
            actuator: RwLock::new(actuator),
            settings: ArcSwap::from_pointee(settings),
            scaler: Mutex::new(ScalerStatus::default()),
            autoscaler: Mutex::new(None),
            server_load: Mutex::new(None),
            panics,
            history: History::default(),
            created: Instant::now(),
        });
        service.start_autoscaler();
        service.start_server_load(sc);
        service
    }

    /// Applies a reloaded configuration in place: requests in flight and pods
    /// that remain are not disturbed. A changed backend gets a new actuator;
    /// the old one drains and stops its replicas.
    pub fn update(self: &Arc<Self>, sc: &ServiceConfig, config: &Config, cluster: &Arc<Cluster>) {
        let settings = ServiceSettings::resolve(sc, config);
        self.dispatcher
            .set_limits(sc.container_concurrency, settings.queue_depth);
        let old = self.settings().config.clone();
        let old_backend = &old.backend;
        // A Kubernetes actuator reads the sidecars' port from the service.
        let kube_metrics_changed = sc.backend.kubernetes.is_some()
            && (old.metrics != sc.metrics || old.pod_metrics_port != sc.pod_metrics_port);
        // Local replicas' sidecars were started speaking the old protocol.
        let sidecar_protocol_changed = old.protocol != sc.protocol
            && sc
                .backend
                .process
                .as_ref()
                .is_some_and(|p| p.sidecar.is_some());
        if *old_backend != sc.backend || kube_metrics_changed || sidecar_protocol_changed {
            // A new static list keeps the pods that remain (counts and
            // connections); otherwise the old pods get no new requests (those
            // in flight finish) and the new actuator starts at once with what
            // the service wants now.
            let same_pods = (old_backend.static_pods.is_some() && sc.backend.static_pods.is_some())
                || same_kube_pods(old_backend, &sc.backend);
            if !same_pods {
                self.dispatcher.set_pods(&[]);
            }
            let next = actuator_for(sc, &settings, &self.dispatcher, cluster, &self.panics);
            if next.source().owned() {
                next.scale(self.scaler_status().desired.max(settings.spec.min_replicas));
            }
            let old = std::mem::replace(&mut *self.actuator_lock(), next);
            tokio::spawn(old.shutdown());
            info!(
                service = self.name(),
                "backend changed: new replicas replace the old"
            );
        }
        // `metrics` or `podMetricsPort` may have changed alone.
        set_static_stats(sc, &self.dispatcher);
        self.settings.store(Arc::new(settings));
        self.start_autoscaler();
        if old.pod_metrics != sc.pod_metrics || old.protocol != sc.protocol {
            self.start_server_load(sc);
        }
    }

    /// Stops the autoscaler and returns a future that drains and stops the
    /// actuator's replicas.
    pub fn retire(&self) -> crate::actuator::BoxFuture {
        if let Some(task) = self.autoscaler_lock().take() {
            task.abort();
        }
        self.stop_server_load();
        self.actuator().shutdown()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    pub fn actuator(&self) -> Arc<dyn Actuator> {
        self.actuator_lock().clone()
    }

    /// For a quick look; do not hold it across an await.
    pub fn settings(&self) -> arc_swap::Guard<Arc<ServiceSettings>> {
        self.settings.load()
    }

    /// For holding, e.g. for the whole of a request.
    pub fn settings_snapshot(&self) -> Arc<ServiceSettings> {
        self.settings.load_full()
    }

    pub fn metrics(&self) -> &ServiceMetrics {
        &self.metrics
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    /// The last decision; for a service that cannot scale (and is not
    /// observed through its pods), its pods.
    pub fn scaler_status(&self) -> ScalerStatus {
        let status = *self.scaler.lock().unwrap_or_else(PoisonError::into_inner);
        let observed = self.settings().config.metrics == MetricsSource::Pods;
        if self.actuator().source().scales() || observed {
            status
        } else {
            ScalerStatus {
                desired: self.dispatcher.pods().len() as u32,
                ..status
            }
        }
    }

    fn set_scaler_status(&self, status: ScalerStatus) {
        *self.scaler.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }

    fn start_autoscaler(self: &Arc<Self>) {
        let mut task = self.autoscaler_lock();
        let running = task.as_ref().is_some_and(|t| !t.is_finished());
        // A static list does not scale, but with pod metrics the autoscaler
        // still says what it would want (`desired`).
        let observes = self.settings().config.metrics == MetricsSource::Pods;
        if (self.actuator().source().scales() || observes) && !running {
            *task = Some(tokio::spawn(self.clone().supervised_autoscaler()));
        }
    }

    /// The autoscaler, started again if it panics: a service whose
    /// autoscaler died would never scale, nor activate from zero, again.
    /// It starts afresh (its history is lost), as after a gateway restart.
    async fn supervised_autoscaler(self: Arc<Self>) {
        let owner = format!("{}/{}", self.namespace, self.name);
        let reporter = self.clone();
        crate::supervise::restart_on_panic(
            "autoscaler",
            &owner,
            move |message| reporter.task_panicked("autoscaler", message),
            || crate::autoscaler::run(self.clone()),
        )
        .await;
    }

    /// Starts reading the model servers' load as `sc.podMetrics` says, in
    /// place of any earlier reader; without it, picks by in-flight counts.
    fn start_server_load(self: &Arc<Self>, sc: &ServiceConfig) {
        self.stop_server_load();
        let Some(pod_metrics) = &sc.pod_metrics else {
            return;
        };
        let settings = PollSettings::new(pod_metrics, sc.protocol);
        let failures = self.metrics.pod_metrics_failures.clone();
        // Weak: the task is aborted when the service retires, and must not
        // keep a service that was dropped without retiring alive either.
        let dispatcher = Arc::downgrade(&self.dispatcher);
        let reporter = Arc::downgrade(self);
        let owner = format!("{}/{}", self.namespace, self.name);
        let task = tokio::spawn(async move {
            crate::supervise::restart_on_panic(
                "pod-metrics",
                &owner,
                move |message| {
                    if let Some(service) = reporter.upgrade() {
                        service.task_panicked("pod-metrics", message);
                    }
                },
                || poll(dispatcher.clone(), settings.clone(), failures.clone()),
            )
            .await
        });
        *self.server_load_lock() = Some(task);
        self.dispatcher
            .set_stale_after(Some(pod_metrics.stale_after.0));
    }

    fn stop_server_load(&self) {
        self.dispatcher.set_stale_after(None);
        if let Some(task) = self.server_load_lock().take() {
            task.abort();
        }
    }

    fn server_load_lock(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.server_load
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts and remembers a panic of one of the service's tasks.
    pub fn task_panicked(&self, task: &'static str, message: &str) {
        self.panics.record(task, message);
    }

    /// What went wrong in the service's tasks, if anything.
    pub fn problems(&self) -> Vec<String> {
        self.panics.last().into_iter().collect()
    }

    fn actuator_lock(&self) -> std::sync::RwLockWriteGuard<'_, Arc<dyn Actuator>> {
        self.actuator
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn autoscaler_lock(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.autoscaler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn actuator_for(
    sc: &ServiceConfig,
    settings: &ServiceSettings,
    dispatcher: &Arc<Dispatcher>,
    cluster: &Arc<Cluster>,
    panics: &Arc<PanicReports>,
) -> Arc<dyn Actuator> {
    let actuator = crate::actuator::for_service(&crate::actuator::Context {
        service: sc,
        dispatcher,
        cluster,
        panics,
        request_timeout: settings.request_timeout,
        queue_timeout: settings.queue_timeout,
        activation_timeout: settings.activation_timeout,
        // As long as the autoscaler would keep an idle replica.
        zero_hold: settings.spec.stable_window.saturating_add(
            settings
                .spec
                .scale_to_zero_grace
                .max(settings.spec.scale_to_zero_retention),
        ),
    });
    // After the actuator has put the static pods in the dispatcher.
    set_static_stats(sc, dispatcher);
    actuator
}

/// Both read the same Service's EndpointSlices and send to the same port.
fn same_kube_pods(old: &Backend, new: &Backend) -> bool {
    let pods = |b: &Backend| {
        b.kubernetes
            .as_ref()
            .map(|k| (k.service_name().to_string(), k.port))
    };
    pods(old).is_some() && pods(old) == pods(new)
}

/// With `metrics: pods`, each static pod's sidecar reports on the pod's host
/// at `podMetricsPort`; without, nothing is read from the pods.
fn set_static_stats(sc: &ServiceConfig, dispatcher: &Dispatcher) {
    if sc.backend.static_pods.is_none() {
        return;
    }
    for pod in dispatcher.pods() {
        let stats = format!("{}:{}", pod.authority().host(), sc.pod_metrics_port);
        let addr = (sc.metrics == MetricsSource::Pods)
            .then(|| stats.parse().ok())
            .flatten();
        pod.set_stats_addr(addr);
    }
}

// === impl Scaled for Service ===

impl Scaled for Service {
    fn name(&self) -> &str {
        &self.name
    }

    fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    fn actuator(&self) -> Arc<dyn Actuator> {
        Service::actuator(self)
    }

    fn scaling(&self) -> ScalingSettings {
        let settings = self.settings();
        ScalingSettings {
            spec: settings.spec.clone(),
            tick_interval: settings.tick_interval,
            metrics: settings.config.metrics,
            stale_after: (settings.config.pod_metrics.as_ref()).map(|m| m.stale_after.0),
        }
    }

    fn set_status(&self, status: ScalerStatus) {
        self.set_scaler_status(status);
    }

    fn remember(&self, event: &Event) {
        if let Some(mark) = mark_of(event) {
            self.history.mark(mark);
        }
    }
}

/// An autoscaler event as the history keeps it; `None` for those that
/// would only repeat every second.
fn mark_of(event: &Event) -> Option<Mark> {
    let (kind, from, to, reason) = match event {
        Event::Started { desired } => ("start", None, Some(*desired), "autoscaler started".into()),
        Event::Activating { desired } => (
            "activate",
            Some(0),
            Some(*desired),
            "a request is held and no replica is ready".into(),
        ),
        Event::Unreported => return None,
        Event::Blind { desired, why } => ("blind", None, Some(*desired), why.clone()),
        Event::SeeingAgain => ("seeing", None, None, "the backend can be seen again".into()),
        Event::EnteringPanic => ("panic", None, None, "entering panic mode".into()),
        Event::LeavingPanic => ("calm", None, None, "leaving panic mode".into()),
        Event::Scaling {
            from, to, reason, ..
        } => ("scale", Some(*from), Some(*to), reason.clone()),
    };
    Some(Mark {
        t: unix_millis(),
        kind: kind.into(),
        from,
        to,
        reason,
    })
}

/// Wall-clock time for the history, which a browser shows as such.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// === impl ServiceSettings ===

impl ServiceSettings {
    fn resolve(sc: &ServiceConfig, config: &Config) -> Self {
        let gateway = &config.gateway;
        let hosts = std::iter::once(sc.default_host(&config.domain))
            .chain(sc.hosts.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        let request_timeout = sc.request_timeout.unwrap_or(gateway.request_timeout).0;
        ServiceSettings {
            config: sc.clone(),
            hosts,
            request_timeout,
            activation_timeout: sc
                .activation_timeout
                .or(gateway.activation_timeout)
                .map_or(request_timeout, |d| d.0),
            queue_timeout: sc.queue_timeout.unwrap_or(gateway.queue_timeout).0,
            queue_depth: sc.queue_depth.unwrap_or(gateway.queue_depth),
            spec: Spec::resolve(sc, &config.autoscaler),
            tick_interval: config.autoscaler.tick_interval.0,
        }
    }
}
