//! A service's backend: exactly one kind, and each kind's own settings.

use super::names::{is_dns_label, is_dns_subdomain};
use crate::config::ranges;
use crate::config::{MetricsSource, ServiceConfig};
use http::uri::{Authority, PathAndQuery};

pub(super) fn validate_backend(at: &str, s: &ServiceConfig, problems: &mut Vec<String>) {
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
pub(super) fn check_pod_address(addr: &str) -> Result<(), &'static str> {
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
