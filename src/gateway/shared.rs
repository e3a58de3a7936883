//! What every request and the admin endpoints share: the routing table, the
//! gateway settings, the upstream client and the metrics. Swapped, never locked.

use crate::config::{Config, GatewaySettings};
use crate::metrics::{LiveCollector, Metrics};
use crate::routing::RouteTable;
use crate::service::{Routes, Service};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{info, warn};

#[derive(Debug)]
pub struct Shared {
    pub routes: Arc<ArcSwap<Routes>>,
    pub settings: ArcSwap<GatewaySettings>,
    pub metrics: Metrics,
    config: ArcSwap<Config>,
    draining: AtomicBool,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Self> {
        let empty = RouteTable::build(std::iter::empty::<(Arc<Service>, Vec<String>, &str)>()).0;
        let routes = Arc::new(ArcSwap::from_pointee(empty));
        let shared = Arc::new(Shared {
            metrics: Metrics::new(LiveCollector::new(routes.clone())),
            routes,
            settings: ArcSwap::from_pointee(config.gateway.clone()),
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
        let old = self.config.load_full();
        if old.listen != config.listen || old.admin != config.admin {
            warn!("listen and admin addresses change only on restart; keeping the old ones");
        }
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
                    service.update(sc, &config);
                    Arc::clone(service)
                }
                None => Service::new(sc, &config, &self.metrics),
            };
            services.push(service);
        }
        let entries = services.iter().zip(&config.services).map(|(service, sc)| {
            let hosts = service.settings().hosts.clone();
            (service.clone(), hosts, sc.name.as_str())
        });
        let (table, ambiguous) = RouteTable::build(entries);
        for name in ambiguous {
            warn!(model = %name, "model name is used in several namespaces; it is routed by Host only");
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
        self.settings.store(Arc::new(config.gateway.clone()));
        self.config.store(Arc::new(config));
    }

    /// Stops every service's autoscaler and drains and stops its replicas.
    pub async fn retire_all(&self) {
        let routes = self.routes.load_full();
        let stops: Vec<_> = routes.services().iter().map(|s| s.retire()).collect();
        futures_util::future::join_all(stops).await;
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
