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

/// Services with at most this many pods compare them all.
pub const EXACT_UP_TO: usize = 16;

/// What the balancer sees of one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub in_flight: usize,
    pub last_pick: u64,
    pub avoid: bool,
}

/// Picks a pod index among `n` pods, or `None` when none has capacity.
/// `limit` 0 means unlimited.
pub fn pick(
    n: usize,
    slot: impl Fn(usize) -> Slot,
    limit: usize,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let has_capacity = |s: &Slot| limit == 0 || s.in_flight < limit;
    let score = |s: &Slot| (s.avoid, s.in_flight, s.last_pick);
    let better = |a: usize, b: usize| {
        let (sa, sb) = (slot(a), slot(b));
        match (has_capacity(&sa), has_capacity(&sb)) {
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => None,
            (true, true) if score(&sb) < score(&sa) => Some(b),
            (true, true) => Some(a),
        }
    };
    let best_of_all = || {
        let mut best: Option<(usize, (bool, usize, u64))> = None;
        for i in 0..n {
            let s = slot(i);
            let key = score(&s);
            if has_capacity(&s) && best.is_none_or(|(_, b)| key < b) {
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
}
