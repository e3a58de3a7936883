//! The autoscaler's knobs, global and per service: one set of ranges for both.

use crate::config::ranges;
use crate::config::{AutoscalerDefaults, Dur, ServiceConfig};

/// The autoscaler's knobs as written: every one for the global defaults,
/// those that are set for a service.
pub(super) struct Knobs {
    stable_window: Option<Dur>,
    panic_window_percentage: Option<f64>,
    panic_threshold_percentage: Option<f64>,
    target_utilization: Option<f64>,
    scale_to_zero_grace_period: Option<Dur>,
    max_scale_up_rate: Option<f64>,
    max_scale_down_rate: Option<f64>,
    scale_down_delay: Option<Dur>,
    initial_scale: Option<u32>,
    activation_scale: Option<u32>,
    scale_to_zero_pod_retention_period: Option<Dur>,
}

impl Knobs {
    pub(super) fn global(a: &AutoscalerDefaults) -> Knobs {
        Knobs {
            stable_window: Some(a.stable_window),
            panic_window_percentage: Some(a.panic_window_percentage),
            panic_threshold_percentage: Some(a.panic_threshold_percentage),
            target_utilization: Some(a.target_utilization),
            scale_to_zero_grace_period: Some(a.scale_to_zero_grace_period),
            max_scale_up_rate: Some(a.max_scale_up_rate),
            max_scale_down_rate: Some(a.max_scale_down_rate),
            scale_down_delay: Some(a.scale_down_delay),
            initial_scale: Some(a.initial_scale),
            activation_scale: Some(a.activation_scale),
            scale_to_zero_pod_retention_period: Some(a.scale_to_zero_pod_retention_period),
        }
    }

    pub(super) fn service(s: &ServiceConfig) -> Knobs {
        Knobs {
            stable_window: s.stable_window,
            panic_window_percentage: s.panic_window_percentage,
            panic_threshold_percentage: s.panic_threshold_percentage,
            target_utilization: s.target_utilization,
            scale_to_zero_grace_period: s.scale_to_zero_grace_period,
            max_scale_up_rate: s.max_scale_up_rate,
            max_scale_down_rate: s.max_scale_down_rate,
            scale_down_delay: s.scale_down_delay,
            initial_scale: s.initial_scale,
            activation_scale: s.activation_scale,
            scale_to_zero_pod_retention_period: s.scale_to_zero_pod_retention_period,
        }
    }
}

/// One check for the autoscaler's knobs, wherever they are written
/// (`at` is `autoscaler` or `services[i]`).
pub(super) fn validate_autoscaler(at: &str, k: &Knobs, problems: &mut Vec<String>) {
    let field = |name: &str| format!("{at}.{name}");
    let duration = |d: Option<Dur>| d.map(|d| d.0);
    ranges::STABLE_WINDOW.check_set(&field("stableWindow"), duration(k.stable_window), problems);
    ranges::PANIC_WINDOW_PERCENTAGE.check_set(
        &field("panicWindowPercentage"),
        k.panic_window_percentage,
        problems,
    );
    ranges::PANIC_THRESHOLD_PERCENTAGE.check_set(
        &field("panicThresholdPercentage"),
        k.panic_threshold_percentage,
        problems,
    );
    ranges::TARGET_UTILIZATION.check_set(
        &field("targetUtilization"),
        k.target_utilization,
        problems,
    );
    ranges::SCALE_TO_ZERO_GRACE_PERIOD.check_set(
        &field("scaleToZeroGracePeriod"),
        duration(k.scale_to_zero_grace_period),
        problems,
    );
    ranges::SCALE_RATE.check_set(&field("maxScaleUpRate"), k.max_scale_up_rate, problems);
    ranges::SCALE_RATE.check_set(&field("maxScaleDownRate"), k.max_scale_down_rate, problems);
    ranges::SCALE_DOWN_DELAY.check_set(
        &field("scaleDownDelay"),
        duration(k.scale_down_delay),
        problems,
    );
    ranges::INITIAL_SCALE.check_set(
        &field("initialScale"),
        k.initial_scale.map(u64::from),
        problems,
    );
    ranges::ACTIVATION_SCALE.check_set(
        &field("activationScale"),
        k.activation_scale.map(u64::from),
        problems,
    );
    ranges::SCALE_TO_ZERO_POD_RETENTION_PERIOD.check_set(
        &field("scaleToZeroPodRetentionPeriod"),
        duration(k.scale_to_zero_pod_retention_period),
        problems,
    );
}
