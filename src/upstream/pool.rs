//! A pod's idle connections, and opening new ones.
//!
//! A connection's I/O is driven by a task on the runtime of the thread that
//! opened it. Each gateway worker thread has a runtime of its own, so a
//! connection is only taken again on the thread that opened it: used from
//! another, every request and response would wake a thread across cores.

use super::RequestBody;
use http::uri::Authority;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::{Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

/// A ready HTTP/1.1 connection to one pod.
pub type Connection = http1::SendRequest<RequestBody>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(String);

impl ConnectError {
    pub(super) fn new(message: String) -> Self {
        ConnectError(message)
    }
}

/// The idle connections of one pod, most recently used last.
#[derive(Debug, Default)]
pub struct Connections {
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    connection: Connection,
    since: Instant,
    /// The thread whose runtime drives the connection.
    thread: ThreadId,
}

impl Connections {
    /// The most recently used idle connection that is still open and was not
    /// idle longer than `idle_timeout`. Older ones are closed.
    pub async fn take(&self, idle_timeout: Duration) -> Option<Connection> {
        let here = this_thread();
        loop {
            let Idle {
                mut connection,
                since,
                ..
            } = {
                let mut idle = self.lock();
                let newest = idle.iter().rposition(|c| c.thread == here)?;
                idle.remove(newest)
            };
            if connection.is_closed() || since.elapsed() >= idle_timeout {
                continue;
            }
            // Ready at once unless the pod closed it meanwhile.
            if connection.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    /// Gives back a connection whose response was read to the end.
    pub fn put(&self, connection: Connection, idle_timeout: Duration) {
        if connection.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        idle.retain(|c| !c.connection.is_closed() && now.duration_since(c.since) < idle_timeout);
        idle.push(Idle {
            connection,
            since: now,
            thread: this_thread(),
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The calling thread, without `thread::current`'s reference count per call.
pub(super) fn this_thread() -> ThreadId {
    thread_local!(static HERE: ThreadId = std::thread::current().id());
    HERE.with(|id| *id)
}

/// Opens a new connection to `authority`, within `timeout`.
pub async fn connect(authority: &Authority, timeout: Duration) -> Result<Connection, ConnectError> {
    let stream = open_stream(authority, timeout).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError(e.to_string()))?;
    // One task per connection (not per request) drives its I/O.
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Opens a connection to `authority` for one request that asks to upgrade
/// (a WebSocket): never pooled, and its I/O handed over if the pod answers
/// 101 Switching Protocols.
pub async fn connect_for_upgrade(
    authority: &Authority,
    timeout: Duration,
) -> Result<Connection, ConnectError> {
    let stream = open_stream(authority, timeout).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            debug!(%error, "upstream connection for an upgrade ended with an error");
        }
    });
    Ok(sender)
}

/// A TCP connection to `authority` (no delay on small writes), within `timeout`.
pub(super) async fn open_stream(
    authority: &Authority,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let port = authority.port_u16().unwrap_or(80);
    // An IPv6 literal comes bracketed in an authority, not in a socket address.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let connecting = TcpStream::connect((host, port));
    let stream = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(ConnectError(e.to_string())),
        Err(_) => return Err(ConnectError(format!("timed out after {timeout:?}"))),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
