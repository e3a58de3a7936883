//! The task that reads every pod's model server every `interval`.
//!
//! All pods are read at once, each with its own timeout, and the next round
//! starts an interval after the last began (or when the slowest read gave
//! up, if that is later): a pod that does not answer delays nobody else's
//! reading by more than the timeout, and gets no fresh reading, so picking
//! falls back to sluice's own counts once its last one is stale.

use super::{parse, ParseError, ServerReport};
use crate::config::{MetricNames, PodMetrics, UpstreamProtocol};
use crate::pods::{Dispatcher, Pod};
use crate::probe::ProbeClient;
use http_body_util::{BodyExt, Limited};
use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::debug;

/// The largest answer read. vLLM's, histograms and all, is tens of KiB per
/// model.
const MAX_ANSWER: usize = 4 << 20;

/// What the task needs of `podMetrics`, resolved once.
#[derive(Clone, Debug)]
pub struct PollSettings {
    pub path: String,
    pub port: Option<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    pub names: MetricNames,
    /// The metrics are on the port requests go to, and that speaks only
    /// HTTP/2 (`protocol: h2c`).
    pub http2: bool,
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Request(String),
    #[error("answered {0}")]
    Status(http::StatusCode),
    #[error("{0}")]
    Parse(#[from] ParseError),
}

// === impl PollSettings ===

impl PollSettings {
    pub fn new(m: &PodMetrics, protocol: UpstreamProtocol) -> Self {
        PollSettings {
            path: m.path.clone(),
            port: m.port,
            interval: m.interval.0,
            timeout: m.timeout(),
            names: m.names(),
            http2: protocol == UpstreamProtocol::H2c && m.port.is_none(),
        }
    }

    fn uri(&self, pod: &Pod) -> Result<http::Uri, ReadError> {
        let authority = pod.authority();
        let port = self.port.or(authority.port_u16()).unwrap_or(80);
        format!("http://{}:{port}{}", authority.host(), self.path)
            .parse()
            .map_err(|e| ReadError::Request(format!("{e}")))
    }
}

/// Reads the pods of `dispatcher` until it is gone or the task is aborted
/// (the service removed, `podMetrics` changed, the gateway stopping).
/// `failures` counts the reads that gave no reading.
pub async fn poll(dispatcher: Weak<Dispatcher>, settings: PollSettings, failures: Counter) {
    let client = if settings.http2 {
        crate::probe::http2_client()
    } else {
        crate::probe::client()
    };
    let mut every = tokio::time::interval(settings.interval);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(pods) = dispatcher.upgrade().map(|d| d.pods()) else {
            return;
        };
        let reads = pods.iter().map(|pod| read_into(&client, pod, &settings));
        let results = futures_util::future::join_all(reads).await;
        for (pod, result) in pods.iter().zip(results) {
            if let Err(error) = result {
                failures.inc();
                debug!(pod = pod.addr(), %error, "no reading of the model server's load");
            }
        }
    }
}

/// Reads one pod's server and keeps the reading on the pod.
async fn read_into(
    client: &ProbeClient,
    pod: &Arc<Pod>,
    settings: &PollSettings,
) -> Result<(), ReadError> {
    let uri = settings.uri(pod)?;
    // Taken as the request leaves: a request admitted while the answer is
    // on its way may be in it and is then counted twice, which errs toward
    // spreading load rather than piling it on one pod.
    let (at, admitted) = (Instant::now(), pod.admitted());
    let text = tokio::time::timeout(settings.timeout, get(client, uri))
        .await
        .map_err(|_| ReadError::Timeout(settings.timeout))??;
    let load = parse(&text, &settings.names)?;
    pod.set_server_report(ServerReport { load, at, admitted });
    Ok(())
}

async fn get(client: &ProbeClient, uri: http::Uri) -> Result<String, ReadError> {
    let response = client
        .get(uri)
        .await
        .map_err(|e| ReadError::Request(format!("{e}")))?;
    if !response.status().is_success() {
        return Err(ReadError::Status(response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| ReadError::Request(format!("reading the answer: {e}")))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
