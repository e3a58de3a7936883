//! Connections that left their HTTP server by upgrading (WebSockets): the
//! proxy joins each to a pod as a tunnel. A worker thread keeps its runtime
//! (which drives the tunnels' sockets) until they have closed, and shutdown
//! waits for them, then closes them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// The open tunnels, to wait for and to close on shutdown.
#[derive(Debug)]
pub struct Tunnels {
    open: AtomicUsize,
    none_open: Notify,
    closing: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            open: AtomicUsize::new(0),
            none_open: Notify::new(),
            closing: watch::Sender::new(false),
        }
    }
}

impl Tunnels {
    /// Counts a tunnel open until the guard drops.
    pub fn enter(self: &Arc<Self>) -> TunnelGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        TunnelGuard(self.clone())
    }

    /// Changes to true when open tunnels must close.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Returns once no tunnel is open.
    pub async fn closed(&self) {
        loop {
            let notified = self.none_open.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Closes every open tunnel (and any opened from now on).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }
}

/// Counts one tunnel open while it lives.
pub struct TunnelGuard(Arc<Tunnels>);

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_open.notify_waiters();
        }
    }
}
