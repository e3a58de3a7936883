//! The `kubernetes` section: leader election timings, InferenceService settings.

use super::names::{is_dns_label, is_dns_subdomain};
use crate::config::ranges;
use crate::config::Config;

pub(super) fn validate_kubernetes(config: &Config, problems: &mut Vec<String>) {
    let election = &config.kubernetes.leader_election;
    let (lease, renew, retry) = (
        election.lease_duration.0,
        election.renew_deadline.0,
        election.retry_period.0,
    );
    for (name, value) in [
        ("leaseDuration", lease),
        ("renewDeadline", renew),
        ("retryPeriod", retry),
    ] {
        ranges::LEASE_TIMING.check(
            &format!("kubernetes.leaderElection.{name}"),
            value,
            problems,
        );
    }
    // A leader must give up before its lease can expire for the others, and
    // must get more than one try to renew before it gives up.
    if renew <= retry {
        problems.push(format!(
            "kubernetes.leaderElection.renewDeadline: {renew:?} must be longer than retryPeriod ({retry:?})"
        ));
    }
    if lease <= renew {
        problems.push(format!(
            "kubernetes.leaderElection.leaseDuration: {lease:?} must be longer than renewDeadline ({renew:?})"
        ));
    }
    if !is_dns_subdomain(&election.lease_name) {
        problems.push(format!(
            "kubernetes.leaderElection.leaseName: {:?} is not a valid Kubernetes name",
            election.lease_name
        ));
    }
    let isvc = &config.kubernetes.inference_services;
    ranges::PORT.check(
        "kubernetes.inferenceServices.port",
        u64::from(isvc.port),
        problems,
    );
    ranges::PORT.check(
        "kubernetes.inferenceServices.podMetricsPort",
        u64::from(isvc.pod_metrics_port),
        problems,
    );
    for (i, ns) in isvc.namespaces.iter().enumerate() {
        if !is_dns_label(ns) {
            problems.push(format!(
                "kubernetes.inferenceServices.namespaces[{i}]: {ns:?} is not a valid namespace"
            ));
        }
    }
}
