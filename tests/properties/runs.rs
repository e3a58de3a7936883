//! What "the gateway can run this configuration" means to the properties:
//! it builds its services, actuators and routes from it as `sluice gateway`
//! does, and nothing it then computes from the values can panic: no
//! duration added to an instant overflows, and autoscaling decisions, even
//! far in the future, stay between minReplicas and maxReplicas and scale
//! an overwhelmed service up. Each host routes to its service; a local
//! replica can be started and probed; a static pod can be connected to.

use sluice::autoscaler::{decide, estimate, History, Panic, Sample, Spec};
use sluice::config::{Config, ProcessBackend};
use sluice::gateway::Shared;
use sluice::sidecar::LoadReport;
use std::sync::Arc;
use std::time::Duration;

pub fn check(config: &Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The runtime is never driven: the tasks the services spawn (the
    // autoscaler, the Kubernetes watches) never run, so no replica starts
    // and no API server is called.
    let shared = {
        let _inside = runtime.enter();
        Shared::new(config.clone())
    };
    let g = &config.gateway;
    let metrics = sluice::metrics::ListenerMetrics::default();
    let _ = sluice::server::ServeOptions::new("data", &g.connections, metrics)
        .max_header_size(g.max_header_size.0)
        .max_header_count(g.max_header_count);
    let routes = shared.routes.load_full();
    if routes.services().len() != config.services.len() {
        return Err(format!("{} services built", routes.services().len()));
    }
    let mut timers = gateway_timers(config);
    for service in routes.services() {
        let settings = service.settings_snapshot();
        let name = service.name();
        for host in &settings.hosts {
            let routed = routes.route(Some(host), "/");
            if !routed.is_ok_and(|s| Arc::ptr_eq(s, service)) {
                return Err(format!("{name}: host {host} does not route to it"));
            }
        }
        let spec = &settings.spec;
        // The Kubernetes actuator holds a raised service this long.
        let zero_hold = spec.stable_window.saturating_add(spec.scale_to_zero_grace);
        timers.extend([
            ("requestTimeout", settings.request_timeout),
            ("queueTimeout", settings.queue_timeout),
            ("activationTimeout", settings.activation_timeout),
            ("stableWindow + scaleToZeroGracePeriod", zero_hold),
            (
                "activation hold",
                settings.activation_timeout.max(zero_hold),
            ),
            ("tickInterval", settings.tick_interval),
        ]);
        if let Some(process) = &settings.config.backend.process {
            timers.extend(process_timers(process, &settings.request_timeout));
            can_start(process).map_err(|e| format!("{name}: {e}"))?;
        }
        for pod in settings.config.backend.static_pods.iter().flatten() {
            let port = pod
                .parse::<http::uri::Authority>()
                .ok()
                .and_then(|a| a.port_u16());
            if port.is_none_or(|p| p == 0) {
                return Err(format!("{name}: static pod {pod:?} cannot be connected to"));
            }
        }
        if u32::try_from(settings.tick_interval.as_secs()).is_err() {
            return Err(format!("{name}: tickInterval {:?}", settings.tick_interval));
        }
        decisions(spec).map_err(|e| format!("{name}: {e}"))?;
    }
    for (what, duration) in timers {
        // Where sluice adds durations to now, it uses `+`, which panics on
        // overflow, for both clocks.
        let std_now = std::time::Instant::now();
        let tokio_now = tokio::time::Instant::now();
        if std_now.checked_add(duration).is_none() || tokio_now.checked_add(duration).is_none() {
            return Err(format!("{what} {duration:?} overflows an Instant"));
        }
    }
    let _inside = runtime.enter();
    drop(shared);
    Ok(())
}

fn gateway_timers(config: &Config) -> Vec<(&'static str, Duration)> {
    let g = &config.gateway;
    let election = &config.kubernetes.leader_election;
    let lease_seconds = election.lease_duration.0.as_millis().div_ceil(1000).max(1);
    vec![
        ("connectTimeout", g.connect_timeout.0),
        ("upstreamIdleTimeout", g.upstream_idle_timeout.0),
        ("shutdownGracePeriod", g.shutdown_grace_period.0),
        ("firstByteTimeout", g.connections.first_byte_timeout.0),
        ("headerReadTimeout", g.connections.header_read_timeout.0),
        ("idleTimeout", g.connections.idle_timeout.0),
        (
            "http2KeepAliveInterval",
            g.connections.http2_keep_alive_interval.0,
        ),
        (
            "http2KeepAliveTimeout",
            g.connections.http2_keep_alive_timeout.0,
        ),
        ("leaseDuration", election.lease_duration.0),
        ("renewDeadline", election.renew_deadline.0),
        ("retryPeriod", election.retry_period.0),
        // Written to the Lease as an i32 of seconds, read back as such.
        (
            "leaseDurationSeconds",
            Duration::from_secs(i32::try_from(lease_seconds).map_or(u64::MAX, |s| s as u64)),
        ),
    ]
}

fn process_timers(
    process: &ProcessBackend,
    request_timeout: &Duration,
) -> Vec<(&'static str, Duration)> {
    vec![
        ("startupTimeout", process.startup_timeout.0),
        ("stopGracePeriod", process.stop_grace_period.0),
        // A replica drains for at most the request timeout.
        ("drain", *request_timeout),
    ]
}

/// What a local replica needs to start and be seen ready: a program,
/// arguments and environment the OS takes (no NUL byte), and a readiness
/// path that makes a URI (as the replica's, or its sidecar's, probe makes it).
fn can_start(process: &ProcessBackend) -> Result<(), String> {
    let executable = process.sidecar.iter().flat_map(|s| s.executable.as_deref());
    let strings = process.command.iter().map(String::as_str).chain(executable);
    let env = process
        .env
        .iter()
        .flat_map(|(k, v)| [k.as_str(), v.as_str()]);
    if let Some(bad) = strings.chain(env).find(|s| s.contains('\0')) {
        return Err(format!("{bad:?} holds a NUL byte"));
    }
    let probe = format!("http://127.0.0.1:1{}", process.readiness_path);
    match probe.parse::<http::Uri>() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("readiness probe {probe:?}: {e}")),
    }
}

/// A burst then quiet, as the gateway or the pods' sidecars see it, from
/// several starting points up to the end of time: every decision is within
/// `[minReplicas, maxReplicas]`, and an overwhelming burst scales up.
fn decisions(spec: &Spec) -> Result<(), String> {
    let secs = Duration::from_secs;
    let starts = [
        Duration::ZERO,
        secs(100 * 365 * 24 * 3600),
        Duration::MAX.saturating_sub(secs(3 * 3600)),
    ];
    for start in starts {
        for load in [0.4, 3.0, 1e9] {
            let mut history = History::new(spec.stable_window);
            let (mut ready, mut panic) = (spec.min_replicas, Panic::default());
            let mut now = start;
            for t in 1..=40u64 {
                now = start.saturating_add(secs(t));
                let c = if t <= 20 { load } else { 0.0 };
                // As the pods' sidecars would report it, one of two read.
                let report = LoadReport {
                    concurrency: c,
                    rps: c * 10.0,
                    ..LoadReport::default()
                };
                let pods = spec.max_replicas as usize;
                let seen = estimate(&[Some(report), None], pods, spec.metric, spec.target)
                    .ok_or("no estimate from a report")?;
                history.record(Sample {
                    at: now,
                    concurrency: seen.concurrency,
                    rps: seen.rps,
                    // What the servers would report: what they hold.
                    queue: seen.concurrency,
                });
                if t % 2 == 0 {
                    let d = decide(spec, &history, ready, panic, now);
                    in_range(spec, d.desired, now)?;
                    // Overwhelmed, a service gets more pods at each decision.
                    let grows = d.desired > ready || d.desired == spec.max_replicas;
                    if load >= 1e9 && t <= 20 && !grows {
                        return Err(format!("{ready} pods overwhelmed, decided {}", d.desired));
                    }
                    (ready, panic) = (d.desired, d.panic);
                }
            }
            // Long after, with any number of pods ready.
            let later = [
                now.saturating_add(spec.stable_window),
                now.saturating_add(spec.stable_window)
                    .saturating_add(spec.scale_to_zero_grace)
                    .saturating_add(secs(1)),
                Duration::MAX,
            ];
            for at in later {
                for ready in [0, 1, ready, spec.max_replicas, u32::MAX] {
                    in_range(spec, decide(spec, &history, ready, panic, at).desired, at)?;
                }
            }
        }
    }
    Ok(())
}

fn in_range(spec: &Spec, desired: u32, at: Duration) -> Result<(), String> {
    if (spec.min_replicas..=spec.max_replicas).contains(&desired) {
        Ok(())
    } else {
        Err(format!("decided {desired} at {at:?} with {spec:?}"))
    }
}
