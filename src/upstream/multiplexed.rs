//! HTTP/2 connections to pods that speak h2c: one per pod and worker
//! thread, shared by every request on that thread as concurrent streams.
//!
//! Unlike HTTP/1.1, a request does not take a connection for itself: it
//! clones the thread's sender and opens a stream. The connection's I/O is
//! driven by a task on the runtime of the thread that opened it, so, as in
//! the HTTP/1.1 pool, a thread only uses its own. (The workers' runtimes
//! are current-thread, so a request never moves between threads; on a
//! multi-thread runtime one that moved while connecting files its
//! connection under the thread it ended on, and a few more may open.)

use super::pool::{open_stream, this_thread, ConnectError};
use super::RequestBody;
use http::uri::Authority;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;
use tracing::debug;

/// A handle on an HTTP/2 connection to one pod; clones share the connection.
pub type Multiplexed = http2::SendRequest<RequestBody>;

/// A pod unheard of for this long is sent a PING...
const PING_EVERY: Duration = Duration::from_secs(30);
/// ...and the connection closed if the answer takes longer than this.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The open HTTP/2 connections of one pod, one per thread at most.
#[derive(Debug, Default)]
pub struct SharedConnections {
    open: Mutex<Vec<(ThreadId, Multiplexed)>>,
    /// Taken while a connection is being opened, so that the requests that
    /// arrive meanwhile wait for it instead of each opening their own.
    connecting: tokio::sync::Mutex<LastConnect>,
    /// Connects finished so far: a waiter that sees it move knows a connect
    /// ended while it waited.
    attempts: AtomicU64,
}

/// How the latest connect to the pod went.
#[derive(Debug, Default)]
struct LastConnect {
    failure: Option<String>,
}

impl SharedConnections {
    /// This thread's connection to the pod, opened with `connect` if there
    /// is none, and whether it was already open. Requests that arrive while
    /// a connect is under way wait for it; if it failed, they fail with it
    /// rather than each waiting out the connect timeout again.
    pub async fn get_or_connect<F>(&self, connect: F) -> Result<(Multiplexed, bool), ConnectError>
    where
        F: Future<Output = Result<Multiplexed, ConnectError>>,
    {
        if let Some(open) = self.get() {
            return Ok((open, true));
        }
        let attempts_before = self.attempts.load(Ordering::Acquire);
        let mut last = self.connecting.lock().await;
        if let Some(open) = self.get() {
            return Ok((open, true));
        }
        if let Some(failure) = &last.failure {
            if self.attempts.load(Ordering::Acquire) != attempts_before {
                return Err(ConnectError::new(failure.clone()));
            }
        }
        let result = connect.await;
        // Counted once done, so that a request that began waiting during
        // this connect sees the count move.
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(connection) => {
                last.failure = None;
                self.keep(connection.clone());
                Ok((connection, false))
            }
            Err(error) => {
                last.failure = Some(error.to_string());
                Err(error)
            }
        }
    }

    /// This thread's connection to the pod, if it has one that is open.
    fn get(&self) -> Option<Multiplexed> {
        let here = this_thread();
        let mut open = self.lock();
        open.retain(|(_, connection)| !connection.is_closed());
        open.iter()
            .find(|(thread, _)| *thread == here)
            .map(|(_, connection)| connection.clone())
    }

    /// Keeps a new connection as this thread's, in place of any other.
    fn keep(&self, connection: Multiplexed) {
        let here = this_thread();
        let mut open = self.lock();
        open.retain(|(thread, c)| *thread != here && !c.is_closed());
        open.push((here, connection));
    }

    /// Forgets this thread's connection: it failed a request it never sent.
    pub fn forget(&self) {
        let here = this_thread();
        self.lock().retain(|(thread, _)| *thread != here);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(ThreadId, Multiplexed)>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens an HTTP/2 connection to `authority` with prior knowledge (no
/// upgrade, no TLS), within `timeout`.
pub async fn connect_h2(
    authority: &Authority,
    timeout: Duration,
) -> Result<Multiplexed, ConnectError> {
    let stream = open_stream(authority, timeout).await?;
    let handshake = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_EVERY)
        .keep_alive_timeout(PING_TIMEOUT)
        .handshake(TokioIo::new(stream));
    let (sender, connection) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| ConnectError::new(format!("HTTP/2 handshake: timed out after {timeout:?}")))?
        .map_err(|e| ConnectError::new(format!("HTTP/2 handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(%error, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn requests_that_wait_for_a_failing_connect_fail_with_it() {
        let connections = SharedConnections::default();
        let tries = AtomicUsize::new(0);
        let failing = || async {
            tries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(ConnectError::new("refused".into()))
        };
        let (a, b, c) = tokio::join!(
            connections.get_or_connect(failing()),
            connections.get_or_connect(failing()),
            connections.get_or_connect(failing()),
        );
        assert_eq!(tries.load(Ordering::SeqCst), 1, "one connect for all three");
        for result in [a, b, c] {
            assert_eq!(result.unwrap_err().to_string(), "refused");
        }
        // A request that comes later tries again.
        let _ = connections.get_or_connect(failing()).await;
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }
}
