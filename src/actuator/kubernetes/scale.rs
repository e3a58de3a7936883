//! A Deployment's replica count, through its `scale` subresource.
//!
//! Every gateway reads it every [`RESYNC`] (so `/status` and the API's
//! health stay current); only the leader writes, only a fresh decision, and
//! only when it differs from the count read just before. Any gateway holding
//! a request raises the count from zero to one, and only from zero. Every
//! write is conditional on the resourceVersion of the read before it, so a
//! concurrent change makes it conflict, be read again and decided again.

use super::endpoints::PodSource;
use crate::kubernetes::{is_conflict, CallError, Cluster};
use crate::pods::Dispatcher;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::info;

/// How often the count is read when nothing else happens.
const RESYNC: Duration = Duration::from_secs(10);
/// After a failed read or write, the next try: doubling up to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_LAST: Duration = Duration::from_secs(30);
/// Longest a read-and-write may take: an API server that accepts and never
/// answers must not stall this service's scaling.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A decision older than this is not written (the autoscaler decides every
/// tick while it can see the pods; it stops deciding when it cannot).
const STALE: Duration = Duration::from_secs(30);

/// The autoscaler's decision, and when it was last made.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub replicas: u32,
    pub at: Instant,
}

/// What the scale's tasks share.
#[derive(Debug)]
pub struct ScaleTarget {
    pub cluster: Arc<Cluster>,
    pub namespace: String,
    pub deployment: String,
    pub pods: PodSource,
    /// The Deployment's replica count as last read or written; -1 unknown.
    pub replicas: AtomicI64,
    /// An activation (raise from zero) is under way.
    pub activating: AtomicBool,
    /// After another gateway raises the count from zero and a pod is ready,
    /// how long the leader leaves it even if it still wants zero: the
    /// service's stable window and scale-to-zero grace period, as after any
    /// traffic.
    pub zero_hold: Duration,
    /// How long a request may be held for a pod that is starting: the
    /// leader leaves a raised count at least this long for its pod to come.
    pub activation_timeout: Duration,
    /// The service's pods in the balancer (ready ones).
    pub dispatcher: Arc<Dispatcher>,
}

/// A raise from zero by a gateway holding a request, as the leader saw it.
/// The leader may not see that gateway's traffic (its own metrics, or pods
/// that are not ready yet report nothing), so it leaves the count alone for
/// a while even if it still wants zero.
#[derive(Debug, Clone, Copy)]
struct Raised {
    at: Instant,
    first_ready: Option<Instant>,
}

impl Raised {
    /// A pod that has become ready is kept for `zero_hold`, as after
    /// traffic; one still starting, for as long as a request may be held
    /// for it (never less than `zero_hold`).
    fn until(&self, zero_hold: Duration, activation_timeout: Duration) -> Instant {
        match self.first_ready {
            Some(ready) => ready + zero_hold,
            None => self.at + activation_timeout.max(zero_hold),
        }
    }
}

impl ScaleTarget {
    pub fn health_source(&self) -> String {
        format!("deployments/scale {}/{}", self.namespace, self.deployment)
    }

    async fn api(&self) -> Result<Api<Deployment>, CallError> {
        let client = self.cluster.client().await?;
        Ok(Api::namespaced(client, &self.namespace))
    }

    fn report<T>(&self, result: &Result<T, CallError>) {
        let health = self.cluster.health();
        match result {
            Ok(_) => health.succeeded(&self.health_source()),
            Err(e) => health.failed(&self.health_source(), "scale", e),
        }
    }
}

/// The scale's loop, on every gateway.
pub async fn keep(target: Arc<ScaleTarget>, mut wanted: watch::Receiver<Option<Wanted>>) {
    let leadership = target.cluster.leadership().clone();
    let mut leading = leadership.subscribe();
    // A pod coming or going may end an activation's wait or start its hold:
    // looked at then, not only at the next resync.
    let mut pod_count = target.dispatcher.watch_pod_count();
    let mut wait = Duration::ZERO;
    let mut retry = RETRY_FIRST;
    // The count left zero without this gateway writing it: an activation.
    let mut raised: Option<Raised> = None;
    loop {
        // Only while at zero or activating: otherwise pods come and go with
        // every scale, and each would cost a read of the API.
        let watch_pods = raised.is_some() || target.replicas.load(Ordering::Relaxed) == 0;
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { return },
            _ = leading.changed() => {}
            _ = pod_count.changed(), if watch_pods => {}
            _ = tokio::time::sleep(wait) => {}
        }
        wait = RESYNC;
        let fresh = wanted
            .borrow_and_update()
            .filter(|w| w.at.elapsed() < STALE)
            .map(|w| w.replicas);
        if let Some(r) = raised.as_mut() {
            if r.first_ready.is_none() && !target.dispatcher.pods().is_empty() {
                r.first_ready = Some(Instant::now());
            }
        }
        let hold_until = raised.map(|r| r.until(target.zero_hold, target.activation_timeout));
        let holding_zero = hold_until.is_some_and(|until| Instant::now() < until);
        let before = target.replicas.load(Ordering::Relaxed);
        let round = async {
            match fresh {
                Some(want) if leadership.is_leader() && !(want == 0 && holding_zero) => {
                    // A count found above zero where it was zero a moment ago
                    // was raised by an activation: not written back to zero.
                    let may_write = |current: i32| {
                        leadership.is_leader() && !(want == 0 && before == 0 && current > 0)
                    };
                    set_replicas(&target, want, may_write).await
                }
                // Following, or nothing fresh to write: read, to keep the
                // count and the API's health current.
                _ => read_replicas(&target).await.map(|_| None),
            }
        };
        let result = tokio::time::timeout(CALL_TIMEOUT, round)
            .await
            .unwrap_or_else(|_| Err(CallError::TimedOut(CALL_TIMEOUT)));
        target.report(&result);
        let after = target.replicas.load(Ordering::Relaxed);
        if after == 0 {
            raised = None;
        } else if before == 0 && matches!(result, Ok(None)) {
            info!(namespace = %target.namespace, deployment = %target.deployment, replicas = after, "raised from zero by an activation");
            let now = Instant::now();
            // Its pod may be ready already: the hold starts from then.
            let ready = !target.dispatcher.pods().is_empty();
            raised = Some(Raised {
                at: now,
                first_ready: ready.then_some(now),
            });
        }
        let hold_left = raised
            .map(|r| r.until(target.zero_hold, target.activation_timeout))
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero());
        if let Some(left) = hold_left {
            // Look again when the hold ends, not only at the next resync.
            wait = wait.min(left);
        }
        match result {
            Ok(written) => {
                retry = RETRY_FIRST;
                if let (Some(from), Some(to)) = (written, fresh) {
                    info!(namespace = %target.namespace, deployment = %target.deployment, from, to, "replicas written");
                }
            }
            Err(_) => {
                wait = retry;
                retry = (retry * 2).min(RETRY_LAST);
            }
        }
    }
}

/// Any gateway holding a request: 0 becomes 1; any other count stays.
pub async fn raise_from_zero(target: &ScaleTarget) {
    let raised = tokio::time::timeout(
        CALL_TIMEOUT,
        set_replicas(target, 1, |current| current == 0),
    )
    .await
    .unwrap_or_else(|_| Err(CallError::TimedOut(CALL_TIMEOUT)));
    target.report(&raised);
    if let Ok(Some(from)) = raised {
        info!(namespace = %target.namespace, deployment = %target.deployment, from, to = 1, "activating: replicas raised from zero");
    }
}

async fn read_replicas(target: &ScaleTarget) -> Result<i32, CallError> {
    let api = target.api().await?;
    let scale = api.get_scale(&target.deployment).await?;
    let current = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
    target.replicas.store(current.into(), Ordering::Relaxed);
    Ok(current)
}

/// Reads the scale and, if it differs from `want` and `may_write(current)`
/// holds at that moment, writes `want` conditionally on what was read; on a
/// conflict, reads again. Returns the count it replaced, if it wrote.
async fn set_replicas(
    target: &ScaleTarget,
    want: u32,
    may_write: impl Fn(i32) -> bool,
) -> Result<Option<i32>, CallError> {
    let api = target.api().await?;
    let want = i32::try_from(want).unwrap_or(i32::MAX);
    for _ in 0..3 {
        let mut scale = api.get_scale(&target.deployment).await?;
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        target.replicas.store(current.into(), Ordering::Relaxed);
        if current == want || !may_write(current) {
            return Ok(None);
        }
        scale.spec.get_or_insert_with(Default::default).replicas = Some(want);
        scale.status = None;
        match api
            .replace_scale(&target.deployment, &PostParams::default(), &scale)
            .await
        {
            Ok(_) => {
                target.replicas.store(want.into(), Ordering::Relaxed);
                target.cluster.metrics().scale_written();
                return Ok(Some(current));
            }
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CallError::KeptChanging(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(90);
    const ACTIVATION: Duration = Duration::from_secs(300);

    #[test]
    fn a_raised_count_is_left_while_its_pod_starts_and_a_hold_after_it_is_ready() {
        let at = Instant::now();
        let starting = Raised {
            at,
            first_ready: None,
        };
        assert_eq!(starting.until(HOLD, ACTIVATION), at + ACTIVATION);
        let ready_at = at + Duration::from_secs(200);
        let ready = Raised {
            at,
            first_ready: Some(ready_at),
        };
        assert_eq!(ready.until(HOLD, ACTIVATION), ready_at + HOLD);
        // A short activation timeout never shortens the hold.
        assert_eq!(starting.until(HOLD, Duration::from_secs(5)), at + HOLD);
    }
}
