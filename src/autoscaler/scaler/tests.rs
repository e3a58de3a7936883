//! Table-driven cases and minutes of simulated seconds, in milliseconds.

use super::*;

use crate::autoscaler::decide::tutorial_spec as spec;

/// The tutorial's spec at `min_replicas`, starting there too (as if
/// `initialScale` were written equal to it).
fn min(min_replicas: u32) -> Spec {
    Spec {
        min_replicas,
        initial_scale: min_replicas,
        ..spec()
    }
}

/// A scaler and the world it sees, one simulated second at a time.
struct Sim {
    scaler: Scaler,
    spec: Spec,
    tick: Duration,
    /// Seconds since the start.
    now: u64,
    ready: u32,
    held: usize,
    unseen: Option<String>,
}

impl Sim {
    fn new(owned: bool, spec: Spec, ready: u32) -> Sim {
        Sim {
            scaler: Scaler::new(owned, &spec, ready),
            spec,
            tick: Duration::from_secs(1),
            now: 0,
            ready,
            held: 0,
            unseen: None,
        }
    }

    /// One second at `concurrency` (`None`: no pod could report).
    fn second(&mut self, concurrency: Option<f64>) -> Action {
        self.now += 1;
        self.scaler.second(Second {
            now: Duration::from_secs(self.now),
            load: concurrency.map(|c| Load {
                concurrency: c,
                rps: c * 10.0,
                queue: 0.0,
            }),
            ready: self.ready,
            held: self.held,
            unseen: self.unseen.clone(),
            spec: &self.spec,
            tick_interval: self.tick,
        })
    }

    /// `seconds` seconds at `concurrency`, with the second each action came.
    fn run(&mut self, seconds: u64, concurrency: f64) -> Vec<(u64, Action)> {
        (0..seconds)
            .map(|_| {
                let action = self.second(Some(concurrency));
                (self.now, action)
            })
            .collect()
    }
}

/// The replicas the action asks for, if it scales.
fn scaled(action: &Action) -> Option<u32> {
    action.commands.iter().rev().find_map(|c| match c {
        Command::Scale(n) => Some(*n),
        _ => None,
    })
}

/// The seconds at which an event matching `which` was logged.
fn when(actions: &[(u64, Action)], which: impl Fn(&Event) -> bool) -> Vec<u64> {
    actions
        .iter()
        .filter(|(_, a)| a.events.iter().any(&which))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn starts_at_min_replicas_when_owned_else_at_the_ready_pods() {
    // (owned, minReplicas, ready, desired, what it asks for at the start)
    let cases = [
        (true, 3, 0, 3, vec![Command::Scale(3)]),
        (true, 0, 2, 0, vec![Command::Scale(0)]),
        (false, 3, 0, 0, vec![]),
        (false, 1, 5, 5, vec![]),
    ];
    for (owned, min_replicas, ready, desired, commands) in cases {
        let mut scaler = Scaler::new(owned, &min(min_replicas), ready);
        let start = scaler.start();
        let case = format!("owned {owned}, min {min_replicas}, ready {ready}");
        assert_eq!(scaler.desired(), desired, "{case}");
        assert_eq!(start.commands, commands, "{case}");
        assert_eq!(start.events, vec![Event::Started { desired }], "{case}");
        assert_eq!(
            start.status,
            Some(ScalerStatus {
                desired,
                ..Default::default()
            }),
            "{case}"
        );
    }
}

#[test]
fn activation_raises_desired_from_zero_once() {
    // (minReplicas, desired after, event logged)
    let cases = [(0, 1, true), (1, 1, false), (3, 3, false)];
    for (min_replicas, desired, logged) in cases {
        let mut scaler = Scaler::new(true, &min(min_replicas), 0);
        scaler.start();
        for asked in 1..=2 {
            let action = scaler.activation_requested(&min(min_replicas));
            let case = format!("min {min_replicas}, asked {asked} times");
            assert_eq!(action.commands, vec![Command::Activate(desired)], "{case}");
            let events = if logged && asked == 1 {
                vec![Event::Activating { desired }]
            } else {
                vec![]
            };
            assert_eq!(action.events, events, "{case}");
            assert_eq!(action.status.map(|s| s.desired), Some(desired), "{case}");
        }
    }
}

#[test]
fn activation_keeps_the_rest_of_the_status() {
    let mut sim = Sim::new(true, min(0), 1);
    sim.scaler.start();
    let decided = sim.run(3, 2.0).pop().unwrap().1.status.unwrap();
    assert_eq!(decided.desired, 2);
    let activated = sim.scaler.activation_requested(&sim.spec).status.unwrap();
    assert_eq!(activated, decided);
}

#[test]
fn asks_again_every_second_while_held_with_no_pod() {
    let mut sim = Sim::new(true, min(0), 0);
    sim.tick = Duration::from_secs(2);
    sim.scaler.start();
    sim.held = 1;
    // Every second, also one whose load could not be read, and one between
    // ticks; with the tick, the decision follows the activation.
    for load in [Some(1.0), None, Some(1.0), Some(1.0)] {
        let action = sim.second(load);
        assert_eq!(action.commands[0], Command::Activate(1), "at {}", sim.now);
    }
    // Once a pod is ready, or nothing is held, no more.
    sim.ready = 1;
    assert!(!sim
        .second(Some(1.0))
        .commands
        .contains(&Command::Activate(1)));
    sim.ready = 0;
    sim.held = 0;
    assert!(!sim
        .second(Some(1.0))
        .commands
        .contains(&Command::Activate(1)));
}

#[test]
fn decides_every_tick_counted_in_samples() {
    // (tick interval in ms, which seconds have a load, seconds that decide)
    let all = [true; 6];
    let cases: [(u64, [bool; 6], &[u64]); 6] = [
        (1000, all, &[1, 2, 3, 4, 5, 6]),
        (2000, all, &[2, 4, 6]),
        (3000, all, &[3, 6]),
        // A tick under a second is every second.
        (0, all, &[1, 2, 3, 4, 5, 6]),
        (1500, all, &[1, 2, 3, 4, 5, 6]),
        // A second without a load does not count.
        (2000, [true, false, true, true, false, true], &[3, 6]),
    ];
    for (tick, loads, decisions) in cases {
        let mut sim = Sim::new(true, spec(), 1);
        sim.tick = Duration::from_millis(tick);
        let mut decided = vec![];
        for has_load in loads {
            let action = sim.second(has_load.then_some(1.0));
            assert_eq!(
                action.events.contains(&Event::Unreported),
                !has_load,
                "tick {tick}ms at {}",
                sim.now
            );
            if action.status.is_some() {
                assert_eq!(scaled(&action), Some(1));
                decided.push(sim.now);
            }
        }
        assert_eq!(decided, decisions, "tick {tick}ms, loads {loads:?}");
    }
}

#[test]
fn blind_makes_no_decision_and_keeps_the_history() {
    let mut sim = Sim::new(true, spec(), 4);
    sim.scaler.start();
    let seen = sim.run(10, 4.0);
    assert!(seen.iter().all(|(_, a)| scaled(a) == Some(4)));

    sim.unseen = Some("the API server does not answer".into());
    let blind = sim.run(10, 6.0);
    assert_eq!(
        blind[0].1,
        Action {
            events: vec![Event::Blind {
                desired: 4,
                why: "the API server does not answer".into()
            }],
            commands: vec![Command::NoDecision],
            status: None,
        },
        "once, when it goes blind"
    );
    assert!(blind[1..].iter().all(|(_, a)| *a == Action::default()));

    // Seeing again, it decides on every second it sampled, blind or not.
    sim.unseen = None;
    let resumed = sim.second(Some(6.0));
    let average = (10.0 * 4.0 + 11.0 * 6.0) / 21.0;
    assert_eq!(resumed.events[0], Event::SeeingAgain);
    assert!(
        matches!(
            resumed.events[1],
            Event::Scaling {
                from: 4,
                to: 6,
                ready: 4,
                ..
            }
        ),
        "{:?}",
        resumed.events
    );
    assert_eq!(scaled(&resumed), Some(6));
    let status = resumed.status.unwrap();
    assert!((status.stable_concurrency - average).abs() < 1e-9);
    assert!(sim.second(Some(6.0)).events.is_empty(), "resumes once");
}

#[test]
fn blind_still_activates_held_requests() {
    let mut sim = Sim::new(true, min(0), 0);
    sim.scaler.start();
    sim.unseen = Some("no lease".into());
    sim.held = 2;
    let action = sim.second(Some(2.0));
    assert_eq!(
        action.commands,
        vec![Command::Activate(1), Command::NoDecision]
    );
}

#[test]
fn replicas_not_owned_are_not_scaled_down_before_a_stable_window() {
    // (owned, ready, load, first desire at the start, seconds it scales, to)
    let cases = [
        // Scaled down only once it watched for a full stable window (its
        // first decision, at 1 s, starts the watch).
        (false, 5, 1.0, 5, 61, 2),
        // Its own replicas: at once.
        (true, 5, 1.0, 1, 1, 2),
        // Up is never held off.
        (false, 1, 5.0, 1, 1, 5),
    ];
    for (owned, ready, load, first, at, to) in cases {
        let case = format!("owned {owned}, ready {ready}, load {load}");
        let mut sim = Sim::new(owned, spec(), ready);
        sim.scaler.start();
        let actions = sim.run(70, load);
        for (t, action) in &actions {
            let expected = if *t < at { first } else { to };
            assert_eq!(scaled(action), Some(expected), "{case} at {t}");
        }
        let scaling: Vec<&Event> = actions
            .iter()
            .flat_map(|(_, a)| &a.events)
            .filter(|e| matches!(e, Event::Scaling { .. }))
            .collect();
        assert_eq!(scaling.len(), 1, "{case}: {scaling:?}");
        assert!(matches!(scaling[0], Event::Scaling { to: t, .. } if *t == to));
    }
    // While held off, the status keeps the replicas that are there.
    let mut sim = Sim::new(false, spec(), 5);
    sim.scaler.start();
    assert_eq!(sim.run(30, 1.0).pop().unwrap().1.status.unwrap().desired, 5);
}

#[test]
fn panic_is_entered_and_left_once_each() {
    let mut sim = Sim::new(true, spec(), 1);
    sim.scaler.start();
    let mut actions = sim.run(10, 1.0);
    // One second at 10: the panic window's average (2.5) is twice the one
    // ready pod's target until the second leaves that window, at 17.
    actions.extend(sim.run(1, 10.0));
    actions.extend(sim.run(100, 1.0));
    assert_eq!(when(&actions, |e| *e == Event::EnteringPanic), vec![11]);
    // A full stable window after the desire was last over the threshold.
    assert_eq!(when(&actions, |e| *e == Event::LeavingPanic), vec![76]);
    for (t, action) in &actions {
        let panic = action.status.unwrap().panic;
        assert_eq!(panic, (11..76).contains(t), "at {t}");
    }
}

#[test]
fn scales_to_zero_after_the_stable_window_and_grace() {
    let mut sim = Sim::new(true, min(0), 1);
    sim.scaler.start();
    let mut actions = sim.run(10, 1.0);
    actions.extend(sim.run(100, 0.0));
    // Last traffic at 10; zero after 60 s + 30 s of none.
    let zero = when(&actions, |e| matches!(e, Event::Scaling { to: 0, .. }));
    assert_eq!(zero, vec![100]);
    for (t, action) in &actions {
        let expected = if *t < 100 { 1 } else { 0 };
        assert_eq!(scaled(action), Some(expected), "at {t}");
    }
}
