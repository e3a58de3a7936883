//! `scaleMetric: queue`: the service's load as its model servers count it,
//! requests running in their batches and waiting in their own queues. A
//! language model's server takes many requests at once and queues the rest
//! itself, so sluice's in-flight count says little about how busy it is;
//! the server's own queue does.

use crate::pods::server_load::ServerLoad;
use crate::pods::Pod;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One ready pod, as the queue metric sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PodQueue {
    /// Its server's reading, if fresh.
    pub reported: Option<ServerLoad>,
    /// Requests sluice has at the pod now.
    pub in_flight: usize,
}

/// The observed queue: running plus waiting at every pod with a fresh
/// reading, sluice's own in-flight count at a pod without one (a pod that
/// cannot be read still has the requests sluice sent it), and `queued`,
/// the requests waiting in sluice for a pod, which no server has seen yet.
pub fn observed_queue(pods: &[PodQueue], queued: usize) -> f64 {
    let at_pods: f64 = pods
        .iter()
        .map(|pod| match pod.reported {
            Some(load) => load.running + load.waiting,
            None => pod.in_flight as f64,
        })
        .sum();
    at_pods + queued as f64
}

/// What each of `pods` reports at `now`.
pub fn pod_queues(pods: &[Arc<Pod>], now: Instant, stale_after: Duration) -> Vec<PodQueue> {
    pods.iter()
        .map(|pod| PodQueue {
            reported: pod
                .server_report()
                .filter(|r| r.is_fresh(now, stale_after))
                .map(|r| r.load),
            in_flight: pod.in_flight(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::server_load::ServerReport;

    fn reported(running: f64, waiting: f64, in_flight: usize) -> PodQueue {
        PodQueue {
            reported: Some(ServerLoad {
                running,
                waiting,
                kv_cache_usage: 0.9,
            }),
            in_flight,
        }
    }

    fn unread(in_flight: usize) -> PodQueue {
        PodQueue {
            reported: None,
            in_flight,
        }
    }

    #[test]
    fn the_queue_is_what_the_servers_report_or_else_what_sluice_sent() {
        let cases: &[(&str, Vec<PodQueue>, usize, f64)] = &[
            ("no pods, nothing queued", vec![], 0, 0.0),
            ("no pods, held requests", vec![], 3, 3.0),
            (
                "servers report running and waiting; sluice's count is ignored",
                vec![reported(4.0, 6.0, 1), reported(2.0, 0.0, 1)],
                0,
                12.0,
            ),
            (
                "a pod without a fresh reading counts sluice's in-flight",
                vec![reported(4.0, 6.0, 1), unread(5)],
                0,
                15.0,
            ),
            (
                "every pod unread: sluice's counts",
                vec![unread(2), unread(3)],
                1,
                6.0,
            ),
            (
                "requests waiting in sluice are added",
                vec![reported(8.0, 2.0, 8)],
                4,
                14.0,
            ),
        ];
        for (what, pods, queued, want) in cases {
            assert_eq!(observed_queue(pods, *queued), *want, "{what}");
        }
    }

    #[test]
    fn a_stale_reading_is_not_used() {
        let pod = Arc::new(Pod::new("127.0.0.1:1".parse().unwrap()));
        let t0 = Instant::now();
        pod.set_server_report(ServerReport {
            load: ServerLoad {
                running: 2.0,
                waiting: 3.0,
                kv_cache_usage: 0.1,
            },
            at: t0,
            admitted: 0,
        });
        let stale_after = Duration::from_millis(500);
        let fresh = pod_queues(std::slice::from_ref(&pod), t0, stale_after);
        assert_eq!(observed_queue(&fresh, 0), 5.0);
        let later = t0 + Duration::from_secs(1);
        let stale = pod_queues(std::slice::from_ref(&pod), later, stale_after);
        assert_eq!(stale[0].reported, None);
        assert_eq!(observed_queue(&stale, 0), 0.0, "no request in flight");
    }
}
