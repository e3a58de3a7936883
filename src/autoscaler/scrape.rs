//! Reading the load from the pods' sidecars, which see the traffic of every
//! gateway (and of clients that call the pods directly).
//!
//! Every second the autoscaler asks a sample of the ready pods for their
//! load, concurrently and with a short timeout, and extrapolates the sample's
//! mean to all pods. A sidecar reports running totals (request-seconds and
//! requests since it started), so the difference between two reports is the
//! exact average over this autoscaler's own interval, aligned across pods and
//! independent of other readers; a pod read for the first time gives its
//! last whole second instead. The sample size follows
//! Knative: n = N·X / (N + X − 1) with X = 1.96²·100 / 5², all pods when
//! N <= 3. A pod that cannot be read counts as in Kubernetes' HPA: at the
//! target when the others are below it (so a lost report never scales
//! down), idle when they are above it (so it never scales up).

use crate::config::ScaleMetric;
use crate::load_report::LoadReport;
use crate::pods::Pod;
use crate::probe::ProbeClient;
use http_body_util::BodyExt;
use std::collections::HashMap;
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
        // With `queue` the model servers are read, not the sidecars: what
        // the sidecars say is only shown, blended as for concurrency.
        let observed = match metric {
            ScaleMetric::Concurrency | ScaleMetric::Queue => concurrency,
            ScaleMetric::Rps => rps,
        };
        // Below target: the missing pods are assumed at target; above: idle.
        let assumed = if observed < target { target } else { 0.0 };
        let blend = |mean: f64, assumed: f64| {
            (mean * read.len() as f64 + assumed * missing) / reports.len() as f64
        };
        match metric {
            ScaleMetric::Concurrency | ScaleMetric::Queue => {
                concurrency = blend(concurrency, assumed)
            }
            ScaleMetric::Rps => rps = blend(rps, assumed),
        }
    }
    let n = population as f64;
    Some(PodsLoad {
        concurrency: concurrency * n,
        rps: rps * n,
    })
}

/// Reads the pods' sidecars, remembering each pod's last report.
pub struct Scraper {
    client: ProbeClient,
    rng: fastrand::Rng,
    previous: HashMap<String, LoadReport>,
}

impl Scraper {
    pub fn new(rng: fastrand::Rng) -> Self {
        Scraper {
            client: crate::probe::client(),
            rng,
            previous: HashMap::new(),
        }
    }

    /// Reads a sample of `pods` (those with a sidecar address) concurrently.
    pub async fn scrape(
        &mut self,
        pods: &[Arc<Pod>],
        metric: ScaleMetric,
        target: f64,
    ) -> Option<PodsLoad> {
        let mut sample: Vec<&Arc<Pod>> = pods.iter().collect();
        self.rng.shuffle(&mut sample);
        sample.truncate(sample_size(pods.len()));
        let client = &self.client;
        let reads = sample
            .iter()
            .map(|pod| async move { (pod.addr().to_string(), read(client, pod).await) });
        let reports = futures_util::future::join_all(reads).await;
        let averages: Vec<Option<LoadReport>> = reports
            .into_iter()
            .map(|(pod, report)| report.map(|r| self.since_previous(pod, r)))
            .collect();
        self.previous
            .retain(|addr, _| pods.iter().any(|p| p.addr() == addr));
        estimate(&averages, pods.len(), metric, target)
    }

    /// The pod's average load since its previous report, from the running
    /// totals; its last whole second when there is no usable previous one.
    pub fn since_previous(&mut self, pod: String, now: LoadReport) -> LoadReport {
        let averaged = match self.previous.get(&pod) {
            Some(prev)
                if now.uptime > prev.uptime + 0.2
                    && now.request_seconds >= prev.request_seconds
                    && now.requests >= prev.requests =>
            {
                let seconds = now.uptime - prev.uptime;
                LoadReport {
                    concurrency: (now.request_seconds - prev.request_seconds) / seconds,
                    rps: (now.requests - prev.requests) as f64 / seconds,
                    ..now
                }
            }
            // First report, or the sidecar restarted: its own last second.
            _ => now,
        };
        self.previous.insert(pod, now);
        averaged
    }
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
    fn running_totals_give_the_exact_average_since_the_previous_report() {
        let mut scraper = Scraper::new(fastrand::Rng::with_seed(1));
        let report = |uptime: f64, request_seconds: f64, requests: u64| LoadReport {
            concurrency: 9.0, // the sidecar's own last second, ignored once totals work
            rps: 9.0,
            uptime,
            request_seconds,
            requests,
            ..LoadReport::default()
        };
        // First report: the sidecar's last whole second.
        let first = scraper.since_previous("p".into(), report(10.0, 30.0, 100));
        assert_eq!(first.concurrency, 9.0);
        // 3 request-seconds over 1.5 s: 2 in flight on average, 20 requests per second.
        let next = scraper.since_previous("p".into(), report(11.5, 33.0, 130));
        assert!(
            (next.concurrency - 2.0).abs() < 1e-9 && (next.rps - 20.0).abs() < 1e-9,
            "{next:?}"
        );
        // A restarted sidecar (totals went back): its last second again.
        let restarted = scraper.since_previous("p".into(), report(1.0, 0.5, 3));
        assert_eq!(restarted.concurrency, 9.0);
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
