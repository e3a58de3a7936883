//! What a configuration file may say, case by case.

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
            .any(|x| x.contains("services[1].hosts[0]") && x.contains("already used by default/a")),
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
        p.iter().any(
            |x| x.contains("services[0].backend: exactly one of static, process or kubernetes")
        ),
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
                format!("gateway:\n  modelPeekLimit: 10\n{}", service("")),
                "gateway.modelPeekLimit: must be between 1024 and 67108864, got 10",
            ),
            (
                service("    modelAliases: [\"\", \"has space\", redwine, redwine]\n"),
                "services[0].modelAliases[0]: must be 1 to 253 bytes long",
            ),
            (
                service("    modelAliases: [\"has space\"]\n"),
                "services[0].modelAliases[0]: \"has space\" must not contain spaces",
            ),
            (
                service("    modelAliases: [llama, llama]\n"),
                "services[0].modelAliases[1]: \"llama\" names this service's model already",
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
        format!("services:\n  - name: a\n{replicas}    backend: {{static: [\"127.0.0.1:1\"]}}\n")
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
        "scaleDownDelay: 61m",
        "initialScale: 10001",
        "activationScale: 0",
        "scaleToZeroPodRetentionPeriod: 2h",
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

#[test]
fn pod_metrics_take_their_defaults_and_bad_values_are_named() {
    let yaml = GOOD.replace("minReplicas: 3", "minReplicas: 3\n    podMetrics: {}");
    let config = Config::parse(&yaml).unwrap();
    let m = config.services[0].pod_metrics.as_ref().unwrap();
    assert_eq!(m.path, "/metrics");
    assert_eq!(m.port, None);
    assert_eq!(m.interval.0.as_millis(), 50);
    assert_eq!(m.stale_after.0.as_millis(), 500);
    assert_eq!(m.timeout().as_millis(), 50, "unset: the interval");

    let bad = GOOD.replace(
        "minReplicas: 3",
        "minReplicas: 3\n    podMetrics:\n      interval: 5ms\n      staleAfter: 5ms\n      \
         path: metrics\n      port: 0\n      names: { waiting: \"\", running: \"9lives\" }",
    );
    let p = problems(&bad);
    let has = |needle: &str| p.iter().any(|x| x.contains(needle));
    assert!(
        has("services[0].podMetrics.interval: must be between 10ms and 1m, got 5ms"),
        "{p:?}"
    );
    assert!(
        has("services[0].podMetrics.staleAfter: must be longer than interval (5ms)"),
        "{p:?}"
    );
    assert!(has("services[0].podMetrics.path: \"metrics\""), "{p:?}");
    assert!(
        has("services[0].podMetrics.port: must be between 1"),
        "{p:?}"
    );
    assert!(has("services[0].podMetrics.names.waiting: \"\""), "{p:?}");
    assert!(
        has("services[0].podMetrics.names.running: \"9lives\""),
        "{p:?}"
    );

    let unknown = GOOD.replace(
        "minReplicas: 3",
        "minReplicas: 3\n    podMetrics: { every: 1s }",
    );
    assert!(problems(&unknown)[0].contains("unknown field `every`"));
    let format = GOOD.replace(
        "minReplicas: 3",
        "minReplicas: 3\n    podMetrics: { format: tgi }",
    );
    assert!(
        problems(&format)[0].contains("tgi"),
        "{:?}",
        problems(&format)
    );
}

#[test]
fn scale_metric_queue_needs_pod_metrics() {
    let queue = GOOD.replace("minReplicas: 3", "minReplicas: 3\n    scaleMetric: queue");
    assert_eq!(
        problems(&queue),
        ["services[0].scaleMetric: queue is what the model servers report, so it needs podMetrics"]
    );
    let with = queue.replace(
        "scaleMetric: queue",
        "scaleMetric: queue\n    podMetrics: {}",
    );
    assert_eq!(problems(&with), Vec::<String>::new());
}
