//! Reading the load from the pods' sidecars, which see the traffic of every
//! gateway (and of clients that call the pods directly).
//!
//! Every second the autoscaler asks a sample of the ready pods for their
//! last second's load, concurrently and with a short timeout, and
//! extrapolates the sample's mean to all pods. The sample size follows
//! Knative: n = N·X / (N + X − 1) with X = 1.96²·100 / 5², all pods when
//! N <= 3. A pod that cannot be read counts as in Kubernetes' HPA: at the
//! target when the others are below it (so a lost report never scales
//! down), idle when they are above it (so it never scales up).

use crate::config::ScaleMetric;
use crate::pods::Pod;
use crate::probe::ProbeClient;
use crate::sidecar::LoadReport;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// Longest a pod's report may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(500);

/// The load of all pods together, estimated from a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodsLoad {
    pub concurrency: f64,
    pub rps: f64,
}

/// How many of `population` pods to read.
pub fn sample_size(population: usize) -> usize {
    if population <= 3 {
        return population;
    }
    let x = 1.96 * 1.96 * 100.0 / (5.0 * 5.0);
    let n = population as f64;
    ((n * x / (n + x - 1.0)).ceil() as usize).min(population)
}

/// Extrapolates the reports of a sample (`None`: the pod could not be read)
/// to `population` pods. `None` when no pod could be read.
pub fn estimate(
    reports: &[Option<LoadReport>],
    population: usize,
    metric: ScaleMetric,
    target: f64,
) -> Option<PodsLoad> {
    let read: Vec<&LoadReport> = reports.iter().flatten().collect();
    if read.is_empty() {
        return (population == 0).then_some(PodsLoad {
            concurrency: 0.0,
            rps: 0.0,
        });
    }
    let missing = (reports.len() - read.len()) as f64;
    let mean =
        |f: fn(&LoadReport) -> f64| read.iter().map(|r| f(r)).sum::<f64>() / read.len() as f64;
    let (mut concurrency, mut rps) = (mean(|r| r.concurrency), mean(|r| r.rps));
    if missing > 0.0 {
        let observed = match metric {
            ScaleMetric::Concurrency => concurrency,
            ScaleMetric::Rps => rps,
        };
        // Below target: the missing pods are assumed at target; above: idle.
        let assumed = if observed < target { target } else { 0.0 };
        let blend = |mean: f64, assumed: f64| {
            (mean * read.len() as f64 + assumed * missing) / reports.len() as f64
        };
        match metric {
            ScaleMetric::Concurrency => concurrency = blend(concurrency, assumed),
            ScaleMetric::Rps => rps = blend(rps, assumed),
        }
    }
    let n = population as f64;
    Some(PodsLoad {
        concurrency: concurrency * n,
        rps: rps * n,
    })
}

/// Reads a sample of `pods` (those with a sidecar address) concurrently.
pub async fn scrape(
    pods: &[Arc<Pod>],
    client: &ProbeClient,
    rng: &mut fastrand::Rng,
    metric: ScaleMetric,
    target: f64,
) -> Option<PodsLoad> {
    let mut sample: Vec<&Arc<Pod>> = pods.iter().collect();
    rng.shuffle(&mut sample);
    sample.truncate(sample_size(pods.len()));
    let reads = sample.iter().map(|pod| read(client, pod));
    let reports = futures_util::future::join_all(reads).await;
    estimate(&reports, pods.len(), metric, target)
}

async fn read(client: &ProbeClient, pod: &Pod) -> Option<LoadReport> {
    let uri: http::Uri = format!("http://{}/stats", pod.stats_addr()?).parse().ok()?;
    let attempt = async {
        let response = client.get(uri).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice::<LoadReport>(&body).ok()
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(concurrency: f64) -> Option<LoadReport> {
        Some(LoadReport {
            concurrency,
            rps: concurrency * 10.0,
            ..LoadReport::default()
        })
    }

    #[test]
    fn sample_sizes_follow_knative() {
        assert_eq!(sample_size(0), 0);
        assert_eq!(sample_size(3), 3);
        assert_eq!(sample_size(5), 4);
        assert_eq!(sample_size(10), 7);
        assert_eq!(sample_size(100), 14);
        assert_eq!(sample_size(1000), 16);
    }

    #[test]
    fn the_sample_mean_is_extrapolated() {
        let load = estimate(
            &[report(2.0), report(4.0)],
            10,
            ScaleMetric::Concurrency,
            1.0,
        )
        .unwrap();
        assert_eq!(load.concurrency, 30.0);
        assert_eq!(load.rps, 300.0);
        assert_eq!(
            estimate(&[], 0, ScaleMetric::Concurrency, 1.0)
                .unwrap()
                .concurrency,
            0.0
        );
        assert_eq!(
            estimate(&[None, None], 2, ScaleMetric::Concurrency, 1.0),
            None
        );
    }

    #[test]
    fn an_unread_pod_never_causes_a_scale_down_or_up() {
        // The others are idle: the missing one counts at target (1).
        let load = estimate(&[report(0.0), None], 2, ScaleMetric::Concurrency, 1.0).unwrap();
        assert_eq!(load.concurrency, 1.0);
        // The others are busy: the missing one counts as idle.
        let load = estimate(&[report(3.0), None], 2, ScaleMetric::Concurrency, 1.0).unwrap();
        assert_eq!(load.concurrency, 3.0);
    }
}
