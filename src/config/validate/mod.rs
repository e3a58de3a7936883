//! Checks that types cannot express. Every problem names its field.

mod autoscaler;
mod backend;
mod kubernetes;
mod names;
mod pod_metrics;
mod service;
mod tracing;

pub use self::service::validate_service_config;

use self::autoscaler::{validate_autoscaler, Knobs};
use self::kubernetes::validate_kubernetes;
use self::names::{is_dns_label, is_host_name};
use self::service::validate_service;
use self::tracing::validate_tracing;
use super::ranges;
use super::Config;
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
    validate_tracing(&config.tracing, &mut problems);
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
    ranges::MODEL_PEEK_LIMIT.check("gateway.modelPeekLimit", g.model_peek_limit.0, p);
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
    let workers = c.workers.map(|n| n as u64);
    ranges::WORKERS.check_set(&at("workers"), workers, p);
    ranges::SHUTDOWN_GRACE_PERIOD.check(
        "gateway.shutdownGracePeriod",
        g.shutdown_grace_period.0,
        p,
    );
    if let Some(tls) = &config.tls {
        ranges::TLS_HANDSHAKE_TIMEOUT.check("tls.handshakeTimeout", tls.handshake_timeout.0, p);
        ranges::TLS_POLL_INTERVAL.check("tls.pollInterval", tls.poll_interval.0, p);
        for (field, path) in [
            ("tls.certFile", &tls.cert_file),
            ("tls.keyFile", &tls.key_file),
        ] {
            if path.as_os_str().is_empty() {
                p.push(format!("{field}: must name a file"));
            }
        }
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

#[cfg(test)]
mod tests;
