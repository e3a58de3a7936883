//! `sluice sidecar`: the per-pod proxy (Knative's queue-proxy role).
//!
//! It runs next to the model container and forwards to it on localhost,
//! enforcing `containerConcurrency` in the pod (the excess waits in a bounded
//! queue), measuring the pod's load for the autoscaler, answering readiness
//! for the model, and draining on SIGTERM. It is the gateway's own request
//! path with one service and one pod: the same header hygiene, streaming
//! bodies, pooled connections, errors and metrics.

mod admin;
mod stats;

pub use self::stats::{LoadReport, Stats};

use crate::config::{
    Backend, Config, ConfigError, Dur, ServiceConfig, TracingSettings, UpstreamProtocol,
};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::routing::RouteTable;
use crate::server::ServeError;
use crate::server::Tunnels;
use crate::service::Service;
use crate::shared::LiveMetrics;
use arc_swap::ArcSwap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// Why a sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("bad readiness path {path:?}: {source}")]
    ReadinessPath {
        path: String,
        source: http::uri::InvalidUri,
    },
}

#[derive(Debug, Clone)]
pub struct SidecarOptions {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub admin: SocketAddr,
    /// 0 = unlimited.
    pub container_concurrency: usize,
    /// Requests that may wait for a slot; unset: 10 × containerConcurrency (at least 10).
    pub queue_depth: Option<usize>,
    pub queue_timeout: Duration,
    pub request_timeout: Duration,
    /// The model's readiness check (GET, 200 = ready).
    pub readiness_path: String,
    /// After SIGTERM: exit once no request arrived for this long and none is in flight.
    pub drain_period: Duration,
    /// After SIGTERM: exit after this long whatever is still in flight.
    pub drain_timeout: Duration,
    /// Threads serving the data port (`server::Workers`).
    pub workers: usize,
    /// How the model is spoken to.
    pub protocol: UpstreamProtocol,
    /// Trace export, as the gateway's `tracing` section.
    pub tracing: TracingSettings,
}

/// A running sidecar.
pub struct Sidecar {
    pub data_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    service: Arc<Service>,
    stats: Arc<Stats>,
    draining: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    data_server: crate::server::Workers,
    tunnels: Arc<Tunnels>,
    tasks: Vec<JoinHandle<()>>,
    drain_period: Duration,
    telemetry: Option<Arc<crate::telemetry::Telemetry>>,
}

impl Sidecar {
    pub async fn start(options: SidecarOptions) -> Result<Sidecar, SidecarError> {
        let config = options.config()?;
        let admin = crate::server::listen(options.admin).await?;
        let admin_addr = admin.local_addr().unwrap();
        let gateway_settings = config.gateway.clone();
        // One service over one pod: no Kubernetes client, no autoscaler.
        let routes = Arc::new(ArcSwap::from_pointee(
            RouteTable::build(std::iter::empty::<(Arc<Service>, Vec<String>, Vec<&str>)>()).0,
        ));
        let registry = Arc::new(Metrics::new(LiveMetrics::new(routes.clone())));
        let service = Service::fixed(&config.services[0], &config, &registry);
        let hosts = service.settings().hosts.clone();
        let table = RouteTable::build(std::iter::once((service.clone(), hosts, vec!["model"]))).0;
        routes.store(Arc::new(table));
        let proxy = Arc::new(
            Proxy::new(routes, config.gateway.clone(), registry.unrouted())
                .with_telemetry(crate::telemetry::start(&config.tracing)),
        );
        let (data_options, admin_options) =
            crate::server::data_and_admin(&gateway_settings, &registry.connections);
        let stats = Arc::new(Stats::default());
        let draining = Arc::new(AtomicBool::new(false));
        let model_ready = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = watch::channel(false);

        let data_server = {
            let (proxy, service, stats) = (proxy.clone(), service.clone(), stats.clone());
            let workers = gateway_settings.connections.workers.unwrap_or(1);
            crate::server::Workers::start(
                options.listen,
                workers,
                data_options.with_tunnels(proxy.tunnels.clone()),
                move |peer: SocketAddr| {
                    let (proxy, service, stats) = (proxy.clone(), service.clone(), stats.clone());
                    hyper::service::service_fn(move |req| {
                        let (proxy, service) = (proxy.clone(), service.clone());
                        stats.arrived();
                        async move {
                            let response =
                                crate::proxy::proxy_service(&proxy, service, peer.ip(), req).await;
                            Ok::<_, Infallible>(response)
                        }
                    })
                },
                stopped.clone(),
            )?
        };
        let data_addr = data_server.addr();
        let admin_task = tokio::spawn(crate::server::serve(
            admin,
            admin_options,
            {
                let state = admin::AdminState {
                    listen: data_addr,
                    metrics: registry.clone(),
                    service: service.clone(),
                    stats: stats.clone(),
                    draining: draining.clone(),
                    model_ready: model_ready.clone(),
                };
                move |_peer| {
                    let state = state.clone();
                    hyper::service::service_fn(move |req| admin::handle(state.clone(), req))
                }
            },
            stopped.clone(),
        ));
        let stats_task = tokio::spawn(stats::measure(
            service.clone(),
            stats.clone(),
            stopped.clone(),
        ));
        let readiness_uri: http::Uri =
            format!("http://{}{}", options.upstream, options.readiness_path)
                .parse()
                .map_err(|source| SidecarError::ReadinessPath {
                    path: options.readiness_path.clone(),
                    source,
                })?;
        let probe = match options.protocol {
            UpstreamProtocol::H2c => crate::probe::http2_client(),
            UpstreamProtocol::Http1 => crate::probe::client(),
        };
        let probe_task = tokio::spawn(admin::probe_model(
            probe,
            readiness_uri,
            model_ready,
            stopped,
        ));
        info!(listen = %data_addr, admin = %admin_addr, upstream = %options.upstream,
              container_concurrency = options.container_concurrency, "sluice sidecar started");
        Ok(Sidecar {
            data_addr,
            admin_addr,
            service,
            stats,
            draining,
            stop,
            data_server,
            tunnels: proxy.tunnels.clone(),
            tasks: vec![admin_task, stats_task, probe_task],
            drain_period: options.drain_period,
            telemetry: proxy.telemetry().cloned(),
        })
    }

    /// The pod's load as the autoscaler reads it.
    pub fn report(&self) -> LoadReport {
        self.stats.report(&self.service)
    }

    /// Drains: readiness turns 503 at once, requests keep being served until
    /// none arrived for the drain period and none is in flight (at most
    /// `timeout`), then the listeners close.
    pub async fn drain(self, timeout: Duration) {
        self.draining.store(true, Ordering::Relaxed);
        info!(period = ?self.drain_period, "draining: readiness is now 503");
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        loop {
            // Quiet since the last request, or since the drain began if that
            // is later: an idle pod still waits while its endpoint is removed.
            let quiet_for = self.stats.since_last_arrival().min(started.elapsed());
            let quiet = quiet_for >= self.drain_period;
            let idle = self.service.dispatcher().load() == 0;
            if (quiet && idle) || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Tunnels (WebSockets) still open at the deadline close with the rest.
        self.tunnels.close_all();
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.data_server.finished()).await;
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Some(telemetry) = self.telemetry {
            telemetry.shutdown_async().await;
        }
        info!("drained; stopped");
    }
}

impl SidecarOptions {
    /// The sidecar as a one-service gateway configuration, checked as a
    /// file's would be (its flags get the same ranges).
    fn config(&self) -> Result<Config, ConfigError> {
        let cc = self.container_concurrency;
        let backend = Backend {
            static_pods: Some(vec![self.upstream.to_string()]),
            ..Backend::default()
        };
        let mut model = ServiceConfig::new("model", "pod", backend);
        model.container_concurrency = cc;
        model.protocol = self.protocol;
        let mut config = Config {
            listen: self.listen,
            admin: self.admin,
            domain: "pod.local".into(),
            tracing: self.tracing.clone(),
            services: vec![model],
            ..Config::default()
        };
        let gateway = &mut config.gateway;
        gateway.queue_depth = self.queue_depth.unwrap_or(cc.saturating_mul(10).max(10));
        gateway.queue_timeout = Dur(self.queue_timeout);
        gateway.request_timeout = Dur(self.request_timeout);
        gateway.connections.workers = Some(self.workers);
        config.validated()
    }
}

/// Runs a sidecar until SIGTERM (then drains) or SIGINT.
pub async fn run(options: SidecarOptions) -> Result<(), SidecarError> {
    use tokio::signal::unix::SignalKind;
    let drain_timeout = options.drain_timeout;
    // Before anything starts, so that an early SIGTERM still drains.
    let mut terminate = crate::server::signals(SignalKind::terminate())?;
    let sidecar = Sidecar::start(options).await?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    sidecar.drain(drain_timeout).await;
    Ok(())
}
