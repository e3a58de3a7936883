//! One service's own fields, its per-service overrides and its backend.

use super::autoscaler::{validate_autoscaler, Knobs};
use super::backend::validate_backend;
use super::names::is_dns_label;
use super::pod_metrics::validate_pod_metrics;
use crate::config::ranges;
use crate::config::{Dur, ServiceConfig};

/// The problems of one service on its own (not against the others), e.g.
/// for a service read from an InferenceService.
pub fn validate_service_config(s: &ServiceConfig) -> Vec<String> {
    let mut problems = Vec::new();
    validate_service("", s, &mut problems);
    problems
        .into_iter()
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

pub(super) fn validate_service(at: &str, s: &ServiceConfig, problems: &mut Vec<String>) {
    if !is_dns_label(&s.name) {
        problems.push(format!(
            "{at}.name: {:?} must be a DNS label (lowercase letters, digits and '-')",
            s.name
        ));
    }
    if !is_dns_label(&s.namespace) {
        problems.push(format!(
            "{at}.namespace: {:?} must be a DNS label (lowercase letters, digits and '-')",
            s.namespace
        ));
    }
    for (i, alias) in s.model_aliases.iter().enumerate() {
        let field = format!("{at}.modelAliases[{i}]");
        if alias.is_empty() || alias.len() > 253 {
            problems.push(format!("{field}: must be 1 to 253 bytes long"));
        } else if alias.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(format!(
                "{field}: {alias:?} must not contain spaces or control characters"
            ));
        } else if *alias == s.name || s.model_aliases[..i].contains(alias) {
            problems.push(format!(
                "{field}: {alias:?} names this service's model already"
            ));
        }
    }
    if s.max_replicas() < s.min_replicas {
        problems.push(format!(
            "{at}.maxReplicas: {} must be at least minReplicas ({})",
            s.max_replicas(),
            s.min_replicas
        ));
    }
    let field = |name: &str| format!("{at}.{name}");
    let count = |n: usize| n as u64;
    // Unset, maxReplicas follows minReplicas: a problem there is minReplicas'.
    ranges::MIN_REPLICAS.check(&field("minReplicas"), u64::from(s.min_replicas), problems);
    ranges::MAX_REPLICAS.check_set(
        &field("maxReplicas"),
        s.max_replicas.map(u64::from),
        problems,
    );
    ranges::SCALE_TARGET.check(&field("scaleTarget"), s.scale_target, problems);
    ranges::CONTAINER_CONCURRENCY.check(
        &field("containerConcurrency"),
        count(s.container_concurrency),
        problems,
    );
    ranges::PORT.check(
        &field("podMetricsPort"),
        u64::from(s.pod_metrics_port),
        problems,
    );
    ranges::QUEUE_DEPTH.check_set(&field("queueDepth"), s.queue_depth.map(count), problems);
    let duration = |d: Option<Dur>| d.map(|d| d.0);
    ranges::REQUEST_TIMEOUT.check_set(
        &field("requestTimeout"),
        duration(s.request_timeout),
        problems,
    );
    ranges::QUEUE_TIMEOUT.check_set(&field("queueTimeout"), duration(s.queue_timeout), problems);
    ranges::ACTIVATION_TIMEOUT.check_set(
        &field("activationTimeout"),
        duration(s.activation_timeout),
        problems,
    );
    validate_autoscaler(at, &Knobs::service(s), problems);
    validate_backend(at, s, problems);
    validate_pod_metrics(at, s, problems);
}
