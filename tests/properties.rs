//! Properties of what sluice reads from outside (issue 15): a configuration
//! file is refused with its field named, or the gateway can run it; an
//! AdmissionReview is answered well, or refused with a message. Never a
//! panic, whatever the input (proptest reports a panic as a failure, with
//! the smallest input it could shrink it to).

#[path = "properties/review.rs"]
mod review;
#[path = "properties/runs.rs"]
mod runs;
#[path = "properties/tree.rs"]
mod tree;

use self::tree::{Mutation, Node};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use sluice::config::{Config, ConfigError, MAX_NESTING};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longer than any parse of these small inputs takes, even in a debug
/// build on a busy machine; a parser that is quadratic on some input is not.
pub const QUICK: Duration = Duration::from_secs(2);

// === Configuration: mutations of the shipped examples ===

const EXAMPLES: &[(&str, &str)] = &[
    ("config/local.yaml", include_str!("../config/local.yaml")),
    (
        "config/examples/fixed-3.yaml",
        include_str!("../config/examples/fixed-3.yaml"),
    ),
    (
        "config/examples/kubernetes.yaml",
        include_str!("../config/examples/kubernetes.yaml"),
    ),
    (
        "config/examples/scale-to-zero.yaml",
        include_str!("../config/examples/scale-to-zero.yaml"),
    ),
    (
        "config/examples/sidecar.yaml",
        include_str!("../config/examples/sidecar.yaml"),
    ),
    (
        "config/examples/static.yaml",
        include_str!("../config/examples/static.yaml"),
    ),
    (
        "config/examples/vllm.yaml",
        include_str!("../config/examples/vllm.yaml"),
    ),
];

/// Values that have broken configuration parsers, or sluice: out of every
/// range, at the edge of one, of the wrong type, or odd YAML.
#[rustfmt::skip]
const INTERESTING: &[&str] = &[
    "0", "-0", "1", "-1", "2", "8", "100", "110", "1000", "10000", "100000", "1000000",
    "1000001", "1e6", "1e20", "-1e20", "1e308", "1e309", "1e-300", "5e-324", "0.0", "-0.0",
    "0.01", "0.009", "0.5", "1.0", "1.01", "4294967295", "4294967296", "65535", "65536",
    "18446744073709551615", "18446744073709551616", "-9223372036854775809", ".nan", ".NaN",
    ".inf", "-.inf", "nan", "inf", "0x10", "0o7", "1_000", "0s", "1ns", "999us", "1ms", "2s",
    "60s", "61s", "1m", "1h", "3600s", "3601s", "24h", "1day", "25h", "1y", "500000000000y",
    "18446744073709551615s", "18446744073709551616s", "-1s", "1h 30m", "1.5s", "s", "\"\"",
    "''", "\" \"", "null", "~", "true", "false", "yes", "no", "[]", "{}", "[1, 2]", "[\"a\"]",
    "[\"\"]", "{a: 1}", "{static: [\"127.0.0.1:1\"]}", "{process: {command: [m]}}",
    "{kubernetes: {deployment: d, port: 80}}", "\"127.0.0.1:0\"", "127.0.0.1:9091",
    "127.0.0.1:30200", "\"[::1]:80\"", "\"host:1\"", "localhost", "\"a..b\"", "\"a.-b\"",
    "\"-a\"", "UPPER", "\"a b\"", "\"/\"", "no-slash", "\"@\"", "\"user@host:80\"", "\"é\"",
    "\"\\0\"", "\"\\u202e\"", "&a 1", "*a", "!!binary aGk=", "!!str 1", "!!float 1",
    "!!int 1.5", "!custom x", "10MiB", "12 parsecs", "18446744073709551615GiB", "1KiB", "1023",
    "8MiB", "9MiB", "pods", "gateway", "rps", "concurrency", "Pods",
];

const UNITS: &[&str] = &[
    "", "ns", "us", "ms", "s", "m", "h", "d", "w", "M", "y", "KiB", "GB",
];

/// A value for any field: mostly [`INTERESTING`], else generated.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(INTERESTING).prop_map(String::from),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|x| format!("{x:?}")),
        2 => (any::<u64>(), select(UNITS)).prop_map(|(n, unit)| format!("{n}{unit}")),
        1 => (0usize..4000).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
        1 => (1..MAX_NESTING + 8).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        1 => (1..MAX_NESTING + 8).prop_map(|n| format!("{}1{}", "{a: ".repeat(n), "}".repeat(n))),
    ]
}

/// Values a field may hold, at the edges of its range or just past them:
/// the largest and smallest a config may hold are the likeliest to break
/// what runs it.
#[rustfmt::skip]
fn edges(field: &str) -> &'static [&'static str] {
    let durations = ["Timeout", "Window", "Period", "Interval", "Duration", "Deadline", "Delay"];
    let is_duration = matches!(field, "interval" | "timeout" | "staleAfter");
    if is_duration || durations.iter().any(|end| field.ends_with(end)) {
        return &[
            "0s", "1ms", "1s", "2s", "60s", "300s", "1h", "3600s", "24h", "1day", "999us",
            "3601s", "25h", "1y", "500000000000y", "18446744073709551615s",
        ];
    }
    match field {
        "listen" | "admin" => &["127.0.0.1:0", "\"[::1]:0\"", "0.0.0.0:65535"],
        "domain" => &["x", "a-b.c_d", "Example.COM", "127.0.0.1"],
        "name" | "namespace" | "service" | "leaseName" | "identity" | "leaseNamespace" => {
            &["a", "0", "a-0", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk"]
        }
        "deployment" => &["a", "a.b-c"],
        "hosts" | "namespaces" => &["[]", "[x]", "[\"a.b\", \"c\"]"],
        "static" => &["[\"127.0.0.1:1\"]", "[\"localhost:65535\", \"[::1]:1\"]", "[\"a:0\"]"],
        "command" => &["[x]", "[\"{sluice}\", \"{port}\", \"{name}\"]", "[\"\\0\"]"],
        "readinessPath" => &["/", "/?a=b", "/{name}", "/a b", "\"/\\u00e9\"", "/\\"],
        "env" => &["{}", "{A: \"{port}\"}", "{\"\": x}", "{\"A=B\": x}", "{A: \"\\0\"}"],
        "sidecar" => &["{}", "{executable: x}"],
        "executable" | "kubeconfig" => &["x", "/nonexistent"],
        "enabled" => &["true", "false"],
        "metrics" => &["gateway", "pods"],
        "scaleMetric" => &["concurrency", "rps", "queue"],
        "podMetrics" => &["{}", "{ port: 1 }"],
        "format" => &["vllm", "tgi"],
        "path" => &["/metrics", "/", "metrics", "/a b", "/?a=b"],
        "running" | "waiting" | "kvCacheUsage" => &["vllm:x", "\"\"", "9a", "a_b:c", "\"a b\""],
        _ => &[
            "0", "1", "1.01", "0.01", "100", "110", "1000", "10000", "100000", "1000000", "1e6",
            "65535", "-1", "0.009", "1000001", "1e20", ".nan", ".inf", "4294967296",
        ],
    }
}

/// Any field set to a value at the edge of its range, or just past it.
fn edge() -> impl Strategy<Value = Mutation> {
    select(tree::FIELDS).prop_flat_map(|field| {
        let last = field[field.len() - 1];
        (any::<usize>(), select(edges(last)))
            .prop_map(move |(service, v)| Mutation::Set(field, service, v.to_string()))
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        1 => any::<Index>().prop_map(Mutation::Delete),
        1 => (any::<Index>(), "[a-zA-Z][a-zA-Z0-9]{0,12}", value())
            .prop_map(|(at, key, v)| Mutation::AddUnknown(at, key, v)),
        1 => (any::<Index>(), value()).prop_map(|(at, v)| Mutation::Duplicate(at, v)),
        4 => (select(tree::FIELDS), any::<usize>(), value())
            .prop_map(|(field, service, v)| Mutation::Set(field, service, v)),
        2 => edge(),
    ]
}

/// Every line of the error names one of `names` (a mutated key or its path).
fn names_a_field(error: &ConfigError, names: &[String]) -> Result<(), String> {
    let lines = match error {
        ConfigError::Invalid { problems, .. } => problems.clone(),
        other => vec![other.to_string()],
    };
    match lines
        .iter()
        .find(|line| !names.iter().any(|name| line.contains(name.as_str())))
    {
        Some(line) => Err(format!("{line:?} names none of {names:?}")),
        None => Ok(()),
    }
}

/// Parses `text`, checking it is quick; an accepted configuration must run.
fn refused_or_runs(text: &str) -> Result<Result<(), ConfigError>, TestCaseError> {
    let started = Instant::now();
    let parsed = Config::parse(text);
    let took = started.elapsed();
    prop_assert!(took < QUICK, "parsing took {took:?}");
    match parsed {
        Ok(config) => {
            runs::check(&config).map_err(|e| TestCaseError::fail(format!("accepted, but {e}")))?;
            Ok(Ok(()))
        }
        Err(error) => Ok(Err(error)),
    }
}

#[test]
fn the_examples_are_accepted_and_run() {
    for (path, text) in EXAMPLES {
        let config = Config::parse(text).unwrap_or_else(|e| panic!("{path}: {e}"));
        runs::check(&config).unwrap_or_else(|e| panic!("{path}: {e}"));
        // The tree this file mutates writes the example back as it was.
        let again = Node::parse(text).to_yaml();
        assert_eq!(Config::parse(&again).unwrap(), config, "{path}:\n{again}");
    }
}

/// The example's tree, read once.
fn tree_of(example: &str) -> Node {
    static TREES: OnceLock<Vec<Node>> = OnceLock::new();
    let trees = TREES.get_or_init(|| EXAMPLES.iter().map(|(_, text)| Node::parse(text)).collect());
    let i = EXAMPLES
        .iter()
        .position(|(_, text)| *text == example)
        .unwrap();
    trees[i].clone()
}

/// The example, mutated, is refused with every problem naming a mutated
/// field, or it runs.
fn mutated_is_refused_with_its_field_or_runs(
    example: &(&str, &str),
    mutations: &[Mutation],
) -> Result<(), TestCaseError> {
    let mut node = tree_of(example.1);
    let mut names = Vec::new();
    for m in mutations {
        names.extend(node.apply(m));
    }
    let text = node.to_yaml();
    if let Err(error) = refused_or_runs(&text)? {
        let named = names_a_field(&error, &names);
        prop_assert!(
            named.is_ok(),
            "{}\n--- {}, mutated:\n{text}",
            named.unwrap_err(),
            example.0
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// One to four mutations of any kind: most are refused.
    #[test]
    fn a_mutated_example_is_refused_with_its_field_or_runs(
        example in select(EXAMPLES),
        mutations in prop::collection::vec(mutation(), 1..=4),
    ) {
        mutated_is_refused_with_its_field_or_runs(&example, &mutations)?;
    }

    /// One to four fields at the edges of their ranges: many are accepted,
    /// with the largest timers and windows together.
    #[test]
    fn an_example_at_the_edges_is_refused_with_its_field_or_runs(
        example in select(EXAMPLES),
        mutations in prop::collection::vec(edge(), 1..=4),
    ) {
        mutated_is_refused_with_its_field_or_runs(&example, &mutations)?;
    }
}

/// Every field alone at every edge value: the same property, exhaustively
/// where one field is enough to break it. In the examples of both scaling
/// backends (local processes, Kubernetes); the others are left to the
/// random properties, to keep this one to a couple of seconds.
#[test]
fn every_field_at_every_edge_is_refused_with_its_field_or_runs() {
    let scaling = ["config/local.yaml", "config/examples/kubernetes.yaml"];
    for example in EXAMPLES.iter().filter(|(path, _)| scaling.contains(path)) {
        for field in tree::FIELDS {
            for value in edges(field[field.len() - 1]) {
                let set = Mutation::Set(field, 0, value.to_string());
                mutated_is_refused_with_its_field_or_runs(example, &[set])
                    .unwrap_or_else(|e| panic!("{field:?} = {value}: {e}"));
            }
        }
    }
}

// === Configuration: random text and bytes ===

/// Lines of YAML made of sluice's own keys and odd values, indented at random.
fn yamlish() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        4 => select(tree::KEYS).prop_map(String::from),
        1 => "[ -~]{0,8}",
    ];
    let line = (0usize..8, any::<bool>(), key, prop::option::of(value())).prop_map(
        |(indent, item, key, value)| {
            let dash = if item { "- " } else { "" };
            let value = value.map(|v| format!(" {v}")).unwrap_or_default();
            format!("{}{dash}{key}:{value}", " ".repeat(indent * 2))
        },
    );
    prop_oneof![
        4 => prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n")),
        1 => "[-a-z0-9:{}\\[\\],#&*!|>'\"%@` \n\t.?]{0,200}",
        1 => ".{0,100}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the text, parsing returns quickly; if it accepts, it runs.
    #[test]
    fn any_text_is_refused_or_runs(text in yamlish()) {
        if let Err(error) = refused_or_runs(&text)? {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    /// The same for any bytes, read as a configuration file is.
    #[test]
    fn any_bytes_are_refused_or_run(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(text) = sluice::config::text_of(Path::new("random.yaml"), bytes) {
            refused_or_runs(&text)?.ok();
        }
    }
}

/// Nesting just under, at and over the limit, in every YAML style, and
/// alias bombs: refused quickly, with the field named, never a stack
/// overflow. Past the limit, flow nesting stops the reader itself.
#[test]
fn deep_nesting_and_alias_bombs_are_refused_quickly() {
    let limit = "recursion limit exceeded";
    let mut cases = Vec::new();
    for depth in [
        MAX_NESTING - 2,
        MAX_NESTING - 1,
        MAX_NESTING,
        MAX_NESTING + 1,
        MAX_NESTING + 2,
        1_000,
        100_000,
    ] {
        let flow = format!("services: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        let over = depth > MAX_NESTING;
        cases.push((flow, "services", Some(over)));
        let flow_map = format!("services: {}1{}\n", "{a: ".repeat(depth), "}".repeat(depth));
        cases.push((flow_map, "services", None));
        let mixed = format!(
            "gateway:\n  queueDepth: {}1{}\n",
            "[{a: ".repeat(depth / 2),
            "}]".repeat(depth / 2)
        );
        cases.push((mixed, "queueDepth", None));
        let indent = |i| " ".repeat(i);
        let block_map: String = (0..depth.min(5_000))
            .map(|i| format!("{}a:\n", indent(i)))
            .collect();
        cases.push((format!("services:\n{block_map}"), "services", None));
        let block_list: String = (0..depth.min(5_000))
            .map(|i| format!("{}-\n", indent(i)))
            .collect();
        cases.push((format!("services:\n{block_list}"), "services", None));
    }
    // A billion laughs: each level ten aliases of the one below.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    cases.push((bomb.clone(), "a0", None));
    cases.push((
        format!("services:\n  - name: a\n    hosts: *a9\n{bomb}"),
        "a",
        None,
    ));
    // Tens of thousands of aliases of one host: flat, but large expanded.
    // Refused as a whole (the reader's alias budget), not for a field.
    for aliases in [40_000, 60_000] {
        let hosts = vec!["*h"; aliases].join(", ");
        let host = "h".repeat(63);
        let flat = format!(
            "services:\n  - name: a\n    hosts: [&h {host}, {hosts}]\n    backend: {{static: [\"127.0.0.1:1\"]}}\n"
        );
        cases.push((flat, "budget breached", None));
    }
    for (text, field, over_limit) in cases {
        let started = Instant::now();
        let parsed = Config::parse(&text);
        let took = started.elapsed();
        let head: String = text.chars().take(80).collect();
        assert!(took < QUICK, "{took:?} for {head}...");
        let error = parsed.expect_err(&head).to_string();
        assert!(error.contains(field), "{head}...: {error:.300}");
        if let Some(over) = over_limit {
            assert_eq!(error.contains(limit), over, "{head}...: {error:.300}");
        }
    }
}
