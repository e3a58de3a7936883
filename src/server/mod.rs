//! The accept loop shared by every listener (data, admin, sidecar,
//! predictor, webhook): HTTP/1.1 with keep-alive and HTTP/2 with prior
//! knowledge on one port, optionally behind TLS; a timeout for every phase
//! of a connection; a bound on open connections; and a graceful stop.

mod accept;
mod connection;
mod files;
mod lifecycle;
mod protocol;
pub mod tls;
mod tunnels;
mod watched;
mod woken;
mod workers;

pub use self::connection::OverTls;
pub use self::files::raise_open_file_limit;
pub use self::tunnels::{TunnelGuard, Tunnels};
pub use self::workers::{default_workers, Workers};

use self::accept::{AcceptBackoff, RateLimit};
use self::connection::Slot;
use self::lifecycle::Timeouts;
use crate::config::{ConnectionSettings, GatewaySettings};
use crate::metrics::{ConnectionMetrics, ListenerMetrics};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a listener serves each connection with: a hyper service whose
/// futures move to the connection's task.
pub trait ConnectionService<B>:
    Service<
        Request<Incoming>,
        Response = Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Send
    + 'static
{
}

impl<S, B> ConnectionService<B> for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
}

/// A response body a connection's task can send.
pub trait ResponseBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

impl<B> ResponseBody for B
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
}

/// Why a serving command could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot start worker thread {index}: {source}")]
    Worker {
        index: usize,
        source: std::io::Error,
    },
}

/// A listener on `addr`.
pub async fn listen(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    workers::listen(addr, false)
        .and_then(TcpListener::from_std)
        .map_err(|source| ServeError::Listen { addr, source })
}

/// A stream of `kind` signals.
pub fn signals(
    kind: tokio::signal::unix::SignalKind,
) -> Result<tokio::signal::unix::Signal, ServeError> {
    tokio::signal::unix::signal(kind).map_err(ServeError::Signals)
}

/// The admin listeners' bound on connections (scrapes, probes, `sluice
/// status`), apart from the data listener's.
pub const ADMIN_MAX_CONNECTIONS: usize = 100;

/// The longest time handed to hyper's timers, which add it to an `Instant`.
const LONGEST_TIMER: Duration = Duration::from_secs(365 * 24 * 3600);

/// How often reaching the connection limit is logged, at most.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);

/// How a listener serves its connections.
#[derive(Clone)]
pub struct ServeOptions {
    name: &'static str,
    settings: ConnectionSettings,
    max_connections: usize,
    max_header_size: u64,
    max_header_count: usize,
    tls: Option<(TlsAcceptor, Duration)>,
    metrics: ListenerMetrics,
    /// Upgraded connections a worker thread waits for before it ends.
    tunnels: Option<Arc<Tunnels>>,
}

/// What a listener's connections share.
struct Listening {
    servers: protocol::Servers,
    timeouts: Timeouts,
    tls: Option<TlsAcceptor>,
    metrics: ListenerMetrics,
}

/// How a gateway's (or a sidecar's) two listeners serve: the data port with
/// the gateway's connection settings and header limits, the admin port the
/// same with at most [`ADMIN_MAX_CONNECTIONS`].
pub fn data_and_admin(
    settings: &GatewaySettings,
    metrics: &ConnectionMetrics,
) -> (ServeOptions, ServeOptions) {
    let listener = |name| {
        ServeOptions::new(name, &settings.connections, metrics.listener(name))
            .max_header_size(settings.max_header_size.0)
            .max_header_count(settings.max_header_count)
    };
    let admin = listener("admin").at_most(ADMIN_MAX_CONNECTIONS);
    (listener("data"), admin)
}

// === impl ServeOptions ===

impl ServeOptions {
    /// The listener `name` (the `listener` label of its metrics, and in
    /// its logs), with these connection settings.
    pub fn new(
        name: &'static str,
        settings: &ConnectionSettings,
        metrics: ListenerMetrics,
    ) -> Self {
        let max_connections = settings
            .max_connections
            .unwrap_or_else(files::default_max_connections);
        ServeOptions {
            name,
            settings: settings.clone(),
            max_connections,
            max_header_size: 64 << 10,
            max_header_count: 100,
            tls: None,
            metrics,
            tunnels: None,
        }
    }

    /// Worker threads keep serving these tunnels after they stop accepting,
    /// until the tunnels close (their sockets live on the worker's runtime).
    pub fn with_tunnels(mut self, tunnels: Arc<Tunnels>) -> Self {
        self.tunnels = Some(tunnels);
        self
    }

    /// At most `connections` open at once (below the configured bound).
    pub fn at_most(mut self, connections: usize) -> Self {
        self.max_connections = self.max_connections.min(connections);
        self
    }

    /// hyper's header buffers are bounded by twice this (sluice answers 431
    /// itself below it).
    pub fn max_header_size(mut self, bytes: u64) -> Self {
        self.max_header_size = bytes;
        self
    }

    /// hyper's HTTP/1 parser takes up to twice this many header lines
    /// (sluice answers 431 itself past it).
    pub fn max_header_count(mut self, lines: usize) -> Self {
        self.max_header_count = lines;
        self
    }

    /// TLS first, with a handshake done within `handshake_timeout` of accept.
    pub fn tls(mut self, acceptor: TlsAcceptor, handshake_timeout: Duration) -> Self {
        self.tls = Some((acceptor, handshake_timeout));
        self
    }

    /// The bound as a semaphore holds it: at least one, and what
    /// `acquire_many` can count.
    fn slots(&self) -> u32 {
        self.max_connections.clamp(1, u32::MAX as usize) as u32
    }

    fn listening(&self) -> Listening {
        let s = &self.settings;
        let timer = |d: &crate::config::Dur| d.0.clamp(Duration::from_millis(1), LONGEST_TIMER);
        Listening {
            servers: servers(
                self.max_header_size,
                self.max_header_count,
                timer(&s.http2_keep_alive_interval),
                timer(&s.http2_keep_alive_timeout),
            ),
            timeouts: Timeouts {
                first_byte: s.first_byte_timeout.0,
                tls_handshake: self.tls.as_ref().map_or(Duration::MAX, |(_, t)| *t),
                header_read: s.header_read_timeout.0,
                idle: s.idle_timeout.0,
                close: s.http2_keep_alive_timeout.0,
            },
            tls: self.tls.as_ref().map(|(acceptor, _)| acceptor.clone()),
            metrics: self.metrics.clone(),
        }
    }
}

/// The connection servers. The connection timeouts are sluice's own
/// (`lifecycle.rs`); hyper's HTTP/1 header timeout, which also counts the
/// idle time between requests, is off.
fn servers(
    max_header_size: u64,
    max_header_count: usize,
    ping_every: Duration,
    ping_timeout: Duration,
) -> protocol::Servers {
    // sluice answers 431 itself below this bound; hyper's own limit, kept
    // above it, only stops a peer from making a connection buffer grow forever.
    let hard_limit = (max_header_size.saturating_mul(2)).clamp(16 << 10, 16 << 20) as usize;
    // Likewise for the count: sluice answers 431 past `max_header_count`.
    // At most 100, hyper keeps the parsed headers on the stack; above, it
    // allocates them per request.
    let parser_limit = max_header_count.saturating_mul(2).clamp(100, 1 << 16);
    // The same HTTP/1 settings on hyper's builder and on hyper-util's
    // (the same methods on two types).
    macro_rules! http1_settings {
        ($builder:expr) => {{
            let builder = &mut $builder;
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(None)
                .keep_alive(true)
                .max_buf_size(hard_limit);
            if parser_limit > 100 {
                builder.max_headers(parser_limit);
            }
        }};
    }
    let mut both = auto::Builder::new(TokioExecutor::new());
    http1_settings!(both.http1());
    both.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(ping_every)
        .keep_alive_timeout(ping_timeout)
        .max_header_list_size(hard_limit as u32)
        // RFC 8441: WebSockets over HTTP/2 (the proxy joins them to pods).
        .enable_connect_protocol();
    let mut only_http1 = hyper::server::conn::http1::Builder::new();
    http1_settings!(only_http1);
    protocol::Servers::new(only_http1, both)
}

/// Serves connections until `stop` turns true, then waits for the open
/// connections to finish their requests (HTTP/1 closes after the current
/// response; HTTP/2 sends GOAWAY).
pub async fn serve<S, B, F>(
    listener: TcpListener,
    options: ServeOptions,
    make_service: F,
    stop: watch::Receiver<bool>,
) where
    F: Fn(SocketAddr) -> S,
    S: ConnectionService<B>,
    B: ResponseBody,
{
    accept_loop(listener, &Bound::new(&options), make_service, stop).await;
}

/// A listener's bound on open connections and what its connections share;
/// one for all the sockets (workers) of a listener.
#[derive(Clone)]
struct Bound {
    name: &'static str,
    limit: u32,
    slots: Arc<Semaphore>,
    listening: Arc<Listening>,
    /// The listener's log allowances, so that its workers together log
    /// accept failures and the bound at most as often as one would.
    accept_log: Arc<Mutex<RateLimit>>,
    limit_log: Arc<Mutex<RateLimit>>,
}

impl Bound {
    fn new(options: &ServeOptions) -> Self {
        let limit = options.slots();
        Bound {
            name: options.name,
            limit,
            slots: Arc::new(Semaphore::new(limit as usize)),
            listening: Arc::new(options.listening()),
            accept_log: AcceptBackoff::log(),
            limit_log: Arc::new(Mutex::new(RateLimit::new(LIMIT_LOG_EVERY))),
        }
    }
}

/// Accepts on one socket until `stop`, then waits until every connection
/// under `bound` is closed. At the bound, an accepted connection waits for
/// a slot, unread, and the next ones wait in the socket's backlog.
async fn accept_loop<S, B, F>(
    listener: TcpListener,
    bound: &Bound,
    make_service: F,
    mut stop: watch::Receiver<bool>,
) where
    F: Fn(SocketAddr) -> S,
    S: ConnectionService<B>,
    B: ResponseBody,
{
    let Bound {
        name,
        limit,
        slots,
        listening,
        accept_log,
        limit_log,
    } = bound;
    let mut backoff = AcceptBackoff::sharing(accept_log.clone());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(error) if accept::of_one_connection(&error) => {
                debug!(listener = name, %error, "a connection was gone before it was accepted");
                continue;
            }
            Err(error) => {
                listening.metrics.accept_failed();
                let (delay, report) = backoff.failed(Instant::now());
                if let Some(report) = report {
                    warn!(listener = name, %error, ?delay, not_logged = report.held_back,
                        "accept failed; backing off");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(&mut stop) => break,
                }
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                listening.metrics.limit_reached();
                let report = (limit_log.lock().unwrap_or_else(PoisonError::into_inner))
                    .allow(Instant::now());
                if let Some(held_back) = report {
                    warn!(
                        listener = name,
                        limit,
                        not_logged = held_back,
                        "connection limit {limit} reached; not accepting until one closes"
                    );
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    _ = stopped(&mut stop) => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let slot = Slot::new(permit, listening.clone());
        tokio::spawn(connection::run(
            stream,
            peer,
            make_service(peer),
            slot,
            stop.clone(),
        ));
    }
    drop(listener);
    // Every connection watches `stop` and closes gracefully; each holds a
    // slot until it is gone.
    let _ = slots.acquire_many(*limit).await;
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The `Ref` that wait_for returns is not Send: drop it here, not in a select!.
    let _ = stop.wait_for(|stop| *stop).await;
}
