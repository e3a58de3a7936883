//! Table-driven cases and minutes of simulated traffic, in milliseconds.

use super::*;

use super::tutorial_spec as spec;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A history of `seconds` samples at a constant concurrency, ending at `end`.
fn steady(concurrency: f64, seconds: u64, end: u64) -> History {
    let mut h = History::new(secs(120));
    for t in (end + 1 - seconds)..=end {
        h.record(Sample {
            at: secs(t),
            concurrency,
            rps: concurrency * 10.0,
            // The servers hold more than sluice has in flight (other
            // clients', say): a value apart from the other two.
            queue: concurrency * 4.0,
        });
    }
    h
}

#[test]
fn table() {
    struct Case {
        name: &'static str,
        spec: Spec,
        history: History,
        ready: u32,
        previous: Panic,
        now: u64,
        desired: u32,
        panicking: bool,
    }
    let cases = [
        Case {
            name: "steady at target stays",
            spec: spec(),
            history: steady(3.0, 60, 60),
            ready: 3,
            previous: Panic::default(),
            now: 60,
            desired: 3,
            panicking: false,
        },
        Case {
            name: "fractional load rounds up",
            spec: spec(),
            history: steady(2.2, 60, 60),
            ready: 3,
            previous: Panic::default(),
            now: 60,
            desired: 3,
            panicking: false,
        },
        Case {
            name: "5 clients on 1 pod panics to 5",
            spec: spec(),
            history: steady(5.0, 10, 10),
            ready: 1,
            previous: Panic::default(),
            now: 10,
            desired: 5,
            panicking: true,
        },
        Case {
            name: "capped at maxReplicas",
            spec: spec(),
            history: steady(50.0, 60, 60),
            ready: 8,
            previous: Panic::default(),
            now: 60,
            desired: 8,
            panicking: true,
        },
        Case {
            name: "scale-down rate halves at most",
            spec: spec(),
            history: steady(0.0, 60, 60),
            ready: 8,
            previous: Panic::default(),
            now: 60,
            desired: 4,
            panicking: false,
        },
        Case {
            name: "never below minReplicas",
            spec: spec(),
            history: steady(0.0, 60, 60),
            ready: 1,
            previous: Panic::default(),
            now: 60,
            desired: 1,
            panicking: false,
        },
        Case {
            name: "scale-up rate limits",
            spec: Spec {
                max_scale_up_rate: 2.0,
                max_replicas: 100,
                ..spec()
            },
            history: steady(40.0, 60, 60),
            ready: 2,
            previous: Panic::default(),
            now: 60,
            desired: 4,
            panicking: true,
        },
        Case {
            name: "target utilization leaves headroom",
            spec: Spec {
                target: 0.5,
                ..spec()
            },
            history: steady(3.0, 60, 60),
            ready: 6,
            previous: Panic::default(),
            now: 60,
            desired: 6,
            panicking: false,
        },
        Case {
            name: "panic never scales down",
            spec: spec(),
            history: steady(1.0, 60, 60),
            ready: 6,
            previous: Panic {
                last_over: Some(secs(30)),
                peak: 6,
            },
            now: 60,
            desired: 6,
            panicking: true,
        },
        Case {
            name: "panic ends a stable window after the last crossing",
            spec: spec(),
            history: steady(1.0, 60, 100),
            ready: 6,
            previous: Panic {
                last_over: Some(secs(30)),
                peak: 6,
            },
            now: 100,
            desired: 3,
            panicking: false,
        },
        Case {
            name: "rps uses the request rate",
            spec: Spec {
                metric: ScaleMetric::Rps,
                target: 10.0,
                ..spec()
            },
            history: steady(3.0, 60, 60),
            ready: 3,
            previous: Panic::default(),
            now: 60,
            desired: 3,
            panicking: false,
        },
        Case {
            name: "queue uses what the servers report",
            spec: Spec {
                metric: ScaleMetric::Queue,
                target: 8.0,
                ..spec()
            },
            // Concurrency 3 would want 3 pods; the servers' 12 want 2.
            history: steady(3.0, 60, 60),
            ready: 3,
            previous: Panic::default(),
            now: 60,
            desired: 2,
            panicking: false,
        },
        Case {
            name: "no data keeps ready, clamped",
            spec: spec(),
            history: History::new(secs(60)),
            ready: 0,
            previous: Panic::default(),
            now: 0,
            desired: 1,
            panicking: false,
        },
    ];
    for c in cases {
        let d = decide(&c.spec, &c.history, c.ready, c.previous, secs(c.now));
        assert_eq!(d.desired, c.desired, "{}: {}", c.name, d.reason);
        assert_eq!(
            d.panic.last_over.is_some(),
            c.panicking,
            "{}: {}",
            c.name,
            d.reason
        );
    }
}

#[test]
fn the_panic_threshold_uses_the_raw_desire_and_rates_never_invert() {
    // 1.9 in flight on 1 pod is 190%: no panic, though it rounds up to 2.
    let d = decide(&spec(), &steady(1.9, 60, 60), 1, Panic::default(), secs(60));
    assert!(d.panic.last_over.is_none(), "{}", d.reason);
    // Rates that would make max_down exceed max_up do not panic the clamp.
    let odd = Spec {
        max_scale_up_rate: 1.5,
        max_scale_down_rate: 0.5,
        ..spec()
    };
    let d = decide(&odd, &steady(0.0, 60, 60), 4, Panic::default(), secs(60));
    assert_eq!(d.desired, 6, "{}", d.reason);
}

#[test]
fn float_noise_does_not_buy_an_extra_pod() {
    let d = decide(
        &spec(),
        &steady(3.000_000_1, 60, 60),
        3,
        Panic::default(),
        secs(60),
    );
    assert_eq!(d.desired, 3, "{}", d.reason);
    let d = decide(
        &spec(),
        &steady(3.01, 60, 60),
        3,
        Panic::default(),
        secs(60),
    );
    assert_eq!(d.desired, 4, "{}", d.reason);
}

#[test]
fn scale_to_zero_waits_for_the_stable_window_and_grace() {
    let spec = Spec {
        min_replicas: 0,
        ..spec()
    };
    let mut h = History::new(secs(300));
    h.record(Sample {
        at: secs(1),
        concurrency: 1.0,
        rps: 1.0,
        queue: 0.0,
    });
    for t in 2..=200 {
        h.record(Sample {
            at: secs(t),
            concurrency: 0.0,
            rps: 0.0,
            queue: 0.0,
        });
    }
    // Idle 60s: inside stable window + grace (90s), one pod stays, long
    // after the last busy sample left the window.
    assert_eq!(decide(&spec, &h, 1, Panic::default(), secs(61)).desired, 1);
    assert_eq!(decide(&spec, &h, 1, Panic::default(), secs(75)).desired, 1);
    assert_eq!(decide(&spec, &h, 1, Panic::default(), secs(90)).desired, 1);
    let d = decide(&spec, &h, 1, Panic::default(), secs(91));
    assert_eq!(d.desired, 0, "{}", d.reason);
    // At zero and still idle: stays at zero.
    assert_eq!(decide(&spec, &h, 0, Panic::default(), secs(150)).desired, 0);
    // A held request at zero is load: one pod.
    h.record(Sample {
        at: secs(201),
        concurrency: 1.0,
        rps: 1.0,
        queue: 0.0,
    });
    assert_eq!(decide(&spec, &h, 0, Panic::default(), secs(201)).desired, 1);
}

/// Closed-loop clients: each keeps one request in flight, so the observed
/// concurrency is the number of clients, whatever the pods.
fn simulate(
    spec: &Spec,
    clients: impl Fn(u64) -> f64,
    seconds: u64,
    tick: u64,
) -> Vec<(u64, u32, bool)> {
    let mut history = History::new(spec.stable_window);
    let (mut ready, mut panic) = (spec.min_replicas, Panic::default());
    let mut trace = Vec::new();
    for t in 1..=seconds {
        let c = clients(t);
        history.record(Sample {
            at: secs(t),
            concurrency: c,
            rps: c * 20.0,
            queue: 0.0,
        });
        if t % tick == 0 {
            let d = decide(spec, &history, ready, panic, secs(t));
            panic = d.panic;
            // Pods are ready by the next tick.
            ready = d.desired;
            trace.push((t, d.desired, d.panic.last_over.is_some()));
        }
    }
    trace
}

#[test]
fn the_tutorial_burst_scales_to_five_and_back_to_one() {
    // `hey -c 5` for 10 s from second 10, then nothing, for 5 minutes.
    let trace = simulate(
        &spec(),
        |t| if (10..20).contains(&t) { 5.0 } else { 0.0 },
        300,
        2,
    );
    let at = |t: u64| trace.iter().find(|(s, ..)| *s == t).unwrap().1;
    // The panic window (6 s) fills as the burst goes on: 5 pods within 4 s.
    assert!(at(12) >= 3, "{trace:?}");
    assert_eq!(at(14), 5, "{trace:?}");
    assert_eq!(at(20), 5);
    assert!(
        trace.iter().all(|&(_, d, _)| d <= 5),
        "never more than 5: {trace:?}"
    );
    // Panic holds 5 for a stable window after the last crossing.
    assert_eq!(at(70), 5, "{trace:?}");
    assert_eq!(at(300), 1, "back to minReplicas: {trace:?}");
    let first_one = trace.iter().find(|(t, d, _)| *t > 20 && *d == 1).unwrap().0;
    assert!(
        first_one <= 140,
        "down within two stable windows: {trace:?}"
    );
}

#[test]
fn a_slow_ramp_scales_stably_without_panic() {
    // From 4 clients, one more every 30 s: never twice the ready pods, so
    // the stable window follows the load without panic.
    let spec = Spec {
        min_replicas: 4,
        max_replicas: 20,
        ..spec()
    };
    let trace = simulate(&spec, |t| 4.0 + (t / 30) as f64, 240, 2);
    assert!(trace.iter().all(|&(_, _, panic)| !panic), "{trace:?}");
    let last = trace.last().unwrap().1;
    assert!(
        (9..=12).contains(&last),
        "follows 12 clients, lagging by the window: {trace:?}"
    );
}
