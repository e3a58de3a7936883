//! Gateway configs for tests, built instead of written out as YAML each
//! time. The result is YAML text: tests still hand it to the gateway as a
//! file, so it goes through the real parser.
//!
//! ```ignore
//! let yaml = ConfigBuilder::new()
//!     .gateway("requestTimeout", "5s")
//!     .service(tutorial(&[pod.addr]).set("containerConcurrency", "1"))
//!     .yaml();
//! ```
//!
//! Values are YAML as written in a config file (`5s`, `[a, b]`,
//! `{ enabled: true }`), so a test can also write what the parser refuses.

use std::fmt::{Display, Write};

/// A whole config: `listen` and `admin` on port 0 unless set, the
/// top-level sections as key/value pairs, and the services.
#[derive(Clone)]
pub struct ConfigBuilder {
    listen: String,
    admin: String,
    sections: Vec<(&'static str, Vec<(String, String)>)>,
    services: Vec<Service>,
}

/// One entry of `services`: name, namespace, its keys, and its backend.
#[derive(Clone)]
pub struct Service {
    name: String,
    namespace: String,
    keys: Vec<(String, String)>,
    backend: Backend,
    raw: String,
}

#[derive(Clone)]
enum Backend {
    /// `static: [addr, ...]`
    Static(Vec<String>),
    /// `process:` or `kubernetes:` with its keys.
    Map(&'static str, Vec<(String, String)>),
}

/// The tutorial's model, `redwine-week4` in `kserve-inference`, on these
/// static pods.
pub fn tutorial<A: Display>(pods: &[A]) -> Service {
    Service::static_pods("redwine-week4", "kserve-inference", pods)
}

/// A string as a YAML (JSON) double-quoted scalar.
pub fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

// === impl ConfigBuilder ===

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigBuilder {
    pub fn new() -> Self {
        ConfigBuilder {
            listen: "127.0.0.1:0".into(),
            admin: "127.0.0.1:0".into(),
            sections: Vec::new(),
            services: Vec::new(),
        }
    }

    /// The data listener's address (`127.0.0.1:0` unless set).
    pub fn listen(mut self, addr: impl Display) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// A key of the `gateway` section.
    pub fn gateway(self, key: &str, value: impl Display) -> Self {
        self.section("gateway", key, value)
    }

    /// A key of the `autoscaler` section.
    pub fn autoscaler(self, key: &str, value: impl Display) -> Self {
        self.section("autoscaler", key, value)
    }

    /// A key of the `tls` section.
    pub fn tls(self, key: &str, value: impl Display) -> Self {
        self.section("tls", key, value)
    }

    /// A key of the `kubernetes` section.
    pub fn kubernetes(self, key: &str, value: impl Display) -> Self {
        self.section("kubernetes", key, value)
    }

    pub fn service(mut self, service: Service) -> Self {
        self.services.push(service);
        self
    }

    fn section(mut self, section: &'static str, key: &str, value: impl Display) -> Self {
        let entry = (key.to_string(), value.to_string());
        match self.sections.iter_mut().find(|(name, _)| *name == section) {
            Some((_, keys)) => keys.push(entry),
            None => self.sections.push((section, vec![entry])),
        }
        self
    }

    /// The config as the YAML text of a config file.
    pub fn yaml(&self) -> String {
        let mut out = format!("listen: {}\nadmin: {}\n", self.listen, self.admin);
        for (section, keys) in &self.sections {
            writeln!(out, "{section}:").unwrap();
            write_keys(&mut out, "  ", keys);
        }
        if !self.services.is_empty() {
            out.push_str("services:\n");
        }
        for service in &self.services {
            service.write(&mut out);
        }
        out
    }
}

// === impl Service ===

impl Service {
    /// A service on a fixed list of pod addresses.
    pub fn static_pods<A: Display>(name: &str, namespace: &str, pods: &[A]) -> Self {
        let pods = pods.iter().map(|p| quoted(&p.to_string())).collect();
        Self::new(name, namespace, Backend::Static(pods))
    }

    /// A service whose pods are a Kubernetes Deployment's, on `port`.
    pub fn kubernetes(name: &str, namespace: &str, deployment: &str, port: u16) -> Self {
        let keys = vec![
            ("deployment".to_string(), deployment.to_string()),
            ("port".to_string(), port.to_string()),
        ];
        Self::new(name, namespace, Backend::Map("kubernetes", keys))
    }

    /// A service whose replicas are local processes running `command`
    /// (each argument quoted; `{port}` and `{name}` are left for sluice).
    pub fn process<S: AsRef<str>>(name: &str, namespace: &str, command: &[S]) -> Self {
        let args: Vec<String> = command.iter().map(|a| quoted(a.as_ref())).collect();
        let keys = vec![("command".to_string(), format!("[{}]", args.join(", ")))];
        Self::new(name, namespace, Backend::Map("process", keys))
    }

    /// A service whose replicas are this build's `sluice predictor`
    /// processes (serving the service's name as its model, logging at warn)
    /// with `args` added; a replica is ready when its model is.
    pub fn predictor(name: &str, namespace: &str, args: &[&str]) -> Self {
        let bin = env!("CARGO_BIN_EXE_sluice");
        let mut command = vec![
            bin,
            "predictor",
            "--port",
            "{port}",
            "--model-name",
            "{name}",
        ];
        command.extend_from_slice(&["--log", "warn"]);
        command.extend_from_slice(args);
        Self::process(name, namespace, &command)
            .backend("readinessPath", format!("/v1/models/{name}"))
            .backend("stopGracePeriod", "2s")
    }

    fn new(name: &str, namespace: &str, backend: Backend) -> Self {
        Service {
            name: name.into(),
            namespace: namespace.into(),
            keys: Vec::new(),
            backend,
            raw: String::new(),
        }
    }

    /// A key of the service (`minReplicas`, `containerConcurrency`, ...).
    pub fn set(mut self, key: &str, value: impl Display) -> Self {
        self.keys.push((key.to_string(), value.to_string()));
        self
    }

    /// A key of the `process` or `kubernetes` backend.
    pub fn backend(mut self, key: &str, value: impl Display) -> Self {
        match &mut self.backend {
            Backend::Map(_, keys) => keys.push((key.to_string(), value.to_string())),
            Backend::Static(_) => panic!("a static backend has no keys ({key})"),
        }
        self
    }

    /// Service keys as YAML text, each line indented by four spaces, as
    /// they would be in the file (for callers that already have them so).
    pub fn raw(mut self, yaml: &str) -> Self {
        self.raw.push_str(yaml);
        if !self.raw.is_empty() && !self.raw.ends_with('\n') {
            self.raw.push('\n');
        }
        self
    }

    fn write(&self, out: &mut String) {
        writeln!(out, "  - name: {}", self.name).unwrap();
        writeln!(out, "    namespace: {}", self.namespace).unwrap();
        write_keys(out, "    ", &self.keys);
        out.push_str("    backend:\n");
        match &self.backend {
            Backend::Static(pods) => writeln!(out, "      static: [{}]", pods.join(", ")).unwrap(),
            Backend::Map(kind, keys) => {
                writeln!(out, "      {kind}:").unwrap();
                write_keys(out, "        ", keys);
            }
        }
        out.push_str(&self.raw);
    }
}

fn write_keys(out: &mut String, indent: &str, keys: &[(String, String)]) {
    for (key, value) in keys {
        writeln!(out, "{indent}{key}: {value}").unwrap();
    }
}
