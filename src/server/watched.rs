//! A connection's watch: its lifecycle (see `lifecycle.rs`), told of the
//! first bytes by the socket ([`Watched`]) and of requests by the service
//! (`connection::Tracked`), and woken when a phase changes.

use super::lifecycle::{Expiry, Lifecycle, Timeouts};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// A connection's lifecycle, shared by its socket, its requests and its task.
#[derive(Debug)]
pub struct Watch {
    lifecycle: Mutex<Lifecycle>,
    /// Set while a byte read would change the phase, so that most reads
    /// cost one atomic load.
    wants_bytes: AtomicBool,
    changed: Notify,
}

/// The socket, telling the watch when bytes arrive.
#[derive(Debug)]
pub struct Watched<T> {
    pub(super) io: T,
    pub(super) watch: Arc<Watch>,
}

// === impl Watch ===

impl Watch {
    pub(super) fn new(timeouts: Timeouts, tls: bool) -> Arc<Self> {
        Arc::new(Watch {
            lifecycle: Mutex::new(Lifecycle::new(timeouts, tls, Instant::now())),
            wants_bytes: AtomicBool::new(true),
            changed: Notify::new(),
        })
    }

    pub(super) fn lifecycle(&self) -> MutexGuard<'_, Lifecycle> {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change`, and wakes the task if its deadline came sooner (a
    /// later one it finds for itself when the earlier passes).
    pub(super) fn update(&self, change: impl FnOnce(&mut Lifecycle, Instant)) {
        let mut lifecycle = self.lifecycle();
        let before = lifecycle.deadline().map(|(at, _)| at);
        change(&mut lifecycle, Instant::now());
        let after = lifecycle.deadline().map(|(at, _)| at);
        self.wants_bytes
            .store(lifecycle.wants_bytes(), Ordering::Relaxed);
        drop(lifecycle);
        let sooner = match (before, after) {
            (Some(before), Some(after)) => after < before,
            (None, after) => after.is_some(),
            (Some(_), None) => false,
        };
        if sooner {
            self.changed.notify_one();
        }
    }

    pub(super) fn byte_read(&self) {
        if self.wants_bytes.load(Ordering::Relaxed)
            && self.wants_bytes.swap(false, Ordering::AcqRel)
        {
            self.update(|l, now| l.byte_read(now));
        }
    }

    /// Resolves when the current phase runs out of time.
    pub(super) async fn expired(&self) -> Expiry {
        loop {
            let deadline = self.lifecycle().deadline();
            match deadline {
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
            if let Some(expiry) = self.lifecycle().expired(Instant::now()) {
                return expiry;
            }
        }
    }
}

// === impl Watched ===

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.byte_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
