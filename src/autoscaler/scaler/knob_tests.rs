//! Knative's knobs (scaleDownDelay, initialScale, activationScale,
//! scaleToZeroPodRetentionPeriod), one table each, on simulated seconds.

use super::*;
use crate::autoscaler::decide::tutorial_spec;
use crate::config::{AutoscalerDefaults, Backend, Dur, ServiceConfig};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Runs `seconds` seconds of `load(t)` through a scaler whose pods are
/// ready the second after they are asked for; returns desired per second
/// (index 0 is the start).
fn trace(spec: &Spec, load: impl Fn(u64) -> f64, seconds: u64) -> Vec<u32> {
    let mut scaler = Scaler::new(true, spec, 0);
    scaler.start();
    let mut desired = vec![scaler.desired()];
    for t in 1..=seconds {
        let c = load(t);
        scaler.second(Second {
            now: secs(t),
            load: Some(Load {
                concurrency: c,
                rps: c,
                queue: 0.0,
            }),
            ready: *desired.last().unwrap(),
            held: 0,
            unseen: None,
            spec,
            tick_interval: secs(1),
        });
        desired.push(scaler.desired());
    }
    desired
}

/// The first second at or after `from` with desired below `n`.
fn first_below(trace: &[u32], from: usize, n: u32) -> usize {
    (from..trace.len()).find(|&t| trace[t] < n).unwrap()
}

/// A spec that follows the stable window closely: a 10 s window, no panic,
/// no scale-down rate limit.
fn quick() -> Spec {
    Spec {
        stable_window: secs(10),
        panic_window: secs(1),
        panic_threshold: 10.0,
        max_scale_down_rate: 1e6,
        ..tutorial_spec()
    }
}

/// The service as a file would give it, resolved with the global defaults.
fn resolved(edit: impl Fn(&mut ServiceConfig)) -> Spec {
    let mut s = ServiceConfig::new("a", "b", Backend::default());
    edit(&mut s);
    Spec::resolve(&s, &AutoscalerDefaults::default())
}

#[test]
fn scale_down_delay_holds_the_highest_count_wanted_within_it() {
    // 4 clients for 10 s, then none. With a 10 s stable window, 4 pods are
    // last wanted at 12 s, 2 at 17 s; after that 1 (minReplicas).
    // (delay, first second below 4, first second at 1)
    let cases = [(0, 13, 18), (10, 22, 27), (30, 42, 47)];
    for (delay, below_four, at_one) in cases {
        let spec = Spec {
            scale_down_delay: secs(delay),
            ..quick()
        };
        let t = trace(&spec, |t| if t <= 10 { 4.0 } else { 0.0 }, 80);
        assert_eq!(t[10], 4, "delay {delay}: {t:?}");
        assert_eq!(first_below(&t, 10, 4), below_four, "delay {delay}: {t:?}");
        assert_eq!(first_below(&t, 10, 2), at_one, "delay {delay}: {t:?}");
        assert_eq!(t[80], 1, "delay {delay}: {t:?}");
    }
}

#[test]
fn scale_down_delay_also_delays_scale_to_zero_but_never_scale_up() {
    let spec = Spec {
        min_replicas: 0,
        initial_scale: 0,
        scale_to_zero_grace: Duration::ZERO,
        scale_down_delay: secs(20),
        ..quick()
    };
    // One request's worth at 1 s, then idle: zero is wanted once idle for
    // the stable window (from 11 s; 1 was last wanted at 10 s), and applied
    // the delay after that (30 s) instead of at once.
    let t = trace(&spec, |t| if t == 1 { 1.0 } else { 0.0 }, 60);
    assert_eq!(t[1], 1, "{t:?}");
    assert_eq!(first_below(&t, 1, 1), 30, "{t:?}");
    let undelayed = Spec {
        scale_down_delay: Duration::ZERO,
        ..spec.clone()
    };
    let t = trace(&undelayed, |t| if t == 1 { 1.0 } else { 0.0 }, 60);
    assert_eq!(first_below(&t, 1, 1), 11, "{t:?}");
    // A rising load is followed just as closely, whatever the delay.
    let rising = |t: u64| t as f64;
    assert_eq!(trace(&spec, rising, 20), trace(&undelayed, rising, 20));
    assert!(trace(&spec, rising, 20)[20] >= 8);
}

#[test]
fn initial_scale_is_where_owned_replicas_start() {
    // (minReplicas, maxReplicas, initialScale written, owned, ready, desired)
    let cases = [
        (0, None, None, true, 0, 1),    // Knative's default: 1
        (0, None, Some(0), true, 0, 0), // 0 only when written
        (3, None, None, true, 0, 3),    // never below minReplicas
        (1, Some(8), Some(5), true, 0, 5),
        (1, Some(8), Some(20), true, 0, 8), // bounded by maxReplicas
        (0, Some(8), Some(5), false, 2, 2), // a Deployment is left as it is
    ];
    for (min, max, initial, owned, ready, desired) in cases {
        let spec = resolved(|s| {
            s.min_replicas = min;
            s.max_replicas = max;
            s.initial_scale = initial;
        });
        let mut scaler = Scaler::new(owned, &spec, ready);
        let start = scaler.start();
        let case = format!("min {min}, max {max:?}, initial {initial:?}, owned {owned}");
        assert_eq!(scaler.desired(), desired, "{case}");
        if owned {
            assert_eq!(start.commands, vec![Command::Scale(desired)], "{case}");
        }
    }
    // A global initialScale: 0 is the default of every service.
    let defaults = AutoscalerDefaults {
        initial_scale: 0,
        ..AutoscalerDefaults::default()
    };
    let mut s = ServiceConfig::new("a", "b", Backend::default());
    s.min_replicas = 0;
    assert_eq!(Spec::resolve(&s, &defaults).initial_scale, 0);
    s.initial_scale = Some(2);
    s.max_replicas = Some(4);
    assert_eq!(Spec::resolve(&s, &defaults).initial_scale, 2);
}

#[test]
fn initial_scale_holds_until_reached_once() {
    let spec = Spec {
        initial_scale: 5,
        ..quick()
    };
    let mut scaler = Scaler::new(true, &spec, 0);
    scaler.start();
    let second = |scaler: &mut Scaler, t: u64, ready: u32| {
        scaler.second(Second {
            now: secs(t),
            load: Some(Load {
                concurrency: 0.0,
                rps: 0.0,
                queue: 0.0,
            }),
            ready,
            held: 0,
            unseen: None,
            spec: &spec,
            tick_interval: secs(1),
        });
        scaler.desired()
    };
    // No load, but only 2 of 5 ready: no scale down.
    for t in 1..=20 {
        assert_eq!(second(&mut scaler, t, 2), 5, "at {t}s");
    }
    // Reached: from now on the load decides (no load: minReplicas).
    assert_eq!(second(&mut scaler, 21, 5), 1);
    assert_eq!(second(&mut scaler, 22, 1), 1);
}

#[test]
fn activation_scale_starts_that_many_from_zero_and_is_a_floor_above_zero() {
    // (activationScale written, maxReplicas, desired on activation)
    let cases = [(None, 8, 1), (Some(3), 8, 3), (Some(10), 8, 8)];
    for (activation, max, desired) in cases {
        let spec = resolved(|s| {
            s.min_replicas = 0;
            s.max_replicas = Some(max);
            s.initial_scale = Some(0);
            s.activation_scale = activation;
        });
        let mut scaler = Scaler::new(true, &spec, 0);
        scaler.start();
        let case = format!("activation {activation:?}, max {max}");
        let action = scaler.activation_requested(&spec);
        assert_eq!(action.commands, vec![Command::Activate(desired)], "{case}");
        assert_eq!(action.events, vec![Event::Activating { desired }], "{case}");
        // Held with no pod at the next second: the same count, asked again.
        let action = scaler.second(Second {
            now: secs(1),
            load: Some(Load {
                concurrency: 1.0,
                rps: 1.0,
                queue: 0.0,
            }),
            ready: 0,
            held: 1,
            unseen: None,
            spec: &spec,
            tick_interval: secs(1),
        });
        assert_eq!(action.commands[0], Command::Activate(desired), "{case}");
    }

    // Above zero, one client on activationScale 3 keeps 3; idle, it still
    // goes to zero (the raw desire is 0, so the floor no longer applies).
    let spec = Spec {
        min_replicas: 0,
        initial_scale: 0,
        activation_scale: 3,
        scale_to_zero_grace: Duration::ZERO,
        ..quick()
    };
    let t = trace(&spec, |t| if t <= 30 { 1.0 } else { 0.0 }, 60);
    assert!(t[2..=30].iter().all(|&d| d == 3), "{t:?}");
    assert!(t[40..].iter().all(|&d| d < 3), "{t:?}");
    assert_eq!(t[60], 0, "{t:?}");
}

#[test]
fn pod_retention_keeps_the_last_pod_after_the_decision_for_zero() {
    // Last traffic at 1 s; stable window 60 s, grace 30 s.
    // (retention, first second at zero)
    let cases = [(0, 91), (30, 91), (45, 106), (120, 181)];
    for (retention, zero_at) in cases {
        let spec = Spec {
            min_replicas: 0,
            initial_scale: 0,
            scale_to_zero_retention: secs(retention),
            ..tutorial_spec()
        };
        let t = trace(&spec, |t| if t == 1 { 1.0 } else { 0.0 }, 200);
        assert_eq!(t[1], 1, "retention {retention}: {t:?}");
        assert_eq!(
            first_below(&t, 1, 1),
            zero_at,
            "retention {retention}: {t:?}"
        );
    }
}

#[test]
fn durations_in_the_spec_come_from_the_service_or_the_defaults() {
    let spec = resolved(|s| {
        s.scale_down_delay = Some(Dur(secs(15)));
        s.scale_to_zero_pod_retention_period = Some(Dur(secs(40)));
    });
    assert_eq!(
        (spec.scale_down_delay, spec.scale_to_zero_retention),
        (secs(15), secs(40))
    );
    let spec = resolved(|_| {});
    assert_eq!(
        (spec.scale_down_delay, spec.scale_to_zero_retention),
        (Duration::ZERO, Duration::ZERO)
    );
}

#[test]
fn activation_scale_applies_to_the_desire_for_load_not_to_the_rate_limit() {
    use crate::autoscaler::{decide, History, Panic, Sample};
    let spec = Spec {
        activation_scale: 5,
        ..tutorial_spec()
    };
    // (concurrency for the last minute, ready, desired)
    let cases = [
        (1.0, 1, 5), // any load: at least 5
        (0.0, 6, 3), // none: halved by maxScaleDownRate, not held at 5
        (7.0, 6, 7),
    ];
    for (concurrency, ready, desired) in cases {
        let mut h = History::new(secs(60));
        for t in 1..=60 {
            h.record(Sample {
                at: secs(t),
                concurrency,
                rps: concurrency,
                queue: 0.0,
            });
        }
        let d = decide(&spec, &h, ready, Panic::default(), secs(60));
        assert_eq!(d.desired, desired, "{concurrency} on {ready}: {}", d.reason);
    }
}
