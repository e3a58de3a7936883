//! The leader election loop: every `retryPeriod`, read the Lease and renew,
//! take or follow it (see [`super::step`]). Writes are conditional on the
//! lease's resourceVersion, so of two gateways taking an expired lease at
//! once, one gets a conflict and follows.

use super::rules::{step, Step};
use crate::kubernetes::{is_conflict, is_not_found, CallError, Cluster};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::sync::Arc;
use tokio::time::Instant;
use tracing::{info, warn};

/// The lease's record as last seen, and when this gateway saw it change.
struct Observed {
    version: Option<String>,
    at: Instant,
}

pub async fn run(cluster: Arc<Cluster>) {
    let settings = cluster.settings().leader_election.clone();
    let leadership = cluster.leadership().clone();
    let me = leadership.identity().to_string();
    let mut observed: Option<Observed> = None;
    let mut was_leader = false;
    info!(identity = %me, lease = %settings.lease_name, "leader election started");
    loop {
        let started = Instant::now();
        // One round may not outlast the retry period: a hung API server must
        // not keep the loop from noticing that its deadline passed.
        let mut round = Ok(None);
        // A conflict means someone else wrote the lease between our read and
        // write: read it again at once (once), to know who holds it now.
        for _ in 0..2 {
            round = tokio::time::timeout(
                settings.retry_period.0,
                try_acquire_or_renew(&cluster, &me, &mut observed),
            )
            .await
            .unwrap_or_else(|_| Err(CallError::TimedOut(settings.retry_period.0)));
            if !matches!(round, Ok(None)) {
                break;
            }
        }
        let source = format!("lease {}", settings.lease_name);
        match round {
            Ok(Some(Step::Renew)) | Ok(Some(Step::Acquire)) => {
                cluster.health().succeeded(&source);
                leadership.renewed(started, settings.renew_deadline.0);
            }
            Ok(Some(Step::Follow(holder))) => {
                cluster.health().succeeded(&source);
                leadership.following(Some(holder));
            }
            // Someone else wrote the lease first: stop at once, not at the
            // deadline, and read it again next round.
            Ok(None) => {
                cluster.health().succeeded(&source);
                leadership.following(None);
            }
            Err(e) => cluster.health().failed(&source, "lease", &e),
        }
        let leading = leadership.publish();
        cluster.metrics().set_leader(leading);
        if leading != was_leader {
            let holder = leadership.holder().unwrap_or_default();
            if leading {
                info!(identity = %me, "became the autoscaling leader");
            } else {
                warn!(identity = %me, holder = %holder, "no longer the autoscaling leader; scaling stops");
            }
            was_leader = leading;
        }
        // Wake for the deadline too, if it comes before the next round, so
        // that `sluice_leader` and the log say at once that scaling stopped.
        let next_round = started + settings.retry_period.0;
        let wake = leadership
            .deadline()
            .map_or(next_round, |d| d.min(next_round));
        tokio::time::sleep_until(wake).await;
    }
}

/// One round. `Ok(None)`: a conflict, someone else wrote first (read again
/// next round).
async fn try_acquire_or_renew(
    cluster: &Cluster,
    me: &str,
    observed: &mut Option<Observed>,
) -> Result<Option<Step>, CallError> {
    let settings = &cluster.settings().leader_election;
    let api = lease_api(cluster).await?;
    let name = &settings.lease_name;
    // Whole seconds in the lease, rounded up: the others then wait at least
    // as long as configured, never less.
    let duration_secs = settings.lease_duration.0.as_millis().div_ceil(1000).max(1) as i32;
    let now = Timestamp::now();
    let lease = match api.get(name).await {
        Ok(lease) => lease,
        Err(e) if is_not_found(&e) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.to_string()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Some(Step::Acquire)),
                Err(e) if is_conflict(&e) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let version = lease.metadata.resource_version.clone();
    let seen_at = match observed {
        Some(o) if o.version == version => o.at,
        _ => {
            let at = Instant::now();
            *observed = Some(Observed {
                version: version.clone(),
                at,
            });
            at
        }
    };
    let spec = lease.spec.clone().unwrap_or_default();
    // A duration the API server would refuse (zero or less) reads as ours.
    let seconds = spec
        .lease_duration_seconds
        .filter(|&s| s > 0)
        .unwrap_or(duration_secs);
    let lease_duration = std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    let decision = step(
        me,
        spec.holder_identity.as_deref(),
        lease_duration,
        seen_at,
        Instant::now(),
    );
    if let Step::Follow(_) = decision {
        return Ok(Some(decision));
    }
    let taking = decision == Step::Acquire;
    let mut next = lease;
    next.spec = Some(LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(duration_secs),
        acquire_time: if taking {
            Some(MicroTime(now))
        } else {
            spec.acquire_time
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(taking)),
        ..Default::default()
    });
    // The resourceVersion read above makes this conditional.
    match api.replace(name, &PostParams::default(), &next).await {
        Ok(_) => Ok(Some(decision)),
        Err(e) if is_conflict(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Hands the lease back (holder cleared) if this gateway holds it.
pub async fn release(cluster: &Cluster) {
    let leadership = cluster.leadership();
    // Scaling stops now; the lease is handed back if the API says it is
    // still this gateway's (even if its renew deadline just passed).
    leadership.following(None);
    cluster.metrics().set_leader(false);
    let Ok(api) = lease_api(cluster).await else {
        return;
    };
    let name = &cluster.settings().leader_election.lease_name;
    // Twice: a renewal cut short by the elector's stop may still have
    // landed, and made the first try conflict.
    for _ in 0..2 {
        let Ok(mut lease) = api.get(name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(leadership.identity()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => {
                info!("released the autoscaling lease");
                return;
            }
            Err(e) if is_conflict(&e) => continue,
            Err(e) => {
                warn!(error = %e, "could not release the autoscaling lease; it expires by itself");
                return;
            }
        }
    }
}

async fn lease_api(cluster: &Cluster) -> Result<Api<Lease>, CallError> {
    let client = cluster.client().await?;
    let namespace = lease_namespace(cluster, &client);
    Ok(Api::namespaced(client, &namespace))
}

fn lease_namespace(cluster: &Cluster, client: &kube::Client) -> String {
    cluster
        .settings()
        .leader_election
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string())
}
