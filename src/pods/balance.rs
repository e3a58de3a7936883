//! Least loaded over pods with capacity: exactly for a few pods, by power of
//! two choices for many.
//!
//! With up to [`EXACT_UP_TO`] pods every pod is compared: model services run
//! a handful of replicas at about one request each, where two random picks
//! often both land on busy replicas while another sits idle (measured by
//! benches/tutorial.sh: a fifth of the requests queued behind another). Past
//! that, two distinct pods are drawn at random and the less loaded wins, which
//! keeps the pick O(1). On equal load the pod picked less recently wins, which
//! spreads sequential traffic evenly instead of leaving it to chance. If
//! neither random pod has capacity (`containerConcurrency` reached), every pod
//! is scanned for the best one that has. A pod to `avoid` (one that just
//! refused a connection) is taken only if no other pod has capacity. The RNG is
//! passed in so that a test replays exactly.
//!
//! Load is what the model servers say (`podMetrics`) when every pod compared
//! has a fresh reading: the shorter server queue wins (waiting, plus what
//! sluice sent since the reading), then the emptier KV cache, then sluice's
//! own in-flight count. When any of them has none, all are compared by
//! in-flight count alone: a queue length and an in-flight count are not on
//! one scale, and a pod without a reading would otherwise win or lose every
//! comparison for want of a number. `containerConcurrency` is a hard limit
//! either way.

use super::server_load::ServerView;
use std::cmp::Ordering;

/// Services with at most this many pods compare them all.
pub const EXACT_UP_TO: usize = 16;

/// What the balancer sees of one pod.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    pub in_flight: usize,
    pub last_pick: u64,
    pub avoid: bool,
    /// Its model server's load, if read recently enough.
    pub server: Option<ServerView>,
}

/// The order of preference: lower is better.
type Score = (bool, Level, Level, usize, u64);

/// A finite, non-negative reading, ordered totally so it can sit in a key.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Level(f64);

/// Picks a pod index among `n` pods, or `None` when none has capacity.
/// `limit` 0 means unlimited.
pub fn pick(
    n: usize,
    slot: impl Fn(usize) -> Slot,
    limit: usize,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let has_capacity = |s: &Slot| limit == 0 || s.in_flight < limit;
    let better = |a: usize, b: usize| {
        let (sa, sb) = (slot(a), slot(b));
        let by_server = sa.server.is_some() && sb.server.is_some();
        match (has_capacity(&sa), has_capacity(&sb)) {
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => None,
            (true, true) if score(&sb, by_server) < score(&sa, by_server) => Some(b),
            (true, true) => Some(a),
        }
    };
    let best_of_all = || {
        // Full pods are not candidates, so their readings do not matter.
        let by_server = (0..n)
            .map(&slot)
            .filter(has_capacity)
            .all(|s| s.server.is_some());
        let mut best: Option<(usize, Score)> = None;
        for i in 0..n {
            let s = slot(i);
            let key = score(&s, by_server);
            if has_capacity(&s) && best.as_ref().is_none_or(|(_, b)| key < *b) {
                best = Some((i, key));
            }
        }
        best.map(|(i, _)| i)
    };
    let chosen = match n {
        0 => return None,
        1 => has_capacity(&slot(0)).then_some(0),
        _ if n <= EXACT_UP_TO => return best_of_all(),
        _ => {
            let a = rng.usize(..n);
            let mut b = rng.usize(..n - 1);
            if b >= a {
                b += 1;
            }
            better(a, b)
        }
    };
    match chosen {
        Some(i) if !slot(i).avoid => Some(i),
        _ => best_of_all(),
    }
}

/// `by_server`: every pod compared has a fresh reading.
fn score(s: &Slot, by_server: bool) -> Score {
    let (queue, kv) = match s.server {
        Some(server) if by_server => (server.queue, server.kv_cache_usage),
        _ => (0.0, 0.0),
    };
    (s.avoid, Level(queue), Level(kv), s.in_flight, s.last_pick)
}

// === impl Level ===

impl Eq for Level {}

impl PartialOrd for Level {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Level {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(loads: &[usize]) -> Vec<Slot> {
        loads
            .iter()
            .map(|&in_flight| Slot {
                in_flight,
                last_pick: 0,
                avoid: false,
                server: None,
            })
            .collect()
    }

    #[test]
    fn a_few_pods_are_compared_exactly() {
        // Four busy pods and one idle: the idle one, every time.
        let pods = slots(&[1, 1, 1, 0, 1]);
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..100 {
            assert_eq!(pick(5, |i| pods[i], 0, &mut rng), Some(3));
        }
    }

    #[test]
    fn many_pods_use_two_random_choices() {
        // 64 pods, one idle: two random picks rarely include it.
        let mut loads = vec![1usize; 64];
        loads[17] = 0;
        let pods = slots(&loads);
        let mut rng = fastrand::Rng::with_seed(5);
        let idle_picks = (0..1000)
            .filter(|_| pick(64, |i| pods[i], 0, &mut rng) == Some(17))
            .count();
        assert!((10..100).contains(&idle_picks), "{idle_picks}");
    }

    #[test]
    fn the_less_loaded_of_two_wins() {
        let pods = slots(&[5, 0]);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100 {
            assert_eq!(pick(2, |i| pods[i], 0, &mut rng), Some(1));
        }
    }

    #[test]
    fn a_full_pod_is_never_picked() {
        let pods = slots(&[1, 1, 0, 1]);
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..100 {
            assert_eq!(pick(4, |i| pods[i], 1, &mut rng), Some(2));
        }
        let full = slots(&[1, 1]);
        assert_eq!(pick(2, |i| full[i], 1, &mut rng), None);
        assert_eq!(pick(0, |i| full[i], 1, &mut rng), None);
    }

    #[test]
    fn the_avoided_pod_is_a_last_resort() {
        let mut pods = slots(&[0, 3]);
        pods[0].avoid = true;
        let mut rng = fastrand::Rng::with_seed(3);
        assert_eq!(pick(2, |i| pods[i], 0, &mut rng), Some(1));
        // With a limit that the other pod has reached, the avoided one is all there is.
        assert_eq!(pick(2, |i| pods[i], 3, &mut rng), Some(0));
    }

    #[test]
    fn ties_go_to_the_least_recently_picked_so_sequential_load_is_even() {
        let mut pods = slots(&[0, 0, 0]);
        let mut rng = fastrand::Rng::with_seed(42);
        let mut counts = [0usize; 3];
        for seq in 1..=300u64 {
            let i = pick(3, |i| pods[i], 0, &mut rng).unwrap();
            pods[i].last_pick = seq;
            counts[i] += 1;
        }
        for c in counts {
            assert!((80..=120).contains(&c), "{counts:?}");
        }
    }

    /// A pod whose server reported `waiting` and `kv` when it had been sent
    /// `admitted` requests, read `age` ago; stale after 500 ms.
    fn read(in_flight: usize, waiting: f64, kv: f64, age_ms: u64) -> Slot {
        use super::super::server_load::{ServerLoad, ServerReport};
        use std::time::Duration;
        let asked = tokio::time::Instant::now();
        let report = ServerReport {
            load: ServerLoad {
                running: 1.0,
                waiting,
                kv_cache_usage: kv,
            },
            at: asked,
            admitted: 0,
        };
        let now = asked + Duration::from_millis(age_ms);
        Slot {
            in_flight,
            last_pick: 0,
            avoid: false,
            server: ServerView::of(&report, 0, now, Duration::from_millis(500)),
        }
    }

    fn picks(pods: &[Slot], limit: usize) -> Option<usize> {
        let mut rng = fastrand::Rng::with_seed(11);
        pick(pods.len(), |i| pods[i], limit, &mut rng)
    }

    #[test]
    fn the_shorter_server_queue_wins_over_sluices_own_counts() {
        // Equal in sluice's counts: the server with fewer waiting wins.
        assert_eq!(
            picks(&[read(0, 4.0, 0.1, 10), read(0, 1.0, 0.1, 10)], 0),
            Some(1)
        );
        // Even with more of sluice's requests at it: the server says how
        // much of that is still queued.
        assert_eq!(
            picks(&[read(1, 6.0, 0.1, 10), read(3, 0.0, 0.1, 10)], 0),
            Some(1)
        );
    }

    #[test]
    fn the_emptier_kv_cache_breaks_a_tie_of_queues() {
        let pods = [
            read(0, 2.0, 0.9, 10),
            read(0, 2.0, 0.3, 10),
            read(0, 2.0, 0.6, 10),
        ];
        assert_eq!(picks(&pods, 0), Some(1));
    }

    #[test]
    fn requests_sent_since_the_reading_count_in_the_queue() {
        let mut pods = [read(0, 0.0, 0.0, 10), read(0, 1.0, 0.0, 10)];
        // Two sent to pod 0 since its server said it was empty.
        pods[0].server = pods[0].server.map(|v| ServerView {
            queue: v.queue + 2.0,
            ..v
        });
        assert_eq!(picks(&pods, 0), Some(1));
    }

    #[test]
    fn one_stale_or_missing_reading_falls_back_to_in_flight_for_all() {
        // Pod 1's server says it is the shorter queue, but pod 0's reading
        // is 600 ms old: sluice's counts decide, and pod 0 has fewer.
        let stale = [read(0, 9.0, 0.9, 600), read(2, 0.0, 0.0, 10)];
        assert_eq!(stale[0].server, None);
        assert_eq!(picks(&stale, 0), Some(0));
        let never_read = [slots(&[0])[0], read(2, 0.0, 0.0, 10)];
        assert_eq!(picks(&never_read, 0), Some(0));
        // Both fresh: the servers decide.
        assert_eq!(
            picks(&[read(0, 9.0, 0.9, 10), read(2, 0.0, 0.0, 10)], 0),
            Some(1)
        );
    }

    #[test]
    fn a_full_pod_is_never_picked_whatever_its_server_says() {
        let pods = [read(1, 0.0, 0.0, 10), read(0, 7.0, 0.8, 10)];
        assert_eq!(picks(&pods, 1), Some(1));
        let full = [read(1, 0.0, 0.0, 10), read(1, 0.0, 0.0, 10)];
        assert_eq!(picks(&full, 1), None);
        // A full pod's missing reading does not switch the others to
        // in-flight counts: it is not a candidate.
        let pods = [slots(&[1])[0], read(0, 5.0, 0.0, 10), read(0, 1.0, 0.0, 10)];
        assert_eq!(picks(&pods, 1), Some(2));
    }

    #[test]
    fn many_pods_compare_their_pair_by_the_servers_when_both_are_read() {
        // 64 pods, all read, all idle in sluice's counts; half of them
        // report a long queue. Two random choices avoid those nearly
        // always (both drawn from them: a quarter of the time).
        let pods: Vec<Slot> = (0..64)
            .map(|i| read(0, if i % 2 == 0 { 8.0 } else { 0.0 }, 0.0, 10))
            .collect();
        let mut rng = fastrand::Rng::with_seed(5);
        let short = (0..1000)
            .filter(|_| pick(64, |i| pods[i], 0, &mut rng).is_some_and(|i| i % 2 == 1))
            .count();
        assert!((700..820).contains(&short), "{short}");
    }
}
