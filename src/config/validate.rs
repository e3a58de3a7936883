//! Checks that types cannot express. Every problem names its field.

use super::ranges;
use super::{AutoscalerDefaults, Config, Dur, MetricsSource, ServiceConfig};
use http::uri::{Authority, PathAndQuery};
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
    // Every service's default host ends with it: checked as a host name.
    let domain_ok = is_host_name(&config.domain.to_ascii_lowercase());
    if !domain_ok {
        problems.push(format!(
            "domain: {:?} is not a valid DNS name",
            config.domain
        ));
    }
    validate_autoscaler(
        "autoscaler",
        &Knobs::global(&config.autoscaler),
        &mut problems,
    );
    ranges::TICK_INTERVAL.check(
        "autoscaler.tickInterval",
        config.autoscaler.tick_interval.0,
        &mut problems,
    );
    validate_kubernetes(config, &mut problems);
    let g = &config.gateway;
    let p = &mut problems;
    ranges::QUEUE_DEPTH.check("gateway.queueDepth", g.queue_depth as u64, p);
    ranges::QUEUE_TIMEOUT.check("gateway.queueTimeout", g.queue_timeout.0, p);
    ranges::REQUEST_TIMEOUT.check("gateway.requestTimeout", g.request_timeout.0, p);
    ranges::ACTIVATION_TIMEOUT.check_set(
        "gateway.activationTimeout",
        g.activation_timeout.map(|d| d.0),
        p,
    );
    ranges::CONNECT_TIMEOUT.check("gateway.connectTimeout", g.connect_timeout.0, p);
    ranges::UPSTREAM_IDLE_TIMEOUT.check(
        "gateway.upstreamIdleTimeout",
        g.upstream_idle_timeout.0,
        p,
    );
    ranges::MAX_HEADER_SIZE.check("gateway.maxHeaderSize", g.max_header_size.0, p);
    let header_count = g.max_header_count as u64;
    ranges::MAX_HEADER_COUNT.check("gateway.maxHeaderCount", header_count, p);
    let c = &g.connections;
    let at = |field: &str| format!("gateway.connections.{field}");
    ranges::FIRST_BYTE_TIMEOUT.check(&at("firstByteTimeout"), c.first_byte_timeout.0, p);
    ranges::HEADER_READ_TIMEOUT.check(&at("headerReadTimeout"), c.header_read_timeout.0, p);
    ranges::IDLE_TIMEOUT.check(&at("idleTimeout"), c.idle_timeout.0, p);
    let (ping_every, ping_timeout) = (c.http2_keep_alive_interval.0, c.http2_keep_alive_timeout.0);
    ranges::HTTP2_KEEP_ALIVE_INTERVAL.check(&at("http2KeepAliveInterval"), ping_every, p);
    ranges::HTTP2_KEEP_ALIVE_TIMEOUT.check(&at("http2KeepAliveTimeout"), ping_timeout, p);
    let max_connections = c.max_connections.map(|n| n as u64);
    ranges::MAX_CONNECTIONS.check_set(&at("maxConnections"), max_connections, p);
    ranges::SHUTDOWN_GRACE_PERIOD.check(
        "gateway.shutdownGracePeriod",
        g.shutdown_grace_period.0,
        p,
    );

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
        // The default host is made of fields checked on their own; when one
        // of them is refused, that is the problem, not the host.
        let parts_ok = domain_ok && is_dns_label(&service.name) && is_dns_label(&service.namespace);
        for (j, host) in hosts.enumerate() {
            let field = if j == 0 {
                format!("{at}.name")
            } else {
                format!("{at}.hosts[{}]", j - 1)
            };
            let normal = host.to_ascii_lowercase();
            if j == 0 && !parts_ok {
                continue;
            }
            if !is_host_name(&normal) {
                let made_of = if j == 0 {
                    ", of name, namespace and domain,"
                } else {
                    ""
                };
                problems.push(format!(
                    "{field}: {host:?}{made_of} is not a valid host name"
                ));
            } else if let Some(owner) = owners.get(&normal) {
                problems.push(format!("{field}: host {host:?} is already used by {owner}"));
            } else {
                owners.insert(normal, format!("{}/{}", service.namespace, service.name));
            }
        }
    }
    problems
}

/// The autoscaler's knobs as written: every one for the global defaults,
/// those that are set for a service.
struct Knobs {
    stable_window: Option<Dur>,
    panic_window_percentage: Option<f64>,
    panic_threshold_percentage: Option<f64>,
    target_utilization: Option<f64>,
    scale_to_zero_grace_period: Option<Dur>,
    max_scale_up_rate: Option<f64>,
    max_scale_down_rate: Option<f64>,
}

impl Knobs {
    fn global(a: &AutoscalerDefaults) -> Knobs {
        Knobs {
            stable_window: Some(a.stable_window),
            panic_window_percentage: Some(a.panic_window_percentage),
            panic_threshold_percentage: Some(a.panic_threshold_percentage),
            target_utilization: Some(a.target_utilization),
            scale_to_zero_grace_period: Some(a.scale_to_zero_grace_period),
            max_scale_up_rate: Some(a.max_scale_up_rate),
            max_scale_down_rate: Some(a.max_scale_down_rate),
        }
    }

    fn service(s: &ServiceConfig) -> Knobs {
        Knobs {
            stable_window: s.stable_window,
            panic_window_percentage: s.panic_window_percentage,
            panic_threshold_percentage: s.panic_threshold_percentage,
            target_utilization: s.target_utilization,
            scale_to_zero_grace_period: s.scale_to_zero_grace_period,
            max_scale_up_rate: s.max_scale_up_rate,
            max_scale_down_rate: s.max_scale_down_rate,
        }
    }
}

/// One check for the autoscaler's knobs, wherever they are written
/// (`at` is `autoscaler` or `services[i]`).
fn validate_autoscaler(at: &str, k: &Knobs, problems: &mut Vec<String>) {
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
}

fn validate_kubernetes(config: &Config, problems: &mut Vec<String>) {
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
        ranges::PORT.check(
            &format!("{at}.backend.kubernetes.port"),
            u64::from(kube.port),
            problems,
        );
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
        // The probe is `http://127.0.0.1:{port}{readinessPath}`.
        let path = &process.readiness_path;
        if !path.starts_with('/') || PathAndQuery::try_from(path.as_str()).is_err() {
            problems.push(format!(
                "{at}.backend.process.readinessPath: {path:?} must be a URI path starting with /"
            ));
        }
        // The OS refuses to start a program given a NUL byte.
        let nul = |s: &String| s.contains('\0');
        let at = format!("{at}.backend.process");
        if let Some(k) = process.command.iter().position(nul) {
            problems.push(format!("{at}.command[{k}]: must not contain a NUL byte"));
        }
        if let Some((k, _)) = process.env.iter().find(|(k, v)| nul(k) || nul(v)) {
            problems.push(format!("{at}.env.{k:?}: must not contain a NUL byte"));
        }
        let executable = process.sidecar.as_ref().and_then(|s| s.executable.as_ref());
        if executable.is_some_and(nul) {
            problems.push(format!(
                "{at}.sidecar.executable: must not contain a NUL byte"
            ));
        }
        ranges::STARTUP_TIMEOUT.check(
            &format!("{at}.startupTimeout"),
            process.startup_timeout.0,
            problems,
        );
        ranges::STOP_GRACE_PERIOD.check(
            &format!("{at}.stopGracePeriod"),
            process.stop_grace_period.0,
            problems,
        );
    }
}

/// A pod address is `host:port`, with a host sluice can connect to.
pub fn check_pod_address(addr: &str) -> Result<(), &'static str> {
    let authority: Authority = addr.parse().map_err(|_| "is not a valid host:port")?;
    match authority.port_u16() {
        None => return Err("has no port"),
        Some(0) => return Err("has port 0, which no connection can reach"),
        Some(_) => {}
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
            has("services[0].scaleTarget: must be between 0.01 and 1000000, got 0"),
            "{p:?}"
        );
        assert!(has("services[0].backend.static[0]"), "{p:?}");
        assert!(
            has("services[0].backend.static[1]: \"127.0.0.1\" has no port"),
            "{p:?}"
        );
        // Found by tests/properties.rs: accepted, port 0 could never be reached.
        let p = problems(&yaml.replace("\"127.0.0.1\"", "\"127.0.0.1:0\""));
        assert!(
            p.iter().any(|x| x == "services[0].backend.static[1]: \"127.0.0.1:0\" has port 0, which no connection can reach"),
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

    /// Issue 15, defects 1 to 3: values that `sluice check` used to accept
    /// and that then panicked a task or scaled to the maximum.
    #[test]
    fn values_the_gateway_cannot_run_are_refused_with_their_field() {
        let service = |extra: &str| {
            format!("services:\n  - name: a\n    minReplicas: 0\n{extra}    backend: {{process: {{command: [m]}}}}\n")
        };
        for (yaml, expected) in [
            (
                service("    panicWindowPercentage: 1e20\n"),
                "services[0].panicWindowPercentage: must be between 1 and 100, got 100000000000000000000",
            ),
            (
                service("    panicWindowPercentage: 1000\n"),
                "services[0].panicWindowPercentage: must be between 1 and 100",
            ),
            (
                service("    stableWindow: 500000000000y\n"),
                "services[0].stableWindow: must be between 2s and 1h",
            ),
            (
                service("    scaleToZeroGracePeriod: 500000000000y\n"),
                "services[0].scaleToZeroGracePeriod: must be between 0s and 1h",
            ),
            (
                service("").replace("command: [m]", "command: [m], startupTimeout: 500000000000y"),
                "services[0].backend.process.startupTimeout: must be between 1ms and 1day",
            ),
            (
                format!("autoscaler:\n  maxScaleDownRate: .nan\n{}", service("")),
                "autoscaler.maxScaleDownRate: must be greater than 1 and at most 1000000, got NaN",
            ),
            (
                service("    maxScaleDownRate: .nan\n"),
                "services[0].maxScaleDownRate: must be greater than 1",
            ),
            (
                format!("autoscaler:\n  targetUtilization: .inf\n{}", service("")),
                "autoscaler.targetUtilization: must be between 0.01 and 1, got inf",
            ),
            (
                format!("gateway:\n  requestTimeout: 500000000000y\n{}", service("")),
                "gateway.requestTimeout: must be between 1ms and 1day",
            ),
            (
                service("    activationTimeout: 500000000000y\n"),
                "services[0].activationTimeout: must be between 1ms and 1day",
            ),
            (
                format!("gateway:\n  maxHeaderCount: 0\n{}", service("")),
                "gateway.maxHeaderCount: must be between 8 and 10000, got 0",
            ),
            (
                format!("gateway:\n  connections:\n    idleTimeout: 500000000000y\n{}", service("")),
                "gateway.connections.idleTimeout: must be between 1ms and 1day",
            ),
            (
                format!("gateway:\n  connections:\n    maxConnections: 0\n{}", service("")),
                "gateway.connections.maxConnections: must be between 1 and 1000000, got 0",
            ),
            (
                format!("gateway:\n  connections:\n    firstByteTimeout: 0s\n{}", service("")),
                "gateway.connections.firstByteTimeout: must be between 1ms and 1h, got 0s",
            ),
        ] {
            let p = problems(&yaml);
            assert!(p.iter().any(|x| x.contains(expected)), "{yaml}\n{p:?}");
        }
    }

    /// Found by tests/properties.rs: a refused namespace or domain was also
    /// reported as a bad `name`, and a domain with an empty or overlong
    /// label was taken for a DNS name.
    #[test]
    fn a_bad_default_host_is_blamed_on_the_field_that_makes_it() {
        let service =
            "services:\n  - name: a\n    namespace: b\n    backend: {static: [\"127.0.0.1:1\"]}\n";
        for (yaml, expected) in [
            (
                service.replace("namespace: b", "namespace: \"\""),
                "services[0].namespace:",
            ),
            (
                service.replace("namespace: b", "namespace: 1h 30m"),
                "services[0].namespace:",
            ),
            (format!("domain: a..b\n{service}"), "domain:"),
            (
                format!("domain: {}.com\n{service}", "x".repeat(64)),
                "domain:",
            ),
            ("domain: a..b\n".to_string(), "domain:"),
        ] {
            let p = problems(&yaml);
            assert!(
                !p.is_empty() && p.iter().all(|x| x.starts_with(expected)),
                "{yaml}\n{p:?}"
            );
        }
        let long = format!("domain: {0}.{0}.{0}.{0}\n{service}", "x".repeat(60));
        let p = problems(&long.replace("name: a", &format!("name: {}", "y".repeat(63))));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("services[0].name: ") && p[0].contains("of name, namespace and domain"),
            "{p:?}"
        );
    }

    /// Found by tests/properties.rs: accepted, a replica could never start
    /// (NUL bytes) or never be seen ready (a path no URI can hold).
    #[test]
    fn replicas_that_cannot_start_or_be_probed_are_refused() {
        let service = |process: &str| {
            format!("services:\n  - name: a\n    backend: {{process: {{{process}}}}}\n")
        };
        for (process, expected) in [
            ("command: [m], readinessPath: /a b", "services[0].backend.process.readinessPath: \"/a b\" must be a URI path starting with /"),
            ("command: [m], readinessPath: v1", "services[0].backend.process.readinessPath: \"v1\" must be"),
            ("command: [m, \"a\\0\"]", "services[0].backend.process.command[1]: must not contain a NUL byte"),
            ("command: [m], env: {A: \"\\0\"}", "services[0].backend.process.env.\"A\": must not contain"),
            ("command: [m], sidecar: {executable: \"\\0\"}", "services[0].backend.process.sidecar.executable: must not"),
        ] {
            let p = problems(&service(process));
            assert!(p.len() == 1 && p[0].starts_with(expected), "{process}\n{p:?}");
        }
        let ok = "command: [m], readinessPath: \"/v1/models/{name}?x=1\"";
        assert_eq!(problems(&service(ok)), Vec::<String>::new());
    }

    /// Found by tests/properties.rs: with maxReplicas unset, a minReplicas
    /// out of range was reported as maxReplicas, a field not written.
    #[test]
    fn replica_bounds_name_the_field_written() {
        let service = |replicas: &str| {
            format!(
                "services:\n  - name: a\n{replicas}    backend: {{static: [\"127.0.0.1:1\"]}}\n"
            )
        };
        for (replicas, expected) in [
            (
                "    minReplicas: 100000\n",
                vec!["services[0].minReplicas: must be between 0 and 10000, got 100000"],
            ),
            (
                "    maxReplicas: 100000\n",
                vec!["services[0].maxReplicas: must be between 1 and 10000, got 100000"],
            ),
            (
                "    maxReplicas: 0\n",
                vec![
                    "services[0].maxReplicas: 0 must be at least minReplicas (1)",
                    "services[0].maxReplicas: must be between 1 and 10000, got 0",
                ],
            ),
            ("    minReplicas: 10000\n", vec![]),
        ] {
            assert_eq!(problems(&service(replicas)), expected, "{replicas}");
        }
    }

    /// Found by tests/properties.rs: the YAML reader meets an alias to no
    /// anchor before its key reaches serde, and named only the map.
    #[test]
    fn an_alias_to_no_anchor_names_its_field() {
        for (yaml, field) in [
            ("services:\n  - name: *a\n", "services[0].name: "),
            (
                "services:\n  - {namespace: x, name: *a}\n",
                "services[0].name: ",
            ),
            ("gateway:\n  queueDepth:  *a\n", "gateway.queueDepth: "),
            ("services: *a\n", "services: "),
            (
                "services:\n  - backend: {process: {command: [x, *a]}}\n",
                "services[0].backend.process.command: ",
            ),
        ] {
            let p = problems(yaml);
            assert!(
                p[0].contains(&format!("{field}alias references unknown anchor")),
                "{yaml}\n{p:?}"
            );
        }
    }

    #[test]
    fn global_and_service_knobs_share_one_range() {
        for knob in [
            "stableWindow: 1s",
            "panicWindowPercentage: 0.5",
            "panicThresholdPercentage: 100",
            "targetUtilization: 0",
            "scaleToZeroGracePeriod: 2h",
            "maxScaleUpRate: 1",
            "maxScaleDownRate: .inf",
        ] {
            let name = knob.split(':').next().unwrap();
            let global = problems(&format!("autoscaler:\n  {knob}\n"));
            let local = problems(&format!(
                "services:\n  - name: a\n    {knob}\n    backend: {{static: [\"127.0.0.1:1\"]}}\n"
            ));
            let strip = |p: &[String], prefix: &str| -> Vec<String> {
                p.iter().map(|x| x.replacen(prefix, "", 1)).collect()
            };
            assert_eq!(global.len(), 1, "{knob}: {global:?}");
            assert!(
                global[0].starts_with(&format!("autoscaler.{name}:")),
                "{global:?}"
            );
            assert_eq!(
                strip(&global, "autoscaler."),
                strip(&local, "services[0]."),
                "{knob}"
            );
        }
    }

    #[test]
    fn deep_or_large_files_are_refused_quickly() {
        let deep = format!("services: {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
        // A quadratic parser takes minutes on this; the bounded one stops
        // at the nesting limit.
        let p = problems(&deep);
        assert!(p[0].contains("services"), "{p:?}");
        let mapping = format!(
            "services: {}1{}\n",
            "{a: ".repeat(100_000),
            "}".repeat(100_000)
        );
        assert!(!problems(&mapping).is_empty());
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
        let err = Config::load(&big).unwrap_err().to_string();
        assert!(err.contains("larger than 1048576 bytes"), "{err}");
    }
}
