//! Admission of requests to the pods of one service.
//!
//! A request gets a [`Lease`] on a pod with a free slot at once, or waits in a
//! bounded FIFO queue until one frees (HAProxy's `maxconn` with a queue). A
//! freed slot goes straight to the oldest waiter, so nobody is overtaken. The
//! same queue holds requests while a service has no pod at all.
//!
//! All decisions happen under one short lock per service; the counts are also
//! kept in atomics so metrics and status read them without the lock.

use super::meter::{Meter, Reading};
use super::{pick, Lease, Pod, Slot};
use http::uri::Authority;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("the queue is full")]
    QueueFull,
    #[error("timed out waiting in the queue")]
    QueueTimeout,
    #[error("timed out waiting for the service's first pod")]
    ActivationTimeout,
}

#[derive(Debug)]
pub struct Dispatcher {
    state: Mutex<State>,
    /// Leases outstanding: requests at a pod whose response has not ended.
    in_flight: AtomicUsize,
    /// Requests waiting in the queue.
    queued: AtomicUsize,
    /// Requests waiting while the service had no pod (the activator's hold).
    held: AtomicUsize,
    /// Load over time, for the autoscaler.
    meter: Mutex<Meter>,
    /// Signalled when a request arrives and there is no pod to serve it.
    activation: Notify,
    /// How many pods are in the balancer, for those who wait for a change.
    pod_count: watch::Sender<usize>,
}

#[derive(Debug)]
struct State {
    pods: Vec<Arc<Pod>>,
    waiters: VecDeque<oneshot::Sender<Arc<Pod>>>,
    /// containerConcurrency: 0 = unlimited.
    limit: usize,
    queue_depth: usize,
    rng: fastrand::Rng,
    picks: u64,
    /// With `podMetrics`: how old a model server's reading may be and still
    /// be used for picking. `None`: pods are picked by in-flight count only.
    stale_after: Option<Duration>,
}

/// A place in the queue. Dropping it (timeout, or the client went away) leaves
/// the queue; a slot handed over at that very moment is passed on, not lost.
struct Waiting<'a> {
    dispatcher: &'a Arc<Dispatcher>,
    rx: oneshot::Receiver<Arc<Pod>>,
    held: bool,
}

// === impl Dispatcher ===

impl Dispatcher {
    pub fn new(limit: usize, queue_depth: usize, rng: fastrand::Rng) -> Arc<Self> {
        Arc::new(Dispatcher {
            state: Mutex::new(State {
                pods: Vec::new(),
                waiters: VecDeque::new(),
                limit,
                queue_depth,
                rng,
                picks: 0,
                stale_after: None,
            }),
            in_flight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            meter: Mutex::new(Meter::new(Instant::now())),
            activation: Notify::new(),
            pod_count: watch::channel(0).0,
        })
    }

    /// Admits a request to a pod, waiting in the queue for at most `timeout`
    /// (`hold_timeout` when the service has no pod at all and the request is
    /// held for activation). `avoid` names a pod to take only if no other has
    /// a free slot.
    pub async fn admit(
        self: &Arc<Self>,
        avoid: Option<&Pod>,
        timeout: Duration,
        hold_timeout: Duration,
    ) -> Result<Lease, AdmitError> {
        let started = Instant::now();
        if avoid.is_none() {
            // A retry (with a pod to avoid) is the same request arriving once.
            self.meter().arrive();
        }
        let (rx, held, first_held) = {
            let mut state = self.lock();
            state.drop_gone_waiters();
            if state.waiters.is_empty() {
                if let Some(pod) = state.take_slot(avoid) {
                    return Ok(Lease::new(self.clone(), pod));
                }
            }
            if state.waiters.len() >= state.queue_depth {
                state.waiters.retain(|tx| !tx.is_closed());
                if state.waiters.len() >= state.queue_depth {
                    return Err(AdmitError::QueueFull);
                }
            }
            let (tx, rx) = oneshot::channel();
            state.waiters.push_back(tx);
            let held = state.pods.is_empty();
            self.queued.fetch_add(1, Ordering::Relaxed);
            // Under the lock: of the requests held together, one is first.
            let first_held = held && self.held.fetch_add(1, Ordering::Relaxed) == 0;
            if held {
                self.activation.notify_one();
            }
            self.meter().up(started);
            (rx, held, first_held)
        };
        let mut waiting = Waiting {
            dispatcher: self,
            rx,
            held,
        };
        let timeout = if held { hold_timeout } else { timeout };
        match tokio::time::timeout(timeout, &mut waiting.rx).await {
            Ok(Ok(pod)) => {
                let mut lease = Lease::new(self.clone(), pod);
                if held {
                    lease.held_for = Some(started.elapsed());
                    lease.cold_start = first_held;
                } else {
                    lease.queued_for = Some(started.elapsed());
                }
                Ok(lease)
            }
            // The sender is dropped only if the dispatcher goes away.
            Ok(Err(_)) | Err(_) if held => Err(AdmitError::ActivationTimeout),
            Ok(Err(_)) | Err(_) => Err(AdmitError::QueueTimeout),
        }
    }

    /// Replaces the set of pods. Pods that remain keep their counts; removed
    /// ones finish their requests and get no new ones; waiters get new slots.
    pub fn set_pods(&self, addrs: &[Authority]) {
        let mut state = self.lock();
        let old = std::mem::take(&mut state.pods);
        let mut next = Vec::with_capacity(addrs.len());
        for addr in addrs {
            match old.iter().find(|p| p.authority() == addr) {
                Some(pod) => next.push(pod.clone()),
                None => next.push(Arc::new(Pod::new(addr.clone()))),
            }
        }
        for pod in &old {
            if !next.iter().any(|p| Arc::ptr_eq(p, pod)) {
                pod.retired.store(true, Ordering::Relaxed);
            }
        }
        state.pods = next;
        self.count_pods(&state);
        state.serve_waiters();
    }

    /// Changes each time the number of pods in the balancer does.
    pub fn watch_pod_count(&self) -> watch::Receiver<usize> {
        self.pod_count.subscribe()
    }

    fn count_pods(&self, state: &State) {
        let count = state.pods.len();
        self.pod_count.send_if_modified(|last| {
            let changed = *last != count;
            *last = count;
            changed
        });
    }

    /// Changes containerConcurrency and the queue depth in place.
    pub fn set_limits(&self, limit: usize, queue_depth: usize) {
        let mut state = self.lock();
        state.limit = limit;
        state.queue_depth = queue_depth;
        state.serve_waiters();
    }

    /// Picks by what the model servers report while their readings are
    /// younger than `stale_after`; `None`: by in-flight count only.
    pub fn set_stale_after(&self, stale_after: Option<Duration>) {
        self.lock().stale_after = stale_after;
    }

    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.lock().pods.clone()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Requests held because the service had no pod when they arrived.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The load (in flight plus queued) since the previous reading.
    pub fn read_load(&self) -> Reading {
        self.meter().read(Instant::now())
    }

    /// Cumulative load: (seconds since start, request-seconds, arrivals).
    pub fn load_totals(&self) -> (f64, f64, u64) {
        self.meter().totals(Instant::now())
    }

    /// Requests in flight plus queued, now.
    pub fn load(&self) -> usize {
        self.meter().level()
    }

    /// Resolves when a request is held for want of any pod.
    pub async fn activation_requested(&self) {
        self.activation.notified().await
    }

    /// Adds one pod (an actuator's replica that became ready) and serves
    /// waiters from it.
    pub fn add_pod(&self, authority: Authority) -> Arc<Pod> {
        let mut state = self.lock();
        let pod = Arc::new(Pod::new(authority));
        state.pods.push(pod.clone());
        self.count_pods(&state);
        state.serve_waiters();
        pod
    }

    /// Stops sending new requests to `pod`; those in flight finish.
    pub fn remove_pod(&self, pod: &Arc<Pod>) {
        let mut state = self.lock();
        pod.retired.store(true, Ordering::Relaxed);
        state.pods.retain(|p| !Arc::ptr_eq(p, pod));
        self.count_pods(&state);
    }

    pub(super) fn lease_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.meter().up(Instant::now());
    }

    pub(super) fn lease_ended(&self, pod: &Arc<Pod>) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.meter().down(Instant::now());
        self.free_slot(pod);
    }

    fn meter(&self) -> MutexGuard<'_, Meter> {
        self.meter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives back a slot on `pod` and hands it to the oldest waiter.
    fn free_slot(&self, pod: &Arc<Pod>) {
        let mut state = self.lock();
        pod.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !pod.is_retired() {
            state.hand_over(pod);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the counts half-updated: every
        // critical section is a handful of integer updates.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl State ===

impl State {
    fn has_capacity(&self, pod: &Pod) -> bool {
        self.limit == 0 || pod.in_flight() < self.limit
    }

    /// Picks a pod with a free slot and takes the slot.
    fn take_slot(&mut self, avoid: Option<&Pod>) -> Option<Arc<Pod>> {
        let pods = &self.pods;
        let stale_after = self.stale_after;
        // The clock is read only for services that have readings to age.
        let now = stale_after.map(|_| Instant::now());
        let slot = |i: usize| Slot {
            in_flight: pods[i].in_flight(),
            last_pick: pods[i].last_pick.load(Ordering::Relaxed),
            avoid: avoid.is_some_and(|a| std::ptr::eq(a, &*pods[i])),
            server: now
                .zip(stale_after)
                .and_then(|(now, s)| pods[i].server_view(now, s)),
        };
        let i = pick(pods.len(), slot, self.limit, &mut self.rng)?;
        self.picks += 1;
        let pod = self.pods[i].clone();
        pod.last_pick.store(self.picks, Ordering::Relaxed);
        pod.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(pod)
    }

    /// Hands a freed slot on `pod` to the oldest live waiter, if any.
    fn hand_over(&mut self, pod: &Arc<Pod>) {
        while self.has_capacity(pod) {
            let Some(tx) = self.waiters.pop_front() else {
                return;
            };
            pod.in_flight.fetch_add(1, Ordering::Relaxed);
            if tx.send(pod.clone()).is_err() {
                // That waiter left; the slot goes to the next one.
                pod.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Serves waiters from any pod with capacity (new pods, higher limits).
    fn serve_waiters(&mut self) {
        loop {
            self.drop_gone_waiters();
            if self.waiters.is_empty() {
                return;
            }
            let Some(pod) = self.take_slot(None) else {
                return;
            };
            let tx = self.waiters.pop_front().expect("checked non-empty");
            if tx.send(pod.clone()).is_err() {
                pod.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn drop_gone_waiters(&mut self) {
        while self.waiters.front().is_some_and(|tx| tx.is_closed()) {
            self.waiters.pop_front();
        }
    }
}

// === impl Waiting ===

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.dispatcher.queued.fetch_sub(1, Ordering::Relaxed);
        if self.held {
            self.dispatcher.held.fetch_sub(1, Ordering::Relaxed);
        }
        self.dispatcher.meter().down(Instant::now());
        self.rx.close();
        // A slot sent after we stopped listening but before close() is ours
        // to give back; otherwise it would stay taken for ever.
        if let Ok(pod) = self.rx.try_recv() {
            self.dispatcher.free_slot(&pod);
        }
    }
}
