//! Power of two choices over pods with capacity.
//!
//! Two distinct pods are drawn at random and the less loaded wins; on equal
//! load, the one picked less recently wins, which spreads sequential traffic
//! evenly instead of leaving it to chance. If neither of the two has capacity
//! (`containerConcurrency` reached), every pod is scanned for the best one that
//! has. A pod to `avoid` (one that just refused a connection) is taken only if
//! no other pod has capacity. The RNG is passed in so that a test replays exactly.

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
    let chosen = match n {
        0 => return None,
        1 => has_capacity(&slot(0)).then_some(0),
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
        _ => (0..n)
            .filter(|&i| has_capacity(&slot(i)))
            .min_by_key(|&i| score(&slot(i))),
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
