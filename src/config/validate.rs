//! Checks that types cannot express. Every problem names its field.

use super::{Config, MetricsSource, ServiceConfig};
use http::uri::Authority;
use std::collections::HashMap;

/// Returns every problem found, each starting with the field's path.
pub fn validate(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if config.listen == config.admin && config.listen.port() != 0 {
        problems.push(format!(
            "admin: must differ from listen ({})",
            config.listen
        ));
    }
    if config.domain.is_empty() || Authority::try_from(config.domain.as_str()).is_err() {
        problems.push(format!(
            "domain: {:?} is not a valid DNS name",
            config.domain
        ));
    }
    validate_autoscaler(config, &mut problems);
    validate_kubernetes(config, &mut problems);
    let g = &config.gateway;
    if g.queue_depth == 0 {
        problems.push("gateway.queueDepth: must be at least 1".into());
    }
    if g.queue_timeout.0.is_zero() {
        problems.push("gateway.queueTimeout: must be positive".into());
    }
    if g.request_timeout.0.is_zero() {
        problems.push("gateway.requestTimeout: must be positive".into());
    }
    if g.connect_timeout.0.is_zero() {
        problems.push("gateway.connectTimeout: must be positive".into());
    }
    if g.max_header_size.0 < 1024 {
        problems.push("gateway.maxHeaderSize: must be at least 1KiB".into());
    }

    let mut owners: HashMap<String, String> = HashMap::new();
    let mut keys: HashMap<(String, String), usize> = HashMap::new();
    for (i, service) in config.services.iter().enumerate() {
        let at = format!("services[{i}]");
        validate_service(&at, service, &mut problems);
        let key = (service.name.clone(), service.namespace.clone());
        if let Some(first) = keys.insert(key, i) {
            problems.push(format!(
                "{at}: service {}/{} is already defined at services[{first}]",
                service.namespace, service.name
            ));
        }
        let hosts = std::iter::once(service.default_host(&config.domain))
            .chain(service.hosts.iter().cloned());
        for (j, host) in hosts.enumerate() {
            let field = if j == 0 {
                format!("{at}.name")
            } else {
                format!("{at}.hosts[{}]", j - 1)
            };
            let normal = host.to_ascii_lowercase();
            if !is_host_name(&normal) {
                problems.push(format!("{field}: {host:?} is not a valid host name"));
            } else if let Some(owner) = owners.get(&normal) {
                problems.push(format!("{field}: host {host:?} is already used by {owner}"));
            } else {
                owners.insert(normal, format!("{}/{}", service.namespace, service.name));
            }
        }
    }
    problems
}

fn validate_autoscaler(config: &Config, problems: &mut Vec<String>) {
    let a = &config.autoscaler;
    check_positive(
        "autoscaler.panicWindowPercentage",
        a.panic_window_percentage,
        problems,
    );
    if a.panic_window_percentage > 100.0 {
        problems.push("autoscaler.panicWindowPercentage: must be at most 100".into());
    }
    check_positive(
        "autoscaler.panicThresholdPercentage",
        a.panic_threshold_percentage,
        problems,
    );
    check_positive(
        "autoscaler.targetUtilization",
        a.target_utilization,
        problems,
    );
    if a.target_utilization > 1.0 {
        problems.push("autoscaler.targetUtilization: must be at most 1.0".into());
    }
    check_positive("autoscaler.maxScaleUpRate", a.max_scale_up_rate, problems);
    if a.max_scale_up_rate <= 1.0 {
        problems.push("autoscaler.maxScaleUpRate: must be greater than 1".into());
    }
    if a.max_scale_down_rate <= 1.0 {
        problems.push("autoscaler.maxScaleDownRate: must be greater than 1".into());
    }
    if a.stable_window.0.as_secs() < 2 {
        problems.push("autoscaler.stableWindow: must be at least 2s".into());
    }
    if a.tick_interval.0.as_secs() < 1 {
        problems.push("autoscaler.tickInterval: must be at least 1s".into());
    }
}

fn validate_kubernetes(config: &Config, problems: &mut Vec<String>) {
    let election = &config.kubernetes.leader_election;
    let (lease, renew, retry) = (
        election.lease_duration.0,
        election.renew_deadline.0,
        election.retry_period.0,
    );
    if retry.is_zero() {
        problems.push("kubernetes.leaderElection.retryPeriod: must be positive".into());
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
    if isvc.port == 0 {
        problems.push("kubernetes.inferenceServices.port: must not be 0".into());
    }
    for (i, ns) in isvc.namespaces.iter().enumerate() {
        if !is_dns_label(ns) {
            problems.push(format!(
                "kubernetes.inferenceServices.namespaces[{i}]: {ns:?} is not a valid namespace"
            ));
        }
    }
}

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

fn validate_service(at: &str, s: &ServiceConfig, problems: &mut Vec<String>) {
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
    if s.max_replicas() < s.min_replicas {
        problems.push(format!(
            "{at}.maxReplicas: {} must be at least minReplicas ({})",
            s.max_replicas(),
            s.min_replicas
        ));
    }
    if s.max_replicas() == 0 {
        problems.push(format!("{at}.maxReplicas: must be at least 1"));
    }
    check_positive(&format!("{at}.scaleTarget"), s.scale_target, problems);
    if s.queue_timeout.is_some_and(|d| d.0.is_zero()) {
        problems.push(format!("{at}.queueTimeout: must be positive"));
    }
    if s.request_timeout.is_some_and(|d| d.0.is_zero()) {
        problems.push(format!("{at}.requestTimeout: must be positive"));
    }
    for (field, value) in [
        ("panicWindowPercentage", s.panic_window_percentage),
        ("panicThresholdPercentage", s.panic_threshold_percentage),
        ("targetUtilization", s.target_utilization),
    ] {
        if let Some(v) = value {
            check_positive(&format!("{at}.{field}"), v, problems);
        }
    }
    for (field, value) in [
        ("maxScaleUpRate", s.max_scale_up_rate),
        ("maxScaleDownRate", s.max_scale_down_rate),
    ] {
        if value.is_some_and(|v| !(v.is_finite() && v > 1.0)) {
            problems.push(format!("{at}.{field}: must be greater than 1"));
        }
    }
    if s.queue_depth == Some(0) {
        problems.push(format!("{at}.queueDepth: must be at least 1"));
    }
    validate_backend(at, s, problems);
}

fn validate_backend(at: &str, s: &ServiceConfig, problems: &mut Vec<String>) {
    let backend = &s.backend;
    let kinds = usize::from(backend.static_pods.is_some())
        + usize::from(backend.process.is_some())
        + usize::from(backend.kubernetes.is_some());
    if kinds != 1 {
        problems.push(format!(
            "{at}.backend: exactly one of static, process or kubernetes is required"
        ));
    }
    if let Some(kube) = &backend.kubernetes {
        if !is_dns_subdomain(&kube.deployment) {
            problems.push(format!(
                "{at}.backend.kubernetes.deployment: {:?} is not a valid Kubernetes name",
                kube.deployment
            ));
        }
        if kube.service.as_deref().is_some_and(|n| !is_dns_label(n)) {
            problems.push(format!(
                "{at}.backend.kubernetes.service: {:?} is not a valid Service name",
                kube.service.as_deref().unwrap_or_default()
            ));
        }
        if kube.port == 0 {
            problems.push(format!("{at}.backend.kubernetes.port: must not be 0"));
        }
    }
    if let Some(pods) = &backend.static_pods {
        if pods.is_empty() {
            problems.push(format!(
                "{at}.backend.static: needs at least one pod address"
            ));
        }
        for (k, addr) in pods.iter().enumerate() {
            if let Err(why) = check_pod_address(addr) {
                problems.push(format!("{at}.backend.static[{k}]: {addr:?} {why}"));
            }
        }
    }
    if let Some(process) = &backend.process {
        if s.metrics == MetricsSource::Pods && process.sidecar.is_none() {
            problems.push(format!(
                "{at}.metrics: pods needs a sidecar in front of each replica (backend.process.sidecar)"
            ));
        }
        if process.command.is_empty() || process.command[0].trim().is_empty() {
            problems.push(format!(
                "{at}.backend.process.command: needs a program to run"
            ));
        }
        if !process.readiness_path.starts_with('/') {
            problems.push(format!(
                "{at}.backend.process.readinessPath: {:?} must start with /",
                process.readiness_path
            ));
        }
        if process.startup_timeout.0.is_zero() {
            problems.push(format!(
                "{at}.backend.process.startupTimeout: must be positive"
            ));
        }
    }
}

fn check_positive(field: &str, value: f64, problems: &mut Vec<String>) {
    if !(value.is_finite() && value > 0.0) {
        problems.push(format!("{field}: must be a positive number, got {value}"));
    }
}

/// A pod address is `host:port`, with a host sluice can connect to.
pub fn check_pod_address(addr: &str) -> Result<(), &'static str> {
    let authority: Authority = addr.parse().map_err(|_| "is not a valid host:port")?;
    if authority.port_u16().is_none() {
        return Err("has no port");
    }
    if authority.as_str().contains('@') {
        return Err("must not contain user information");
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Kubernetes object name: DNS labels joined by dots, at most 253.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn problems(yaml: &str) -> Vec<String> {
        match Config::parse(yaml) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(other) => vec![other.to_string()],
            Ok(_) => vec![],
        }
    }

    const GOOD: &str = r#"
services:
  - name: redwine-week4
    namespace: kserve-inference
    minReplicas: 3
    backend:
      static: ["127.0.0.1:8081", "localhost:8082"]
"#;

    #[test]
    fn accepts_the_tutorial_service_and_fills_defaults() {
        let config = Config::parse(GOOD).unwrap();
        let s = &config.services[0];
        assert_eq!(s.max_replicas(), 3, "maxReplicas defaults to minReplicas");
        assert_eq!(config.listen.port(), 30200);
        assert_eq!(config.autoscaler.stable_window.0.as_secs(), 60);
        assert_eq!(
            s.default_host(&config.domain),
            "redwine-week4.kserve-inference.example.com"
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        let p = problems(&GOOD.replace("minReplicas: 3", "minReplicas: 3\n    minReplica: 2"));
        assert!(p[0].contains("unknown field `minReplica`"), "{p:?}");
        let p = problems("listen: 127.0.0.1:1\nbogus: 1\n");
        assert!(p[0].contains("unknown field `bogus`"), "{p:?}");
    }

    #[test]
    fn replicas_targets_and_addresses_are_checked() {
        let yaml = r#"
services:
  - name: a
    minReplicas: 4
    maxReplicas: 2
    scaleTarget: 0
    backend: { static: ["nope", "127.0.0.1"] }
"#;
        let p = problems(yaml);
        let has = |needle: &str| p.iter().any(|x| x.contains(needle));
        assert!(
            has("services[0].maxReplicas: 2 must be at least minReplicas (4)"),
            "{p:?}"
        );
        assert!(
            has("services[0].scaleTarget: must be a positive number"),
            "{p:?}"
        );
        assert!(has("services[0].backend.static[0]"), "{p:?}");
        assert!(
            has("services[0].backend.static[1]: \"127.0.0.1\" has no port"),
            "{p:?}"
        );
    }

    #[test]
    fn hosts_must_be_unique_across_services() {
        let yaml = r#"
services:
  - name: a
    hosts: [Shared.Example.org]
    backend: { static: ["127.0.0.1:1"] }
  - name: b
    hosts: [shared.example.org]
    backend: { static: ["127.0.0.1:2"] }
"#;
        let p = problems(yaml);
        assert!(
            p.iter()
                .any(|x| x.contains("services[1].hosts[0]")
                    && x.contains("already used by default/a")),
            "{p:?}"
        );
    }

    #[test]
    fn durations_and_sizes_name_their_field() {
        let p = problems("gateway:\n  queueTimeout: soon\n");
        assert!(
            p[0].contains("gateway.queueTimeout") || p[0].contains("queueTimeout"),
            "{p:?}"
        );
        assert!(p[0].contains("invalid duration"), "{p:?}");
        let p = problems("gateway:\n  maxRequestBodySize: 12 parsecs\n");
        assert!(p[0].contains("maxRequestBodySize"), "{p:?}");
    }

    #[test]
    fn pod_metrics_need_sidecars() {
        let yaml =
            "services:\n  - name: a\n    metrics: pods\n    backend: {process: {command: [m]}}\n";
        let p = problems(yaml);
        assert!(
            p.iter()
                .any(|x| x.contains("services[0].metrics: pods needs a sidecar")),
            "{p:?}"
        );
        let ok = yaml.replace("command: [m]", "command: [m], sidecar: {}");
        assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
    }

    #[test]
    fn a_backend_is_required() {
        let p = problems("services:\n  - name: a\n    backend: {}\n");
        assert!(
            p.iter()
                .any(|x| x
                    .contains("services[0].backend: exactly one of static, process or kubernetes")),
            "{p:?}"
        );
    }
}
