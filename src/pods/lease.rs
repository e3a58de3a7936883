//! A request's hold on one slot of one pod, given back when dropped.

use super::{Dispatcher, Pod};
use std::sync::Arc;

/// Held from admission until the response body ends (or the client goes
/// away); dropping it frees the pod's slot for the next waiter. Because it is
/// a drop guard, no error path can leak a slot.
#[derive(Debug)]
pub struct Lease {
    dispatcher: Arc<Dispatcher>,
    pod: Arc<Pod>,
    /// How long the request was held for activation (no pod at arrival).
    pub(super) held_for: Option<std::time::Duration>,
    /// The request was the first held while the service had no pod: the
    /// one whose wait is the cold start.
    pub(super) cold_start: bool,
    /// How long the request waited in the queue for a free slot.
    pub(super) queued_for: Option<std::time::Duration>,
}

impl Lease {
    /// The pod's slot has already been taken under the dispatcher's lock.
    pub(super) fn new(dispatcher: Arc<Dispatcher>, pod: Arc<Pod>) -> Self {
        dispatcher.lease_started();
        pod.admitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Lease {
            dispatcher,
            pod,
            held_for: None,
            cold_start: false,
            queued_for: None,
        }
    }

    pub fn pod(&self) -> &Arc<Pod> {
        &self.pod
    }

    /// Set when the request waited for the service's first pod (a cold start).
    pub fn held_for(&self) -> Option<std::time::Duration> {
        self.held_for
    }

    /// Whether this request found the service at zero, first of those held.
    pub fn is_cold_start(&self) -> bool {
        self.cold_start
    }

    /// Set when the request waited in the queue for a slot of a running service.
    pub fn queued_for(&self) -> Option<std::time::Duration> {
        self.queued_for
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.dispatcher.lease_ended(&self.pod);
    }
}

#[cfg(test)]
mod tests {
    use crate::pods::{AdmitError, Dispatcher};
    use http::uri::Authority;
    use std::time::Duration;

    fn pods(n: usize) -> Vec<Authority> {
        (0..n)
            .map(|i| format!("127.0.0.1:{}", 9000 + i).parse().unwrap())
            .collect()
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_limit_queues_the_excess_and_serves_it_oldest_first() {
        let d = Dispatcher::new(1, 10, fastrand::Rng::with_seed(1));
        d.set_pods(&pods(2));
        let a = d.admit(None, LONG, LONG).await.unwrap();
        let b = d.admit(None, LONG, LONG).await.unwrap();
        assert_ne!(a.pod().addr(), b.pod().addr());

        let first = tokio::spawn({
            let d = d.clone();
            async move { d.admit(None, LONG, LONG).await }
        });
        tokio::task::yield_now().await;
        let second = tokio::spawn({
            let d = d.clone();
            async move { d.admit(None, LONG, LONG).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(d.queued(), 2);

        let freed = b.pod().addr().to_string();
        drop(b);
        let first = first.await.unwrap().unwrap();
        assert_eq!(
            first.pod().addr(),
            freed,
            "the freed slot goes to the oldest waiter"
        );
        assert!(!second.is_finished());
        drop(a);
        let second = second.await.unwrap().unwrap();
        assert_eq!(d.queued(), 0);
        assert_eq!(d.in_flight(), 2);
        for pod in d.pods() {
            assert_eq!(pod.in_flight(), 1);
        }
        drop((first, second));
        assert_eq!(d.in_flight(), 0);
        assert!(d.pods().iter().all(|p| p.in_flight() == 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_at_once_and_a_wait_times_out() {
        let d = Dispatcher::new(1, 1, fastrand::Rng::with_seed(1));
        d.set_pods(&pods(1));
        let _held = d.admit(None, LONG, LONG).await.unwrap();
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.admit(None, Duration::from_secs(5), LONG).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            d.admit(None, LONG, LONG).await.unwrap_err(),
            AdmitError::QueueFull
        );
        assert_eq!(waiter.await.unwrap().unwrap_err(), AdmitError::QueueTimeout);
        assert_eq!(d.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_leaves_frees_its_place() {
        let d = Dispatcher::new(1, 1, fastrand::Rng::with_seed(1));
        d.set_pods(&pods(1));
        let held = d.admit(None, LONG, LONG).await.unwrap();
        let gone = tokio::spawn({
            let d = d.clone();
            async move { d.admit(None, LONG, LONG).await }
        });
        tokio::task::yield_now().await;
        gone.abort();
        let _ = gone.await;
        assert_eq!(d.queued(), 0);
        // The queue (depth 1) has room again, and the slot is not lost.
        let next = tokio::spawn({
            let d = d.clone();
            async move { d.admit(None, LONG, LONG).await }
        });
        tokio::task::yield_now().await;
        drop(held);
        let next = next.await.unwrap().unwrap();
        assert_eq!(next.pod().in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_for_a_first_pod_and_new_pods_serve_them() {
        let d = Dispatcher::new(0, 10, fastrand::Rng::with_seed(1));
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.admit(None, LONG, LONG).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(d.queued(), 1);
        assert_eq!(d.held(), 1, "no pod: the request is held for activation");
        tokio::time::advance(Duration::from_millis(250)).await;
        d.set_pods(&pods(1));
        let lease = waiter.await.unwrap().unwrap();
        assert_eq!(lease.pod().addr(), "127.0.0.1:9000");
        assert_eq!(lease.held_for(), Some(Duration::from_millis(250)));
        assert_eq!(d.held(), 0);
        // With a pod, a request is not held.
        assert_eq!(d.admit(None, LONG, LONG).await.unwrap().held_for(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn of_the_requests_held_at_zero_the_first_is_the_cold_start() {
        let d = Dispatcher::new(0, 10, fastrand::Rng::with_seed(1));
        let mut waiters = Vec::new();
        for _ in 0..3 {
            waiters.push(tokio::spawn({
                let d = d.clone();
                async move { d.admit(None, LONG, LONG).await }
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(d.held(), 3);
        d.set_pods(&pods(1));
        let mut cold = Vec::new();
        for waiter in waiters {
            cold.push(waiter.await.unwrap().unwrap().is_cold_start());
        }
        assert_eq!(cold, [true, false, false]);
        assert!(!d.admit(None, LONG, LONG).await.unwrap().is_cold_start());
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_request_times_out_with_the_activation_timeout() {
        let d = Dispatcher::new(0, 10, fastrand::Rng::with_seed(1));
        let started = tokio::time::Instant::now();
        let e = d
            .admit(None, LONG, Duration::from_secs(3))
            .await
            .unwrap_err();
        assert_eq!(e, AdmitError::ActivationTimeout);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!((d.queued(), d.held()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn pods_that_remain_keep_their_counts_and_removed_ones_drain() {
        let d = Dispatcher::new(0, 10, fastrand::Rng::with_seed(1));
        d.set_pods(&pods(2));
        let mut leases = Vec::new();
        for _ in 0..4 {
            leases.push(d.admit(None, LONG, LONG).await.unwrap());
        }
        let all = pods(3);
        d.set_pods(&all[1..]);
        let kept = d.pods();
        assert_eq!(kept[0].in_flight(), 2, "pod 9001 keeps its count");
        assert_eq!(kept[1].in_flight(), 0);
        let removed = leases
            .iter()
            .find(|l| l.pod().addr() == "127.0.0.1:9000")
            .unwrap()
            .pod()
            .clone();
        assert!(removed.is_retired());
        for _ in 0..10 {
            let l = d.admit(None, LONG, LONG).await.unwrap();
            assert_ne!(l.pod().addr(), "127.0.0.1:9000");
        }
        leases.clear();
        assert_eq!(removed.in_flight(), 0);
    }
}
