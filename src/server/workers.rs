//! The data listener served by several threads, the way nginx runs its
//! worker processes. Each worker thread runs its own current-thread tokio
//! runtime and accepts on its own socket, bound to the same address with
//! `SO_REUSEPORT` (the kernel spreads new connections over the sockets). A
//! connection, its requests and their pod connections then stay on one
//! thread from accept to close, so no wake-up crosses threads; what the
//! workers share (routes, the pods' in-flight counts, metrics) sits behind
//! atomics and short locks.
//!
//! Worker 0 runs on the caller's runtime, beside the control plane (the
//! autoscaler, the actuators, the admin port). `maxConnections` bounds the
//! connections of all workers together: at the bound, each worker holds at
//! most one accepted connection, unread, until a slot frees anywhere.

use super::{accept_loop, Bound, ConnectionService, ResponseBody, ServeError, ServeOptions};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::error;

/// The listen backlog of each worker's socket (tokio's default for `bind`).
const BACKLOG: i32 = 1024;

/// Tries at binding several workers to port 0 (see `bind`).
const PORT_ZERO_ATTEMPTS: usize = 16;

/// The workers serving one listener.
#[derive(Debug)]
pub struct Workers {
    addr: SocketAddr,
    /// Worker 0, a task on the caller's runtime.
    first: JoinHandle<()>,
    /// Workers 1.., each signalling here when it has stopped serving.
    others: Vec<oneshot::Receiver<()>>,
}

/// One worker per core the process may use (its CPU affinity and cgroup
/// quota count).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

// === impl Workers ===

impl Workers {
    /// Binds `count` sockets to `addr` (more than one only with
    /// `SO_REUSEPORT`) and serves each on its own worker until `stop`. Must
    /// be called inside a tokio runtime, which runs worker 0.
    pub fn start<S, B, F>(
        addr: SocketAddr,
        count: usize,
        options: ServeOptions,
        make_service: F,
        stop: watch::Receiver<bool>,
    ) -> Result<Workers, ServeError>
    where
        F: Fn(SocketAddr) -> S + Send + Sync + 'static,
        S: ConnectionService<B>,
        B: ResponseBody,
    {
        // Each worker needs at least one connection of the bound.
        let count = count.max(1);
        let listeners = bind(addr, count)?;
        let addr = listeners[0]
            .local_addr()
            .map_err(|source| ServeError::Listen { addr, source })?;
        let make_service = Arc::new(make_service);
        let tunnels = options.tunnels.clone();
        let bound = Bound::new(&options);
        let mut listeners = listeners.into_iter().enumerate();
        let (_, first_listener) = listeners.next().expect("at least one worker");
        let first_listener = TcpListener::from_std(first_listener)
            .map_err(|source| ServeError::Listen { addr, source })?;
        let mut others = Vec::with_capacity(count - 1);
        for (index, listener) in listeners {
            let (bound, make_service, stop) = (bound.clone(), make_service.clone(), stop.clone());
            let tunnels = tunnels.clone();
            let worker = move || {
                let listener = TcpListener::from_std(listener)?;
                Ok(async move {
                    accept_loop(listener, &bound, move |peer| make_service(peer), stop).await;
                    if let Some(tunnels) = tunnels {
                        tunnels.closed().await;
                    }
                })
            };
            others.push(spawn_thread(index, worker)?);
        }
        let first = tokio::spawn(async move {
            accept_loop(first_listener, &bound, move |peer| make_service(peer), stop).await;
        });
        Ok(Workers {
            addr,
            first,
            others,
        })
    }

    /// The address all workers accept on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many workers serve the listener.
    pub fn count(&self) -> usize {
        1 + self.others.len()
    }

    /// Resolves once every worker has stopped: its socket closed and its
    /// connections finished.
    pub async fn finished(self) {
        let _ = self.first.await;
        for worker in self.others {
            let _ = worker.await;
        }
    }
}

/// Starts worker `index` on a thread of its own with a current-thread
/// runtime; `worker` makes its serving future inside that runtime.
fn spawn_thread<W, Fut>(index: usize, worker: W) -> Result<oneshot::Receiver<()>, ServeError>
where
    W: FnOnce() -> std::io::Result<Fut> + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let failed = |source| ServeError::Worker { index, source };
    // Built here so that a failure is reported at start, not in the thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("sluice-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                match worker() {
                    Ok(serving) => serving.await,
                    Err(error) => error!(worker = index, %error, "worker cannot serve"),
                }
            });
            // The runtime, with what its connections left (pod connections
            // in the pools), goes when the thread ends.
            let _ = done.send(());
        })
        .map_err(failed)?;
    Ok(finished)
}

/// `count` listening sockets on `addr`; with port 0, all on the port the
/// first one got. More than one share the port with `SO_REUSEPORT`, which
/// would also let a second gateway join the group: a plain socket bound
/// first makes sure nobody listens there yet.
fn bind(addr: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>, ServeError> {
    let failed = |source| ServeError::Listen { addr, source };
    if count == 1 {
        return Ok(vec![listen(addr, false).map_err(failed)?]);
    }
    // With port 0, the port the probe got may be taken by someone else
    // between the probe's close and the group's bind: then another port.
    let attempts = if addr.port() == 0 {
        PORT_ZERO_ATTEMPTS
    } else {
        1
    };
    let mut last = None;
    for _ in 0..attempts {
        let at = listen(addr, false)
            .and_then(|probe| probe.local_addr())
            .map_err(failed)?;
        let group: std::io::Result<Vec<_>> = (0..count).map(|_| listen(at, true)).collect();
        match group {
            Ok(group) => return Ok(group),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => last = Some(error),
            Err(error) => return Err(failed(error)),
        }
    }
    Err(failed(last.expect("at least one attempt")))
}

/// One listening socket, set as tokio's `TcpListener::bind` sets it;
/// `reuse_port` to share the port with the other workers.
pub(super) fn listen(at: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(at), Type::STREAM, Some(Protocol::TCP))?;
    // A restart can rebind at once.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.set_nonblocking(true)?;
    socket.bind(&at.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_binds_the_same_port() {
        let bound = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = bound
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
    }

    #[test]
    fn a_port_in_use_is_refused_however_many_workers_either_side_has() {
        for (first, second) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
            let bound = bind("127.0.0.1:0".parse().unwrap(), first).unwrap();
            let taken = bound[0].local_addr().unwrap();
            let error = bind(taken, second).unwrap_err();
            assert!(
                error.to_string().contains("cannot listen on"),
                "{first} then {second}: {error}"
            );
        }
    }
}
