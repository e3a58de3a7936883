//! Which service a request is for: by Host, else by the model named in the
//! path, in a gRPC call's first message, or in an OpenAI-style JSON body.
//!
//! The table is built whole from a configuration and swapped whole on reload,
//! so a lookup is two hash probes at most, whatever the number of services.

mod grpc_model;
mod host;
mod model_path;
mod openai;

pub use self::grpc_model::{grpc_model, names_a_model, GrpcModel, MAX_PREFIX};
pub use self::host::normalize_host;
pub use self::model_path::model_name;
pub use self::openai::{body_model, is_model_list, names_model_in_body, BodyModel};

use std::borrow::Cow;
use std::collections::HashMap;

/// No configured service matches the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no service for host {host:?} and path {path:?}")]
pub struct RouteNotFound {
    pub host: String,
    pub path: String,
}

/// Maps hosts and model names to services of type `S`.
#[derive(Debug)]
pub struct RouteTable<S> {
    by_host: HashMap<String, S>,
    by_model: HashMap<String, S>,
    services: Vec<S>,
}

// === impl RouteTable ===

impl<S: Clone> RouteTable<S> {
    /// Builds a table from `(service, hosts, model names)` entries.
    ///
    /// Hosts are expected unique (config validation ensures it). A model name
    /// shared by services (in different namespaces, or as an alias) is
    /// ambiguous: it is left out of model routing, and returned so the
    /// caller can say so.
    pub fn build<'a>(
        entries: impl IntoIterator<Item = (S, Vec<String>, Vec<&'a str>)>,
    ) -> (Self, Vec<String>) {
        let mut by_host = HashMap::new();
        let mut by_model = HashMap::new();
        let mut ambiguous = Vec::new();
        let mut services = Vec::new();
        for (service, hosts, models) in entries {
            for host in hosts {
                by_host.insert(normalize_host(&host).into_owned(), service.clone());
            }
            for model in models {
                if by_model
                    .insert(model.to_string(), service.clone())
                    .is_some()
                {
                    ambiguous.push(model.to_string());
                }
            }
            services.push(service);
        }
        for model in &ambiguous {
            by_model.remove(model);
        }
        (
            RouteTable {
                by_host,
                by_model,
                services,
            },
            ambiguous,
        )
    }

    /// Finds the service for a request's Host (or `:authority`) and path.
    pub fn route(&self, host: Option<&str>, path: &str) -> Result<&S, RouteNotFound> {
        let normal: Option<Cow<'_, str>> = host.map(normalize_host);
        if let Some(service) = normal.as_deref().and_then(|h| self.by_host.get(h)) {
            return Ok(service);
        }
        model_name(path)
            .and_then(|name| self.by_model.get(name))
            .ok_or_else(|| RouteNotFound {
                host: host.unwrap_or_default().to_string(),
                path: path.to_string(),
            })
    }

    /// The service of a model name (from a gRPC call's message or a JSON body).
    pub fn route_model(&self, name: &str) -> Option<&S> {
        self.by_model.get(name)
    }

    /// Every model name that routes, with its service, by name.
    pub fn models(&self) -> Vec<(&str, &S)> {
        let mut models: Vec<_> = self
            .by_model
            .iter()
            .map(|(name, service)| (name.as_str(), service))
            .collect();
        models.sort_unstable_by(|a, b| a.0.cmp(b.0));
        models
    }

    pub fn services(&self) -> &[S] {
        &self.services
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable<&'static str> {
        let (table, ambiguous) = RouteTable::build([
            (
                "redwine",
                vec![
                    "redwine-week4.kserve-inference.example.com".to_string(),
                    "Wine.Example.ORG".to_string(),
                ],
                vec!["redwine-week4", "wine"],
            ),
            (
                "iris",
                vec!["iris.default.example.com".to_string()],
                vec!["iris"],
            ),
            (
                "iris-b",
                vec!["iris.team-b.example.com".to_string()],
                vec!["iris"],
            ),
        ]);
        assert_eq!(ambiguous, vec!["iris".to_string()]);
        table
    }

    #[test]
    fn models_route_by_name_or_alias_and_list_sorted() {
        let t = table();
        assert_eq!(t.route_model("wine"), Some(&"redwine"));
        assert_eq!(t.route_model("redwine-week4"), Some(&"redwine"));
        assert_eq!(t.route_model("iris"), None, "ambiguous");
        assert_eq!(
            t.models(),
            vec![("redwine-week4", &"redwine"), ("wine", &"redwine")]
        );
    }

    #[test]
    fn routes_by_host_ignoring_case_and_port() {
        let t = table();
        for host in [
            "redwine-week4.kserve-inference.example.com",
            "REDWINE-week4.kserve-inference.example.com:30200",
            "wine.example.org",
            "wine.example.org.",
        ] {
            assert_eq!(t.route(Some(host), "/anything"), Ok(&"redwine"), "{host}");
        }
        assert_eq!(t.route(Some("iris.team-b.example.com"), "/"), Ok(&"iris-b"));
    }

    #[test]
    fn falls_back_to_the_model_in_the_path() {
        let t = table();
        let by_ip = Some("10.0.0.7:30200");
        assert_eq!(
            t.route(by_ip, "/v1/models/redwine-week4:predict"),
            Ok(&"redwine")
        );
        assert_eq!(t.route(by_ip, "/v1/models/redwine-week4"), Ok(&"redwine"));
        assert_eq!(
            t.route(None, "/v2/models/redwine-week4/infer"),
            Ok(&"redwine")
        );
    }

    #[test]
    fn unknown_and_ambiguous_are_not_found() {
        let t = table();
        assert!(t.route(Some("other.example.com"), "/").is_err());
        assert!(t.route(Some("1.2.3.4"), "/v1/models/nope:predict").is_err());
        // "iris" lives in two namespaces: by path it is ambiguous.
        assert!(t.route(Some("1.2.3.4"), "/v1/models/iris:predict").is_err());
        // A service host always wins over the path.
        assert_eq!(
            t.route(
                Some("iris.default.example.com"),
                "/v1/models/redwine-week4:predict"
            ),
            Ok(&"iris")
        );
    }
}
