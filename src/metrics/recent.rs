//! The durations of the requests that ended since the last look, as counts
//! in fixed logarithmic buckets, for the live page's p50 and p99. One
//! relaxed atomic add a request; the sampler takes the counts each second
//! and reads the quantiles off them (to within a bucket, about 15%).

use std::sync::atomic::{AtomicU64, Ordering};

/// Eight buckets a decade from 0.5 ms; the last holds anything slower.
const PER_DECADE: f64 = 8.0;
const SMALLEST: f64 = 0.0005;
const BUCKETS: usize = 56;

#[derive(Debug)]
pub struct RecentDurations {
    counts: [AtomicU64; BUCKETS],
}

impl Default for RecentDurations {
    fn default() -> Self {
        RecentDurations {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl RecentDurations {
    pub fn observe(&self, seconds: f64) {
        self.counts[bucket_of(seconds)].fetch_add(1, Ordering::Relaxed);
    }

    /// The given quantiles (0..=1) of what was observed since the last
    /// call, and starts counting afresh. `None` if nothing was observed.
    pub fn take_quantiles<const N: usize>(&self, quantiles: [f64; N]) -> [Option<f64>; N] {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        quantiles.map(|q| {
            if total == 0 {
                return None;
            }
            let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            counts.iter().enumerate().find_map(|(i, &count)| {
                seen += count;
                (seen >= rank).then(|| upper_bound(i))
            })
        })
    }
}

fn bucket_of(seconds: f64) -> usize {
    if seconds.is_nan() || seconds <= SMALLEST {
        return 0;
    }
    let index = ((seconds / SMALLEST).log10() * PER_DECADE).ceil();
    (index as usize).min(BUCKETS - 1)
}

fn upper_bound(bucket: usize) -> f64 {
    SMALLEST * 10f64.powf(bucket as f64 / PER_DECADE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_within_a_bucket_of_the_truth() {
        let recent = RecentDurations::default();
        for ms in 1..=100 {
            recent.observe(f64::from(ms) / 1000.0);
        }
        let [p50, p99] = recent.take_quantiles([0.5, 0.99]);
        let (p50, p99) = (p50.unwrap(), p99.unwrap());
        assert!((0.050..0.050 * 1.34).contains(&p50), "p50 {p50}");
        assert!((0.099..0.099 * 1.34).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn taking_starts_afresh() {
        let recent = RecentDurations::default();
        recent.observe(0.2);
        assert!(recent.take_quantiles([0.5])[0].is_some());
        assert_eq!(recent.take_quantiles([0.5]), [None]);
    }

    #[test]
    fn absurd_durations_land_in_the_end_buckets() {
        let recent = RecentDurations::default();
        for seconds in [f64::NAN, -1.0, 0.0, 1e12, f64::INFINITY] {
            recent.observe(seconds);
        }
        let [low, high] = recent.take_quantiles([0.0, 1.0]);
        assert_eq!(low, Some(SMALLEST));
        assert_eq!(high, Some(upper_bound(BUCKETS - 1)));
    }
}
