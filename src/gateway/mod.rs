//! `sluice gateway`: binds the data and admin listeners, serves until told to
//! stop, reloads its configuration on SIGHUP and when the file changes, and
//! its TLS certificate (if any) when its files change.

pub use self::tls::check as check_tls;

mod reload;
mod tls;

use self::reload::ConfigFile;

pub use crate::shared::Shared;

use crate::config::{Config, ConfigError};
use crate::server;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    data_addr: SocketAddr,
    admin_addr: SocketAddr,
    config_file: Option<Arc<ConfigFile>>,
    stop: watch::Sender<bool>,
    data_server: server::Workers,
    admin_server: JoinHandle<()>,
    watcher: Option<JoinHandle<()>>,
    tls_watcher: Option<JoinHandle<()>>,
    inference_services: Option<JoinHandle<()>>,
    /// Samples each service once a second for `/history`.
    history: JoinHandle<()>,
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
    /// The TLS certificate or key (named by their `tls:` keys).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

// === impl Gateway ===

impl Gateway {
    /// Binds both listeners and starts serving. With `config_path`, the file
    /// is watched and reloaded when it changes.
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Result<Gateway, StartError> {
        let admin = server::listen(config.admin).await?;
        let admin_addr = local_addr(&admin);
        let gateway_settings = config.gateway.clone();
        let config_listen = config.listen;
        let names: Vec<String> = config
            .services
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        let tls_settings = config.tls.clone();
        let shared = Shared::new(config);
        // Before anything else runs: a certificate that cannot load is a
        // configuration error, and the replicas just started are stopped.
        let certificate = match tls::load(&shared.config(), shared.metrics.tls.clone()).await {
            Ok(certificate) => certificate,
            Err(error) => {
                shared.retire_all().await;
                let error = match &config_path {
                    Some(path) => error.at(path),
                    None => error,
                };
                return Err(error.into());
            }
        };
        shared.cluster.start();
        let inference_services = shared
            .cluster
            .settings()
            .inference_services
            .enabled
            .then(|| {
                let shared = shared.clone();
                tokio::spawn(supervised(
                    "inference-services",
                    shared.clone(),
                    move || {
                        let publish_to = shared.clone();
                        crate::kubernetes::watch_inference_services(
                            shared.cluster.clone(),
                            shared.config().domain.clone(),
                            move |services| publish_to.set_discovered(services),
                        )
                    },
                ))
            });
        let history = tokio::spawn(crate::shared::keep_history(shared.routes.clone()));
        let (stop, stopped) = watch::channel(false);

        let (mut data_options, admin_options) =
            server::data_and_admin(&gateway_settings, &shared.metrics.connections);
        let tls_watcher = match (&certificate, &tls_settings) {
            (Some(certificate), Some(settings)) => {
                let acceptor = server::tls::acceptor(certificate.clone());
                data_options = data_options.tls(acceptor, settings.handshake_timeout.0);
                let (certificate, every) = (certificate.clone(), settings.poll_interval.0);
                let stopped = stopped.clone();
                Some(tokio::spawn(supervised(
                    "tls-watcher",
                    shared.clone(),
                    move || certificate.clone().watch(every, stopped.clone()),
                )))
            }
            _ => None,
        };
        let data_proxy = shared.proxy.clone();
        let workers =
            (gateway_settings.connections.workers).unwrap_or_else(server::default_workers);
        let data_server = server::Workers::start(
            config_listen,
            workers,
            data_options.with_tunnels(shared.proxy.tunnels.clone()),
            move |peer: SocketAddr| {
                let proxy = data_proxy.clone();
                hyper::service::service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(crate::proxy::proxy(proxy, peer.ip(), req).await) }
                })
            },
            stopped.clone(),
        )?;
        let data_addr = data_server.addr();
        let admin_shared = shared.clone();
        let admin_server = tokio::spawn(server::serve(
            admin,
            admin_options,
            move |_peer| {
                let shared = admin_shared.clone();
                hyper::service::service_fn(move |req| crate::admin::handle(shared.clone(), req))
            },
            stopped.clone(),
        ));
        let config_file = match config_path {
            Some(path) => {
                let file = ConfigFile::new(path);
                file.started_with(&shared.config()).await;
                Some(Arc::new(file))
            }
            None => None,
        };
        let watcher = config_file.clone().map(|file| {
            let shared = shared.clone();
            tokio::spawn(supervised("config-watcher", shared.clone(), move || {
                reload::watch_file(shared.clone(), file.clone(), stopped.clone())
            }))
        });
        let tls = certificate.is_some();
        info!(listen = %data_addr, admin = %admin_addr, tls, workers = data_server.count(), services = ?names, "sluice gateway started");
        Ok(Gateway {
            shared,
            data_addr,
            admin_addr,
            config_file,
            stop,
            data_server,
            admin_server,
            watcher,
            tls_watcher,
            inference_services,
            history,
        })
    }

    pub fn data_addr(&self) -> SocketAddr {
        self.data_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Re-reads the configuration file. An invalid file is reported and the
    /// running configuration keeps serving.
    pub async fn reload(&self) -> Result<(), ConfigError> {
        match &self.config_file {
            Some(file) => file.reload(&self.shared).await,
            None => Ok(()),
        }
    }

    /// Stops accepting, lets requests in flight finish for at most `grace`,
    /// and returns whether they all did.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shared.start_draining();
        let _ = self.stop.send(true);
        self.history.abort();
        for task in [self.watcher, self.tls_watcher, self.inference_services]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        let started = tokio::time::Instant::now();
        let connections_done = tokio::time::timeout(grace, self.data_server.finished())
            .await
            .is_ok();
        // Upgraded connections (WebSockets) left the server when they
        // switched: they get what is left of the grace period, then close.
        let tunnels = &self.shared.proxy.tunnels;
        let tunnels_done = tokio::time::timeout_at(started + grace, tunnels.closed())
            .await
            .is_ok();
        tunnels.close_all();
        let drained = connections_done && tunnels_done;
        // Requests are done (or out of time): now stop every local replica,
        // so that no child process outlives the gateway.
        let stop_grace = grace.max(Duration::from_secs(10));
        if tokio::time::timeout(stop_grace, self.shared.retire_all())
            .await
            .is_err()
        {
            warn!("replicas still stopping; they are killed as the gateway exits");
        }
        self.admin_server.abort();
        if let Some(telemetry) = self.shared.proxy.telemetry() {
            telemetry.clone().shutdown_async().await;
        }
        if drained {
            info!("all requests finished; stopped");
        } else {
            warn!(
                ?grace,
                "grace period over with requests still in flight; stopping anyway"
            );
        }
        drained
    }
}

/// Runs a gateway until SIGTERM or SIGINT; SIGHUP reloads the configuration.
pub async fn run(config: Config, config_path: PathBuf) -> Result<(), StartError> {
    use tokio::signal::unix::SignalKind;
    let gateway = Gateway::start(config, Some(config_path)).await?;
    let mut hangup = server::signals(SignalKind::hangup())?;
    let mut terminate = server::signals(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                info!("SIGHUP: reloading the configuration");
                let _ = gateway.reload().await;
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let grace = gateway.shared.proxy.settings.load().shutdown_grace_period.0;
    info!(
        ?grace,
        "shutting down: no new connections; waiting for requests in flight"
    );
    gateway.shutdown(grace).await;
    Ok(())
}

/// A gateway task, restarted if it panics (see [`crate::supervise`]).
async fn supervised<F, Fut>(task: &'static str, shared: Arc<Shared>, start: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let on_panic = move |_: &str| shared.metrics.tasks.panicked(task, "", "");
    crate::supervise::restart_on_panic(task, "gateway", on_panic, start).await;
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}
