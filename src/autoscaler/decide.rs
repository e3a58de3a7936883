//! The scaling decision, after Knative's KPA. A pure function of the
//! recorded history, the spec, the ready pods and `now`: no clock, no I/O.
//!
//! - desired = ceil(average / (scaleTarget * targetUtilization)), over the
//!   stable window, or over the panic window while panicking;
//! - clamped to what `maxScaleUpRate` / `maxScaleDownRate` allow relative
//!   to the ready pods, then to `[minReplicas, maxReplicas]`;
//! - panic starts when the panic window's desire reaches
//!   `panicThresholdPercentage` of the ready pods; while panicking the
//!   service never scales down; panic ends a full stable window after the
//!   desire last crossed the threshold;
//! - with any load, never fewer than `activationScale` (Knative applies it
//!   to both desires when their raw count is above zero, in
//!   pkg/autoscaler/scaling/autoscaler.go);
//! - to zero (with `minReplicas: 0`) only after no traffic for the stable
//!   window plus the longer of `scaleToZeroGracePeriod` and
//!   `scaleToZeroPodRetentionPeriod`. In Knative the grace period is the
//!   most the last pod waits for the activator to be put in the path, the
//!   retention period the least it is kept after the decision to go to
//!   zero; sluice is always in the path, so both are simply waits.
//!
//! `scaleDownDelay` and `initialScale` depend on what was decided before:
//! the [`super::Scaler`] applies them.

use super::window::{History, Sample};
use crate::config::{AutoscalerDefaults, ScaleMetric, ServiceConfig};
use std::time::Duration;

/// The autoscaling settings of one service, resolved from the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Per pod: scaleTarget * targetUtilization.
    pub target: f64,
    pub metric: ScaleMetric,
    pub stable_window: Duration,
    pub panic_window: Duration,
    /// A ratio: panicThresholdPercentage / 100.
    pub panic_threshold: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    pub scale_to_zero_grace: Duration,
    /// The last replica's least life after the decision to go to zero.
    pub scale_to_zero_retention: Duration,
    /// A count is held this long after it was last wanted.
    pub scale_down_delay: Duration,
    /// Replicas to start with, within `[min_replicas, max_replicas]`.
    pub initial_scale: u32,
    /// The fewest replicas above zero, within `[1, max_replicas]`.
    pub activation_scale: u32,
}

/// Panic mode, carried from one decision to the next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Panic {
    /// When the panic desire last reached the threshold.
    pub last_over: Option<Duration>,
    /// The highest count decided during this panic: panic never scales down.
    pub peak: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub desired: u32,
    pub panic: Panic,
    pub stable_average: f64,
    pub panic_average: f64,
    pub reason: String,
}

impl Spec {
    pub fn resolve(s: &ServiceConfig, d: &AutoscalerDefaults) -> Spec {
        let stable_window = s.stable_window.unwrap_or(d.stable_window).0;
        let panic_percentage = s
            .panic_window_percentage
            .unwrap_or(d.panic_window_percentage);
        Spec {
            min_replicas: s.min_replicas,
            max_replicas: s.max_replicas(),
            target: s.scale_target * s.target_utilization.unwrap_or(d.target_utilization),
            metric: s.scale_metric,
            stable_window,
            // Validated to 1-100 %; never a panic on anything else.
            panic_window: Duration::try_from_secs_f64(
                stable_window.as_secs_f64() * panic_percentage / 100.0,
            )
            .unwrap_or(stable_window)
            .clamp(
                Duration::from_secs(1),
                stable_window.max(Duration::from_secs(1)),
            ),
            panic_threshold: s
                .panic_threshold_percentage
                .unwrap_or(d.panic_threshold_percentage)
                / 100.0,
            max_scale_up_rate: s.max_scale_up_rate.unwrap_or(d.max_scale_up_rate),
            max_scale_down_rate: s.max_scale_down_rate.unwrap_or(d.max_scale_down_rate),
            scale_to_zero_grace: s
                .scale_to_zero_grace_period
                .unwrap_or(d.scale_to_zero_grace_period)
                .0,
            scale_to_zero_retention: s
                .scale_to_zero_pod_retention_period
                .unwrap_or(d.scale_to_zero_pod_retention_period)
                .0,
            scale_down_delay: s.scale_down_delay.unwrap_or(d.scale_down_delay).0,
            // As Knative's KPA, which bounds the initial scale by min and
            // max scale like any other count.
            initial_scale: s
                .initial_scale
                .unwrap_or(d.initial_scale)
                .clamp(s.min_replicas, s.max_replicas().max(s.min_replicas)),
            activation_scale: s
                .activation_scale
                .unwrap_or(d.activation_scale)
                .clamp(1, s.max_replicas().max(1)),
        }
    }

    fn clamp(&self, n: u32) -> u32 {
        n.clamp(self.min_replicas, self.max_replicas)
    }
}

pub fn decide(
    spec: &Spec,
    history: &History,
    ready: u32,
    previous: Panic,
    now: Duration,
) -> Decision {
    let metric = |s: &Sample| match spec.metric {
        ScaleMetric::Concurrency => s.concurrency,
        ScaleMetric::Rps => s.rps,
        ScaleMetric::Queue => s.queue,
    };
    let averages = (
        history.average(now, spec.stable_window, metric),
        history.average(now, spec.panic_window, metric),
    );
    let (Some(stable), Some(panicky)) = averages else {
        return Decision {
            desired: spec.clamp(ready),
            panic: previous,
            stable_average: 0.0,
            panic_average: 0.0,
            reason: "no load observed yet".into(),
        };
    };

    // Rates are relative to the ready pods; at zero, to one.
    let base = f64::from(ready.max(1));
    let max_up = (spec.max_scale_up_rate * base).ceil();
    let max_down = (base / spec.max_scale_down_rate).floor().min(max_up);
    let want = |average: f64| {
        let raw = pods_for(average / spec.target);
        let pods = raw.clamp(max_down, max_up) as u32;
        // With any load, at least activationScale (as Knative: on the raw
        // desire, so a scale down by rate alone is not held up by it).
        if raw > 0.0 {
            pods.max(spec.activation_scale)
        } else {
            pods
        }
    };
    let (stable_desire, panic_desire) = (want(stable), want(panicky));

    // As Knative: the threshold is checked on the raw panic desire, before
    // rounding and rate limits.
    let over = panicky / spec.target / base >= spec.panic_threshold;
    let last_over = if over { Some(now) } else { previous.last_over };
    let panicking = last_over.is_some_and(|t| now.saturating_sub(t) < spec.stable_window);

    let (mut desired, panic, mut reason) = if panicking {
        // Provision for the larger of the two windows, and never less than
        // what this panic already asked for.
        let desired = panic_desire.max(stable_desire).max(previous.peak);
        let reason = format!(
            "panic: {:.2} over the panic window wants {panic_desire} pods, {:.0}% of {ready} ready",
            panicky,
            f64::from(panic_desire) / base * 100.0
        );
        (
            desired,
            Panic {
                last_over,
                peak: desired,
            },
            reason,
        )
    } else {
        let reason = format!(
            "stable: {stable:.2} over the stable window / target {} wants {stable_desire}",
            spec.target
        );
        (stable_desire, Panic::default(), reason)
    };

    if spec.min_replicas == 0 && desired == 0 {
        let idle_since = history.last_traffic().unwrap_or_default();
        let idle = now.saturating_sub(idle_since);
        let wait = spec.scale_to_zero_grace.max(spec.scale_to_zero_retention);
        if idle >= spec.stable_window.saturating_add(wait) {
            reason = format!("no traffic for {}s: scale to zero", idle.as_secs());
        } else if ready > 0 {
            desired = 1;
            reason = format!(
                "idle for {}s, waiting for the stable window and grace (or retention) period before zero",
                idle.as_secs()
            );
        }
    }
    Decision {
        desired: spec.clamp(desired),
        panic,
        stable_average: stable,
        panic_average: panicky,
        reason,
    }
}

/// Pods needed for `load` pods' worth of work: the ceiling, except that a
/// load a hair above a whole number (sums of per-second float averages, such
/// as 6.0000001 for six steady clients) is that number, not one more pod.
fn pods_for(load: f64) -> f64 {
    (load - 1e-6).ceil().max(0.0)
}

/// The tutorial's service with Knative's defaults (1 to 8 replicas, target
/// 1): where the table tests of the decision and of the scaler start.
#[cfg(test)]
pub(crate) fn tutorial_spec() -> Spec {
    Spec {
        min_replicas: 1,
        max_replicas: 8,
        target: 1.0,
        metric: ScaleMetric::Concurrency,
        stable_window: Duration::from_secs(60),
        panic_window: Duration::from_secs(6),
        panic_threshold: 2.0,
        max_scale_up_rate: 1000.0,
        max_scale_down_rate: 2.0,
        scale_to_zero_grace: Duration::from_secs(30),
        scale_to_zero_retention: Duration::ZERO,
        scale_down_delay: Duration::ZERO,
        initial_scale: 1,
        activation_scale: 1,
    }
}

#[cfg(test)]
mod tests;
