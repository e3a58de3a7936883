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
    lifecycle: Mutex<State>,
    /// Set while a byte read would change the phase, so that most reads
    /// cost one atomic load.
    wants_bytes: AtomicBool,
    changed: Notify,
}

/// The lifecycle, and the deadline the task's timer is set for.
#[derive(Debug)]
struct State {
    lifecycle: Lifecycle,
    /// When the waiting task's timer fires (`None` while it waits for no
    /// deadline). A change wakes the task only when its deadline comes
    /// before this: a later one is found when the timer fires, so the many
    /// changes a request makes (its deadline cleared, then set later for
    /// the idle connection) cost no wake-up and no new timer.
    armed: Option<Instant>,
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
            lifecycle: Mutex::new(State {
                lifecycle: Lifecycle::new(timeouts, tls, Instant::now()),
                armed: None,
            }),
            wants_bytes: AtomicBool::new(true),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change`, and wakes the task if the deadline now comes before
    /// the one its timer is set for.
    pub(super) fn update(&self, change: impl FnOnce(&mut Lifecycle, Instant)) {
        let mut state = self.state();
        change(&mut state.lifecycle, Instant::now());
        let after = state.lifecycle.deadline().map(|(at, _)| at);
        self.wants_bytes
            .store(state.lifecycle.wants_bytes(), Ordering::Relaxed);
        let sooner = match (state.armed, after) {
            (Some(armed), Some(after)) => after < armed,
            (None, after) => after.is_some(),
            (Some(_), None) => false,
        };
        drop(state);
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
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        loop {
            let deadline = {
                let mut state = self.state();
                let now = Instant::now();
                if let Some(expiry) = state.lifecycle.expired(now) {
                    return expiry;
                }
                // Armed no later than a check-in: the changes a request
                // makes then never come sooner, and wake no one.
                let check_in = now.checked_add(state.lifecycle.check_in());
                let deadline = match (state.lifecycle.deadline(), check_in) {
                    (Some((at, _)), Some(check_in)) => Some(at.min(check_in)),
                    (Some((at, _)), None) => Some(at),
                    (None, check_in) => check_in,
                };
                state.armed = deadline;
                deadline
            };
            match deadline {
                Some(at) => {
                    if timer.deadline() != at || timer.is_elapsed() {
                        timer.as_mut().reset(at);
                    }
                    tokio::select! {
                        _ = &mut timer => {}
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: Duration = Duration::from_secs(1);

    fn timeouts(header_read: Duration, idle: Duration, close: Duration) -> Timeouts {
        Timeouts {
            first_byte: 10 * S,
            tls_handshake: 10 * S,
            header_read,
            idle,
            close,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_sooner_than_the_armed_timer_wakes_the_watcher() {
        let watch = Watch::new(timeouts(30 * S, 60 * S, S / 10), false);
        let started = Instant::now();
        let waiting = tokio::spawn({
            let watch = watch.clone();
            async move { watch.expired().await }
        });
        // Armed for the first byte (10 s); then a close with 100 ms to go.
        tokio::time::sleep(S / 1000).await;
        watch.update(|l, now| l.close_begun(now));
        assert_eq!(waiting.await.unwrap(), Expiry::Close);
        assert_eq!(started.elapsed(), S / 1000 + S / 10);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_expires_at_its_idle_timeout_past_the_check_ins() {
        // Checks in every 2 s (the header read timeout), idle after 5 s.
        let watch = Watch::new(timeouts(2 * S, 5 * S, S), false);
        let started = Instant::now();
        watch.byte_read();
        watch.update(|l, _| l.request_started(false));
        let waiting = tokio::spawn({
            let watch = watch.clone();
            async move { watch.expired().await }
        });
        tokio::time::sleep(3 * S).await;
        // The response ends at 3 s: idle until 8 s, later than the armed
        // check-in, so the watcher is not told and finds it at a check-in.
        watch.update(|l, now| l.request_ended(now));
        assert_eq!(waiting.await.unwrap(), Expiry::Idle);
        assert_eq!(started.elapsed(), 8 * S);
    }
}
