//! A service as the gateway runs it: its pods' dispatcher, settings and metrics.

use crate::config::{GatewaySettings, ServiceConfig};
use crate::metrics::{Metrics, ServiceMetrics};
use crate::pods::Dispatcher;
use crate::routing::RouteTable;
use arc_swap::ArcSwap;
use http::uri::Authority;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The routing table the gateway swaps whole on reload.
pub type Routes = RouteTable<Arc<Service>>;

#[derive(Debug)]
pub struct Service {
    name: Arc<str>,
    namespace: Arc<str>,
    dispatcher: Arc<Dispatcher>,
    settings: ArcSwap<ServiceSettings>,
    metrics: ServiceMetrics,
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
}

// === impl Service ===

impl Service {
    pub fn new(
        config: &ServiceConfig,
        domain: &str,
        gateway: &GatewaySettings,
        metrics: &Metrics,
    ) -> Arc<Self> {
        let settings = ServiceSettings::resolve(config, domain, gateway);
        let dispatcher = Dispatcher::new(
            config.container_concurrency,
            settings.queue_depth,
            fastrand::Rng::new(),
        );
        dispatcher.set_pods(&static_pods(config));
        Arc::new(Service {
            metrics: metrics.service(&config.name, &config.namespace),
            name: config.name.as_str().into(),
            namespace: config.namespace.as_str().into(),
            dispatcher,
            settings: ArcSwap::from_pointee(settings),
            created: Instant::now(),
        })
    }

    /// Applies a reloaded configuration in place: requests in flight and pods
    /// that remain are not disturbed.
    pub fn update(&self, config: &ServiceConfig, domain: &str, gateway: &GatewaySettings) {
        let settings = ServiceSettings::resolve(config, domain, gateway);
        self.dispatcher
            .set_limits(config.container_concurrency, settings.queue_depth);
        self.dispatcher.set_pods(&static_pods(config));
        self.settings.store(Arc::new(settings));
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

    pub fn settings(&self) -> arc_swap::Guard<Arc<ServiceSettings>> {
        self.settings.load()
    }

    pub fn metrics(&self) -> &ServiceMetrics {
        &self.metrics
    }

    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }
}

// === impl ServiceSettings ===

impl ServiceSettings {
    fn resolve(config: &ServiceConfig, domain: &str, gateway: &GatewaySettings) -> Self {
        let hosts = std::iter::once(config.default_host(domain))
            .chain(config.hosts.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        let request_timeout = config.request_timeout.unwrap_or(gateway.request_timeout).0;
        ServiceSettings {
            config: config.clone(),
            hosts,
            request_timeout,
            activation_timeout: config
                .activation_timeout
                .or(gateway.activation_timeout)
                .map_or(request_timeout, |d| d.0),
            queue_timeout: config.queue_timeout.unwrap_or(gateway.queue_timeout).0,
            queue_depth: config.queue_depth.unwrap_or(gateway.queue_depth),
        }
    }
}

/// The pod addresses of a `static` backend (validated at load).
fn static_pods(config: &ServiceConfig) -> Vec<Authority> {
    config
        .backend
        .static_pods
        .iter()
        .flatten()
        .filter_map(|addr| addr.parse().ok())
        .collect()
}
