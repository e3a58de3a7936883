//! The autoscaler of one service, as a task: samples the load every second,
//! decides every tick, and tells the actuator. A request held at zero
//! replicas scales the service up at once, without waiting for the tick.

use super::{decide, History, Panic, Sample, Scraper};
use crate::config::MetricsSource;
use crate::service::Service;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

/// What the autoscaler last decided, for status and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScalerStatus {
    pub desired: u32,
    pub panic: bool,
    pub stable_concurrency: f64,
    pub panic_concurrency: f64,
}

pub async fn run(service: Arc<Service>) {
    let start = Instant::now();
    let mut history = History::new(service.settings().spec.stable_window);
    let mut panic = Panic::default();
    // Replicas this sluice starts itself begin at minReplicas at once; those
    // that exist without it (a Deployment) are left as they are until the
    // first decision, made on what is observed.
    let owned = service.actuator().owns_replicas();
    let mut desired = if owned {
        service.settings().spec.min_replicas
    } else {
        service.dispatcher().pods().len() as u32
    };
    // Decisions are counted in samples, not compared in time, so that timer
    // drift cannot stretch a 2 s tick to 3 s.
    let mut samples_since_decision = 0u32;
    // Whether the last decision was skipped because the backend could not be seen.
    let mut blind = false;
    // When the backend's replicas were first seen (for replicas not owned).
    let mut watching_since: Option<Duration> = None;
    if owned {
        service.actuator().scale(desired);
    }
    service.set_scaler_status(ScalerStatus {
        desired,
        ..Default::default()
    });
    info!(service = service.name(), desired, "autoscaler started");

    let mut scraper = Scraper::new(fastrand::Rng::new());
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(MissedTickBehavior::Delay);
    second.tick().await;
    loop {
        tokio::select! {
            _ = second.tick() => {}
            _ = service.dispatcher().activation_requested() => {
                // A request is held and no replica is ready: make sure one
                // is coming now, not at the next tick. Idempotent if it is.
                if desired == 0 {
                    desired = 1;
                    info!(service = service.name(), desired, "activating: a request is held and no replica is ready");
                }
                service.actuator().activate(desired);
                service.set_scaler_status(ScalerStatus { desired, ..service.scaler_status() });
                continue;
            }
        }
        if service.dispatcher().held() > 0 && service.dispatcher().pods().is_empty() {
            // Still holding with no pod: ask again every second, in case the
            // first activation was lost (e.g. the API server did not answer).
            desired = desired.max(1);
            service.actuator().activate(desired);
        }
        let settings = service.settings_snapshot();
        let spec = &settings.spec;
        let now = start.elapsed();
        let own = service.dispatcher().read_load();
        let sample = match settings.config.metrics {
            MetricsSource::Gateway => Sample {
                at: now,
                concurrency: own.concurrency,
                rps: own.rps,
            },
            MetricsSource::Pods => {
                let pods = service.dispatcher().pods();
                match scraper.scrape(&pods, spec.metric, spec.target).await {
                    // What the pods report, plus what waits here and has
                    // not reached a pod yet.
                    Some(load) => Sample {
                        at: now,
                        concurrency: load.concurrency + service.dispatcher().queued() as f64,
                        rps: load.rps,
                    },
                    None => {
                        warn!(
                            service = service.name(),
                            "no pod could report its load this second"
                        );
                        continue;
                    }
                }
            }
        };
        history.set_keep(spec.stable_window);
        history.record(sample);
        samples_since_decision += 1;
        let tick_samples = settings.tick_interval.as_secs().max(1) as u32;
        if samples_since_decision < tick_samples {
            continue;
        }
        samples_since_decision = 0;
        if let Some(why) = service.actuator().unhealthy() {
            // What is known about the pods may be stale (or not known yet):
            // no decision on it, least of all to scale down or to zero.
            // Requests held at zero still activate (above).
            if !blind {
                warn!(service = service.name(), desired, %why, "not scaling while the backend cannot be seen");
                service.actuator().no_decision();
            }
            blind = true;
            continue;
        }
        if blind {
            info!(
                service = service.name(),
                "the backend can be seen again; scaling resumes"
            );
            blind = false;
        }
        let ready = service.dispatcher().pods().len() as u32;
        let mut decision = decide(spec, &history, ready, panic, now);
        if !owned {
            // Replicas that were there before this autoscaler saw them (a new
            // leader, a restarted gateway) are not scaled down on less than a
            // full stable window of its own observation.
            let since = *watching_since.get_or_insert(now);
            if now.saturating_sub(since) < spec.stable_window && decision.desired < ready {
                decision.desired = ready;
                decision.reason = format!(
                    "observed for {}s, less than the stable window: no scale down yet",
                    now.saturating_sub(since).as_secs()
                );
            }
        }
        if decision.panic.last_over.is_some() != panic.last_over.is_some() {
            let state = if decision.panic.last_over.is_some() {
                "entering"
            } else {
                "leaving"
            };
            info!(service = service.name(), "{state} panic mode");
        }
        panic = decision.panic;
        if decision.desired != desired {
            info!(service = service.name(), from = desired, to = decision.desired, ready, reason = %decision.reason, "scaling");
            desired = decision.desired;
        }
        // Idempotent; repeating it each tick also heals a lost request.
        service.actuator().scale(desired);
        service.set_scaler_status(ScalerStatus {
            desired,
            panic: panic.last_over.is_some(),
            stable_concurrency: decision.stable_average,
            panic_concurrency: decision.panic_average,
        });
    }
}
