//! A YAML document as a tree that, unlike a YAML library's, may hold a key
//! twice and any raw scalar text (`.nan`, `500000000000y`, `[[[]]]`), and
//! the mutations the configuration properties make to it.

use proptest::sample::Index;

#[derive(Clone, Debug)]
pub enum Node {
    /// A scalar, or a flow collection, written as is.
    Raw(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

#[derive(Clone, Debug)]
pub enum Mutation {
    /// The value at any place becomes this text.
    Replace(Index, String),
    /// A map entry or list item goes.
    Delete(Index),
    /// A map (the one at a place, else the one holding it) gets a key
    /// sluice does not know.
    AddUnknown(Index, String, String),
    /// A map entry is written a second time, with this value.
    Duplicate(Index, String),
    /// A field of the schema is set, with the maps it needs. A path that
    /// starts with `services` is in the service at this index (modulo
    /// their number).
    Set(&'static [&'static str], usize, String),
}

/// Every field of the configuration file.
pub const FIELDS: &[&[&str]] = &[
    &["listen"],
    &["admin"],
    &["domain"],
    &["autoscaler", "tickInterval"],
    &["autoscaler", "stableWindow"],
    &["autoscaler", "panicWindowPercentage"],
    &["autoscaler", "panicThresholdPercentage"],
    &["autoscaler", "targetUtilization"],
    &["autoscaler", "scaleToZeroGracePeriod"],
    &["autoscaler", "maxScaleUpRate"],
    &["autoscaler", "maxScaleDownRate"],
    &["autoscaler", "scaleDownDelay"],
    &["autoscaler", "initialScale"],
    &["autoscaler", "activationScale"],
    &["autoscaler", "scaleToZeroPodRetentionPeriod"],
    &["gateway", "requestTimeout"],
    &["gateway", "connectTimeout"],
    &["gateway", "upstreamIdleTimeout"],
    &["gateway", "queueDepth"],
    &["gateway", "queueTimeout"],
    &["gateway", "activationTimeout"],
    &["gateway", "maxRequestBodySize"],
    &["gateway", "maxHeaderSize"],
    &["gateway", "maxHeaderCount"],
    &["gateway", "shutdownGracePeriod"],
    &["gateway", "connections", "firstByteTimeout"],
    &["gateway", "connections", "headerReadTimeout"],
    &["gateway", "connections", "idleTimeout"],
    &["gateway", "connections", "http2KeepAliveInterval"],
    &["gateway", "connections", "http2KeepAliveTimeout"],
    &["gateway", "connections", "maxConnections"],
    &["kubernetes", "kubeconfig"],
    &["kubernetes", "leaderElection", "enabled"],
    &["kubernetes", "leaderElection", "leaseName"],
    &["kubernetes", "leaderElection", "leaseNamespace"],
    &["kubernetes", "leaderElection", "identity"],
    &["kubernetes", "leaderElection", "leaseDuration"],
    &["kubernetes", "leaderElection", "renewDeadline"],
    &["kubernetes", "leaderElection", "retryPeriod"],
    &["kubernetes", "inferenceServices", "enabled"],
    &["kubernetes", "inferenceServices", "namespaces"],
    &["kubernetes", "inferenceServices", "port"],
    &["kubernetes", "inferenceServices", "metrics"],
    &["kubernetes", "inferenceServices", "podMetricsPort"],
    &["services", "name"],
    &["services", "namespace"],
    &["services", "hosts"],
    &["services", "minReplicas"],
    &["services", "maxReplicas"],
    &["services", "scaleTarget"],
    &["services", "scaleMetric"],
    &["services", "containerConcurrency"],
    &["services", "metrics"],
    &["services", "podMetricsPort"],
    &["services", "podMetrics"],
    &["services", "podMetrics", "format"],
    &["services", "podMetrics", "names", "running"],
    &["services", "podMetrics", "names", "waiting"],
    &["services", "podMetrics", "names", "kvCacheUsage"],
    &["services", "podMetrics", "path"],
    &["services", "podMetrics", "port"],
    &["services", "podMetrics", "interval"],
    &["services", "podMetrics", "staleAfter"],
    &["services", "podMetrics", "timeout"],
    &["services", "requestTimeout"],
    &["services", "queueDepth"],
    &["services", "queueTimeout"],
    &["services", "activationTimeout"],
    &["services", "stableWindow"],
    &["services", "panicWindowPercentage"],
    &["services", "panicThresholdPercentage"],
    &["services", "targetUtilization"],
    &["services", "scaleToZeroGracePeriod"],
    &["services", "maxScaleUpRate"],
    &["services", "maxScaleDownRate"],
    &["services", "scaleDownDelay"],
    &["services", "initialScale"],
    &["services", "activationScale"],
    &["services", "scaleToZeroPodRetentionPeriod"],
    &["services", "backend", "static"],
    &["services", "backend", "process", "command"],
    &["services", "backend", "process", "readinessPath"],
    &["services", "backend", "process", "env"],
    &["services", "backend", "process", "startupTimeout"],
    &["services", "backend", "process", "stopGracePeriod"],
    &["services", "backend", "process", "sidecar"],
    &["services", "backend", "process", "sidecar", "executable"],
    &["services", "backend", "kubernetes", "deployment"],
    &["services", "backend", "kubernetes", "service"],
    &["services", "backend", "kubernetes", "port"],
];

/// Every key of the configuration file.
#[rustfmt::skip]
pub const KEYS: &[&str] = &[
    "listen", "admin", "domain", "autoscaler", "tickInterval", "stableWindow",
    "panicWindowPercentage", "panicThresholdPercentage", "targetUtilization",
    "scaleToZeroGracePeriod", "maxScaleUpRate", "maxScaleDownRate", "gateway", "requestTimeout",
    "connectTimeout", "upstreamIdleTimeout", "queueDepth", "queueTimeout", "activationTimeout",
    "maxRequestBodySize", "maxHeaderSize", "maxHeaderCount", "shutdownGracePeriod",
    "connections", "firstByteTimeout", "headerReadTimeout", "idleTimeout",
    "http2KeepAliveInterval", "http2KeepAliveTimeout", "maxConnections", "kubernetes", "kubeconfig",
    "leaderElection", "enabled", "leaseName", "leaseNamespace", "identity", "leaseDuration",
    "renewDeadline", "retryPeriod", "inferenceServices", "namespaces", "port", "metrics",
    "podMetricsPort", "services", "name", "namespace", "hosts", "minReplicas", "maxReplicas",
    "scaleTarget", "scaleMetric", "containerConcurrency", "backend", "static", "process",
    "command", "readinessPath", "env", "startupTimeout", "stopGracePeriod", "sidecar",
    "executable", "deployment", "service", "scaleDownDelay", "initialScale", "activationScale",
    "scaleToZeroPodRetentionPeriod", "podMetrics", "format", "names", "running", "waiting",
    "kvCacheUsage", "path", "interval", "staleAfter", "timeout",
];

/// Where a node is: child indexes from the root, its path as sluice's
/// errors write it (`services[0].backend.process.command[2]`), and the key
/// it is under (for a list item, the list's).
struct Place {
    steps: Vec<usize>,
    path: String,
    key: String,
}

// === impl Node ===

impl Node {
    /// The tree of a YAML document (the examples: string keys, no tags).
    pub fn parse(text: &str) -> Node {
        Node::from_yaml(&serde_yaml_ng::from_str(text).unwrap())
    }

    fn from_yaml(value: &serde_yaml_ng::Value) -> Node {
        use serde_yaml_ng::Value as Y;
        match value {
            Y::Sequence(items) => Node::List(items.iter().map(Node::from_yaml).collect()),
            Y::Mapping(map) => Node::Map(
                map.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_string(), Node::from_yaml(v)))
                    .collect(),
            ),
            // A JSON string is a YAML double-quoted one.
            Y::String(s) => Node::Raw(serde_json::to_string(s).unwrap()),
            Y::Number(n) => Node::Raw(n.to_string()),
            Y::Bool(b) => Node::Raw(b.to_string()),
            Y::Null => Node::Raw("null".into()),
            Y::Tagged(_) => unreachable!("the examples have no tags"),
        }
    }

    /// Block-style YAML, keys in order, duplicates kept.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        self.write(0, &mut out);
        out
    }

    fn write(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Node::List(items) if !items.is_empty() => {
                for item in items {
                    out.push_str(&pad);
                    out.push('-');
                    item.write_after(indent, out);
                }
            }
            Node::Map(entries) if !entries.is_empty() => {
                for (key, value) in entries {
                    out.push_str(&pad);
                    out.push_str(key);
                    out.push(':');
                    value.write_after(indent, out);
                }
            }
            _ => {
                out.push_str(&pad);
                self.write_after(indent, out);
            }
        }
    }

    /// After `key:` or `-`: a scalar on the same line, a collection below.
    fn write_after(&self, indent: usize, out: &mut String) {
        match self {
            Node::Raw(text) => out.push_str(&format!(" {text}\n")),
            Node::List(items) if items.is_empty() => out.push_str(" []\n"),
            Node::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
            collection => {
                out.push('\n');
                collection.write(indent + 2, out);
            }
        }
    }

    /// Applies the mutation; returns the names an error about it may use:
    /// the keys it changed, added or removed, and their paths.
    pub fn apply(&mut self, mutation: &Mutation) -> Vec<String> {
        let places = self.places();
        if places.is_empty() && !matches!(mutation, Mutation::Set(..)) {
            return vec![];
        }
        match mutation {
            Mutation::Replace(at, value) => {
                let place = at.get(&places);
                *self.at(&place.steps) = Node::Raw(value.clone());
                vec![place.key.clone(), place.path.clone()]
            }
            Mutation::Delete(at) => {
                let place = at.get(&places);
                let (last, parent) = place.steps.split_last().unwrap();
                match self.at(parent) {
                    Node::Map(entries) => drop(entries.remove(*last)),
                    Node::List(items) => drop(items.remove(*last)),
                    Node::Raw(_) => unreachable!(),
                }
                vec![place.key.clone(), place.path.clone()]
            }
            Mutation::AddUnknown(at, key, value) => {
                let place = at.get(&places);
                let steps = &place.steps;
                let map = [&steps[..], &steps[..steps.len() - 1], &[]]
                    .into_iter()
                    .find(|s| matches!(self.at_ref(s), Node::Map(_)))
                    .unwrap()
                    .to_vec();
                if let Node::Map(entries) = self.at(&map) {
                    entries.push((key.clone(), Node::Raw(value.clone())));
                }
                vec![key.clone()]
            }
            Mutation::Duplicate(at, value) => {
                let place = at.get(&places);
                let (last, parent) = place.steps.split_last().unwrap();
                match self.at(parent) {
                    Node::Map(entries) => {
                        let key = entries[*last].0.clone();
                        entries.push((key.clone(), Node::Raw(value.clone())));
                        vec![key, place.path.clone()]
                    }
                    _ => vec![],
                }
            }
            Mutation::Set(field, service, value) => self.set(field, *service, value),
        }
    }

    fn set(&mut self, field: &[&str], service: usize, value: &str) -> Vec<String> {
        let (mut here, mut path, keys) = match field {
            ["services", rest @ ..] => match self.get_mut("services") {
                Some(Node::List(services)) if !services.is_empty() => {
                    let i = service % services.len();
                    (&mut services[i], format!("services[{i}]"), rest)
                }
                _ => return vec![],
            },
            _ => (self, String::new(), field),
        };
        let mut names = Vec::new();
        let (last, parents) = keys.split_last().unwrap();
        for key in parents {
            if !matches!(here, Node::Map(_)) {
                return vec![];
            }
            path = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            };
            if here.get_mut(key).is_none() {
                // A map that was not there is part of what changed.
                names.push(key.to_string());
                if let Node::Map(entries) = here {
                    entries.push((key.to_string(), Node::Map(vec![])));
                }
            }
            here = here.get_mut(key).unwrap();
        }
        let Node::Map(entries) = here else {
            return vec![];
        };
        match entries.iter_mut().find(|(k, _)| k == last) {
            Some((_, old)) => *old = Node::Raw(value.to_string()),
            None => entries.push((last.to_string(), Node::Raw(value.to_string()))),
        }
        let path = if path.is_empty() {
            last.to_string()
        } else {
            format!("{path}.{last}")
        };
        names.extend([last.to_string(), path]);
        names
    }

    /// The last value under `key`, as a YAML parser keeps it.
    fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match self {
            Node::Map(entries) => entries
                .iter_mut()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn at(&mut self, steps: &[usize]) -> &mut Node {
        steps.iter().fold(self, |node, &i| match node {
            Node::Map(entries) => &mut entries[i].1,
            Node::List(items) => &mut items[i],
            Node::Raw(_) => unreachable!(),
        })
    }

    fn at_ref(&self, steps: &[usize]) -> &Node {
        steps.iter().fold(self, |node, &i| match node {
            Node::Map(entries) => &entries[i].1,
            Node::List(items) => &items[i],
            Node::Raw(_) => unreachable!(),
        })
    }

    /// Every node but the root.
    fn places(&self) -> Vec<Place> {
        let mut out = Vec::new();
        self.collect(&[], "", "", &mut out);
        out
    }

    fn collect(&self, steps: &[usize], path: &str, key: &str, out: &mut Vec<Place>) {
        let children: Vec<(String, String, &Node)> = match self {
            Node::Map(entries) => entries
                .iter()
                .map(|(k, v)| {
                    let path = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    (path, k.clone(), v)
                })
                .collect(),
            Node::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}[{i}]"), key.to_string(), v))
                .collect(),
            Node::Raw(_) => vec![],
        };
        for (i, (path, key, child)) in children.into_iter().enumerate() {
            let steps = [steps, &[i]].concat();
            out.push(Place {
                steps: steps.clone(),
                path: path.clone(),
                key: key.clone(),
            });
            child.collect(&steps, &path, &key, out);
        }
    }
}
