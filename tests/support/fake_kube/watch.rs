//! Watches: what each one is shown of a change (as the API server's watch
//! cache decides it), replay from a resourceVersion, 410 Expired, bookmarks,
//! and the chunked body of newline-delimited JSON events.

use super::resources::{ApiError, ResourceType};
use super::selector::Selectors;
use super::store::{Change, ChangeType, Store};
use super::{lock, Shared};
use bytes::Bytes;
use hyper::body::Frame;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Which objects a watch is about.
#[derive(Debug, Clone)]
pub(super) struct WatchFilter {
    pub resource: &'static ResourceType,
    pub namespace: Option<String>,
    pub selectors: Selectors,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum WatchStart {
    /// `resourceVersion` unset or "0", or `sendInitialEvents=true`: a
    /// synthetic ADDED for every matching object, then what comes.
    CurrentState,
    /// `sendInitialEvents=false` without a version: only what comes.
    Now,
    /// Resuming: every change after this version, then what comes.
    After(u64),
}

pub(super) struct WatchRequest {
    pub filter: WatchFilter,
    pub start: WatchStart,
    pub bookmarks: bool,
    /// Ends the initial state with a bookmark annotated
    /// `k8s.io/initial-events-end` (streaming lists).
    pub send_initial_events: bool,
}

/// One open watch, fed by the store under its lock, so that no change falls
/// between the replay and the live stream.
pub(super) struct Subscription {
    pub id: u64,
    filter: WatchFilter,
    bookmarks: bool,
    sender: mpsc::UnboundedSender<Bytes>,
}

// === impl WatchFilter ===

impl WatchFilter {
    fn matches(&self, object: &Value) -> bool {
        let namespace = object["metadata"]["namespace"].as_str();
        self.namespace
            .as_deref()
            .is_none_or(|ns| namespace == Some(ns))
            && self.selectors.matches(object)
    }

    /// The event this watch sees for `change`, if any: a change that makes
    /// an object stop matching is a DELETED, one that makes it start is an
    /// ADDED (`cacheWatcher.convertToWatchEvent`).
    fn event_for(&self, change: &Change) -> Option<Bytes> {
        if change.resource.plural != self.resource.plural {
            return None;
        }
        let matches_now = change.change_type != ChangeType::Deleted && self.matches(&change.object);
        let matched_before = change.previous.as_ref().is_some_and(|p| self.matches(p));
        match (matched_before, matches_now) {
            (false, false) => None,
            (false, true) => Some(event_line("ADDED", &change.object)),
            (true, true) => Some(event_line("MODIFIED", &change.object)),
            (true, false) => {
                let mut last_seen = change.previous.clone()?;
                last_seen["metadata"]["resourceVersion"] =
                    json!(change.resource_version.to_string());
                Some(event_line("DELETED", &last_seen))
            }
        }
    }
}

// === impl Subscription ===

impl Subscription {
    /// Sends what this watch sees of `change`; false once its reader is gone.
    pub fn offer(&self, change: &Change) -> bool {
        match self.filter.event_for(change) {
            Some(line) => self.sender.send(line).is_ok(),
            None => !self.sender.is_closed(),
        }
    }
}

// === impl Store (watches) ===

impl Store {
    /// Opens a watch: queues what it should replay, then registers it for
    /// what comes. Returns its id (none when it was refused with 410) and the
    /// receiving end of its events.
    pub fn open_watch(
        &mut self,
        request: WatchRequest,
    ) -> (Option<u64>, mpsc::UnboundedReceiver<Bytes>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let filter = request.filter;
        match request.start {
            WatchStart::After(version) if version < self.oldest_resumable => {
                let expired = ApiError::expired(version, self.oldest_resumable);
                let _ = sender.send(event_line("ERROR", &expired.to_status()));
                // Dropping the sender ends the stream after the error, as
                // the API server closes it.
                return (None, receiver);
            }
            WatchStart::After(version) => {
                let missed = self.history.iter().filter(|c| c.resource_version > version);
                for line in missed.filter_map(|change| filter.event_for(change)) {
                    let _ = sender.send(line);
                }
            }
            WatchStart::CurrentState => {
                let current = self.list(
                    filter.resource,
                    filter.namespace.as_deref(),
                    &filter.selectors,
                );
                for object in current {
                    let _ = sender.send(event_line("ADDED", &object));
                }
            }
            WatchStart::Now => {}
        }
        if request.send_initial_events && request.bookmarks {
            let _ = sender.send(bookmark_line(filter.resource, self.resource_version, true));
        }
        let id = self.next_watch_id;
        self.next_watch_id += 1;
        self.watches.push(Subscription {
            id,
            filter,
            bookmarks: request.bookmarks,
            sender,
        });
        (Some(id), receiver)
    }

    pub fn close_watch(&mut self, id: u64) {
        self.watches.retain(|watch| watch.id != id);
    }

    /// A BOOKMARK at the current version to every watch that allows them.
    pub fn bookmark_all(&mut self) {
        let version = self.resource_version;
        self.watches.retain(|watch| {
            if !watch.bookmarks {
                return !watch.sender.is_closed();
            }
            let line = bookmark_line(watch.filter.resource, version, false);
            watch.sender.send(line).is_ok()
        });
    }
}

/// `{"type":"...","object":{...}}` and a newline: one watch event.
fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_line(resource: &ResourceType, version: u64, initial_events_end: bool) -> Bytes {
    let mut object = json!({
        "kind": resource.kind,
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": version.to_string()},
    });
    if initial_events_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line("BOOKMARK", &object)
}

/// The body of a watch response: events as they are queued, until
/// `timeoutSeconds` passes. Dropping it (the connection closed, or the
/// server stopped) closes the watch.
pub(super) struct WatchBody {
    events: mpsc::UnboundedReceiver<Bytes>,
    timeout: Pin<Box<tokio::time::Sleep>>,
    shared: Arc<Shared>,
    id: Option<u64>,
}

// === impl WatchBody ===

impl WatchBody {
    pub fn new(
        shared: Arc<Shared>,
        id: Option<u64>,
        events: mpsc::UnboundedReceiver<Bytes>,
        timeout: std::time::Duration,
    ) -> WatchBody {
        WatchBody {
            events,
            timeout: Box::pin(tokio::time::sleep(timeout)),
            shared,
            id,
        }
    }
}

impl hyper::body::Body for WatchBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Poll::Ready(line) = self.events.poll_recv(cx) {
            return Poll::Ready(line.map(|line| Ok(Frame::data(line))));
        }
        self.timeout.as_mut().poll(cx).map(|()| None)
    }
}

impl Drop for WatchBody {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            lock(&self.shared.store).close_watch(id);
        }
    }
}
