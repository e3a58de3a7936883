//! The ports the fake listens on, and the tasks behind them: an accept loop
//! per port and a task per connection, all of which `stop` (and dropping
//! the fake) ends, so that no task outlives the test holding a port.

use super::routes;
use super::{lock, Shared};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub(super) struct Listeners {
    /// By listener index; a port stays the listener's across restarts.
    pub addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    /// Counts stops, so that an accept loop racing a stop does not register
    /// a connection the stop has already missed.
    generation: u64,
    running: bool,
}

// === impl Listeners ===

impl Listeners {
    pub fn new() -> Listeners {
        Listeners {
            addrs: Vec::new(),
            tasks: Vec::new(),
            generation: 0,
            running: true,
        }
    }
}

/// Listens on a new port of 127.0.0.1; returns its listener index.
pub(super) async fn add(shared: &Arc<Shared>) -> usize {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("a bound address");
    let mut listeners = lock(&shared.listeners);
    let index = listeners.addrs.len();
    listeners.addrs.push(addr);
    // While stopped the port is only remembered; `restart` binds it again.
    if listeners.running {
        serve(shared, &mut listeners, index, listener);
    }
    index
}

/// Closes every port and aborts every connection, and waits until they are
/// gone: from then on connections are refused.
pub(super) async fn stop(shared: &Shared) {
    let tasks = {
        let mut listeners = lock(&shared.listeners);
        listeners.generation += 1;
        listeners.running = false;
        std::mem::take(&mut listeners.tasks)
    };
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Listens again on the same ports.
pub(super) async fn restart(shared: &Arc<Shared>) {
    let addrs = {
        let listeners = lock(&shared.listeners);
        if listeners.running {
            return;
        }
        listeners.addrs.clone()
    };
    let mut bound = Vec::new();
    for addr in addrs {
        bound.push(bind_again(addr).await);
    }
    let mut listeners = lock(&shared.listeners);
    listeners.running = true;
    for (index, listener) in bound.into_iter().enumerate() {
        serve(shared, &mut listeners, index, listener);
    }
}

/// Aborts every task without waiting, for `Drop`.
pub(super) fn abort_all(shared: &Shared) {
    let mut listeners = lock(&shared.listeners);
    listeners.generation += 1;
    listeners.running = false;
    for task in listeners.tasks.drain(..) {
        task.abort();
    }
}

fn serve(shared: &Arc<Shared>, listeners: &mut Listeners, index: usize, listener: TcpListener) {
    let generation = listeners.generation;
    let accept = tokio::spawn(accept_loop(shared.clone(), index, listener, generation));
    listeners.tasks.push(accept);
}

async fn accept_loop(shared: Arc<Shared>, index: usize, listener: TcpListener, generation: u64) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: try again shortly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Watch events are small writes that must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let connection = tokio::spawn(serve_connection(shared.clone(), index, stream));
        let mut listeners = lock(&shared.listeners);
        if listeners.generation != generation {
            connection.abort();
            return;
        }
        listeners.tasks.retain(|task| !task.is_finished());
        listeners.tasks.push(connection);
    }
}

async fn serve_connection(shared: Arc<Shared>, index: usize, stream: TcpStream) {
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(routes::handle(shared, index, request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Binds a port this fake held a moment ago. Tokio sets SO_REUSEADDR, so
/// connections in TIME_WAIT do not stand in the way; the retries cover the
/// kernel still tearing the old socket down.
async fn bind_again(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) if Instant::now() >= deadline => panic!("listening again on {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
