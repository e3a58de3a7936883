//! What the gateway's parts share: the proxy (routing table and limits), the
//! services behind it, the metrics and the Kubernetes client. It applies a
//! configuration (a reload, a change of InferenceServices) to the services
//! in place and swaps the routing table whole. Below the gateway and the
//! admin endpoints, which both read it.

mod history;
mod live_metrics;

pub use self::history::keep_history;
pub use self::live_metrics::LiveMetrics;

use crate::config::{Config, ServiceConfig};
use crate::kubernetes::Cluster;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::routing::RouteTable;
use crate::service::{Routes, Service};
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tracing::{info, warn};

#[derive(Debug)]
pub struct Shared {
    pub routes: Arc<ArcSwap<Routes>>,
    pub proxy: Arc<Proxy>,
    pub metrics: Metrics,
    pub cluster: Arc<Cluster>,
    /// The configuration file as last applied.
    config: ArcSwap<Config>,
    /// Services read from Kubernetes (InferenceServices), served beside
    /// the file's.
    discovered: Mutex<Vec<ServiceConfig>>,
    /// One change at a time: a reload and a Kubernetes update may race.
    applying: Mutex<()>,
    draining: AtomicBool,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Self> {
        let empty =
            RouteTable::build(std::iter::empty::<(Arc<Service>, Vec<String>, Vec<&str>)>()).0;
        let routes = Arc::new(ArcSwap::from_pointee(empty));
        let metrics = Metrics::new(LiveMetrics::new(routes.clone()));
        let unrouted = metrics.unrouted();
        let telemetry = crate::telemetry::start(&config.tracing);
        let shared = Arc::new(Shared {
            cluster: Cluster::new(config.kubernetes.clone(), metrics.kubernetes.clone()),
            metrics,
            discovered: Mutex::new(Vec::new()),
            applying: Mutex::new(()),
            proxy: Arc::new(
                Proxy::new(routes.clone(), config.gateway.clone(), unrouted)
                    .with_telemetry(telemetry),
            ),
            routes,
            config: ArcSwap::from_pointee(config.clone()),
            draining: AtomicBool::new(false),
        });
        shared.apply(config);
        shared
    }

    /// Applies a validated configuration. Services that remain are updated in
    /// place (their pods keep counts and pooled connections); the routing
    /// table is then swapped whole, so a request sees the old or the new one.
    pub fn apply(&self, config: Config) {
        let _one_at_a_time = self.applying.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.config.load_full();
        if old.listen != config.listen || old.admin != config.admin {
            warn!("listen and admin addresses change only on restart; keeping the old ones");
        }
        if old.gateway.connections != config.gateway.connections {
            warn!("gateway.connections changes only on restart; keeping the old one");
        }
        if old.tracing != config.tracing {
            warn!("the tracing section changes only on restart; keeping the old one");
        }
        if old.kubernetes != config.kubernetes {
            warn!("the kubernetes section changes only on restart; keeping the old one");
        }
        if old.tls != config.tls {
            warn!("the tls section changes only on restart (its files are re-read); keeping the old one");
        }
        let discovered = self.discovered_lock().clone();
        self.serve(&with_discovered(&config, &discovered));
        self.proxy.settings.store(Arc::new(config.gateway.clone()));
        self.config.store(Arc::new(config));
    }

    /// Serves these services from Kubernetes beside the file's (which win a
    /// clash of name or host).
    pub fn set_discovered(&self, services: Vec<ServiceConfig>) {
        let _one_at_a_time = self.applying.lock().unwrap_or_else(PoisonError::into_inner);
        *self.discovered_lock() = services.clone();
        self.serve(&with_discovered(&self.config.load(), &services));
    }

    fn discovered_lock(&self) -> std::sync::MutexGuard<'_, Vec<ServiceConfig>> {
        self.discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the routing table serve exactly `config.services`.
    fn serve(&self, config: &Config) {
        let routes = self.routes.load_full();
        let existing: HashMap<(&str, &str), &Arc<Service>> = routes
            .services()
            .iter()
            .map(|s| ((s.name(), s.namespace()), s))
            .collect();
        let mut services = Vec::with_capacity(config.services.len());
        for sc in &config.services {
            let service = match existing.get(&(sc.name.as_str(), sc.namespace.as_str())) {
                Some(service) => {
                    service.update(sc, config, &self.cluster);
                    Arc::clone(service)
                }
                None => Service::new(sc, config, &self.metrics, &self.cluster),
            };
            services.push(service);
        }
        let entries = services.iter().zip(&config.services).map(|(service, sc)| {
            let hosts = service.settings().hosts.clone();
            let models = std::iter::once(&sc.name).chain(&sc.model_aliases);
            (service.clone(), hosts, models.map(String::as_str).collect())
        });
        let (table, ambiguous) = RouteTable::build(entries);
        for name in ambiguous {
            warn!(model = %name, "model name (or alias) is used by several services; it is routed by Host only");
        }
        let retired: Vec<Arc<Service>> = routes
            .services()
            .iter()
            .filter(|old| !services.iter().any(|s| Arc::ptr_eq(s, old)))
            .cloned()
            .collect();
        self.routes.store(Arc::new(table));
        for service in retired {
            info!(
                service = service.name(),
                namespace = service.namespace(),
                "service removed: draining its replicas"
            );
            tokio::spawn(service.retire());
        }
    }

    /// Stops every service's autoscaler and drains and stops its replicas.
    pub async fn retire_all(&self) {
        let routes = self.routes.load_full();
        let stops: Vec<_> = routes.services().iter().map(|s| s.retire()).collect();
        futures_util::future::join_all(stops).await;
        self.cluster.shutdown().await;
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// The file's services, then the discovered ones that clash with none of
/// them by name or host.
fn with_discovered(file: &Config, discovered: &[ServiceConfig]) -> Config {
    let mut config = file.clone();
    let mut names: HashSet<(String, String)> = HashSet::new();
    let mut hosts: HashSet<String> = HashSet::new();
    let hosts_of = |s: &ServiceConfig| {
        std::iter::once(s.default_host(&file.domain))
            .chain(s.hosts.iter().map(|h| h.to_ascii_lowercase()))
            .collect::<Vec<_>>()
    };
    for s in &file.services {
        names.insert((s.namespace.clone(), s.name.clone()));
        hosts.extend(hosts_of(s));
    }
    for s in discovered {
        let key = (s.namespace.clone(), s.name.clone());
        if names.contains(&key) || hosts_of(s).iter().any(|h| hosts.contains(h)) {
            warn!(
                service = %s.name,
                namespace = %s.namespace,
                "InferenceService clashes with a service of the configuration file, which wins"
            );
            continue;
        }
        names.insert(key);
        hosts.extend(hosts_of(s));
        config.services.push(s.clone());
    }
    config
}
