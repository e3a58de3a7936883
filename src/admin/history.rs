//! `/history`: each service's last minutes, one sample a second, and the
//! autoscaler's decisions with their reasons, as JSON. `?service=NAME` (or
//! `NAMESPACE/NAME`) keeps one service; `?since=MS` (Unix milliseconds)
//! keeps what is newer, for a poller that has the rest.

use crate::history::{Mark, Sample};
use crate::service::{unix_millis, Service};
use crate::shared::Shared;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryReply {
    /// The gateway's clock, Unix milliseconds: the right edge of a plot.
    pub now: u64,
    pub interval_seconds: u64,
    pub services: Vec<ServiceHistory>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHistory {
    pub name: String,
    pub namespace: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub samples: Vec<Sample>,
    pub events: Vec<Mark>,
}

/// What the query asked for; a bad `since` is the client's error.
#[derive(Debug, Default, PartialEq)]
pub struct HistoryQuery {
    service: Option<String>,
    since: u64,
}

impl HistoryQuery {
    pub fn parse(query: Option<&str>) -> Result<HistoryQuery, String> {
        let mut parsed = HistoryQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "service" => parsed.service = Some(value.to_string()),
                "since" => {
                    parsed.since = value
                        .parse()
                        .map_err(|_| format!("since={value:?} is not Unix milliseconds"))?
                }
                _ => return Err(format!("unknown parameter {key:?} (service, since)")),
            }
        }
        Ok(parsed)
    }

    fn wants(&self, service: &Service) -> bool {
        match self.service.as_deref() {
            None => true,
            Some(wanted) => match wanted.split_once('/') {
                Some((namespace, name)) => {
                    service.namespace() == namespace && service.name() == name
                }
                None => service.name() == wanted,
            },
        }
    }
}

impl HistoryReply {
    pub fn read(shared: &Shared, query: &HistoryQuery) -> HistoryReply {
        let routes = shared.routes.load();
        let services = routes
            .services()
            .iter()
            .filter(|s| query.wants(s))
            .map(|s| {
                let (samples, events) = s.history().since(query.since);
                let settings = s.settings();
                ServiceHistory {
                    name: s.name().to_string(),
                    namespace: s.namespace().to_string(),
                    min_replicas: settings.config.min_replicas,
                    max_replicas: settings.config.max_replicas(),
                    samples,
                    events,
                }
            })
            .collect();
        HistoryReply {
            now: unix_millis(),
            interval_seconds: 1,
            services,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_bad_ones_say_why() {
        assert_eq!(HistoryQuery::parse(None), Ok(HistoryQuery::default()));
        assert_eq!(
            HistoryQuery::parse(Some("service=ns/m&since=12")),
            Ok(HistoryQuery {
                service: Some("ns/m".into()),
                since: 12
            })
        );
        assert!(HistoryQuery::parse(Some("since=-1"))
            .unwrap_err()
            .contains("since"));
        assert!(HistoryQuery::parse(Some("window=5"))
            .unwrap_err()
            .contains("window"));
    }
}
