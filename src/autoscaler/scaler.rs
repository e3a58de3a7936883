//! The whole autoscaling decision of one service, as a state machine: no
//! clock, no I/O. The loop feeds it what it read (each second, and when a
//! request is held at zero) and carries out the [`Action`] it returns.
//!
//! - Replicas this sluice starts itself begin at `initialScale` (at least
//!   minReplicas) at once, and are not scaled below it until that many have
//!   been ready once (Knative's KPA holds a revision at its initial scale
//!   until the scale target is initialized, pkg/reconciler/autoscaling/kpa).
//!   Those that exist without it (a Deployment) are left as they are until
//!   the first decision, and are not scaled down before a full stable
//!   window of this scaler's own observation (a new leader, a restarted
//!   gateway): sluice did not create them, so it has no initial scale.
//! - A request held with no replica ready raises desired from 0 to
//!   `activationScale` at once, and asks again every second while it is
//!   still held with no pod.
//! - A lower count takes effect only once it has been wanted for
//!   `scaleDownDelay` ([`DelayWindow`]).
//! - Decisions come every tick, counted in samples, not in time, so that
//!   timer drift cannot stretch a 2 s tick to 3 s; a second whose load could
//!   not be read does not count.
//! - While the backend cannot be seen, no decision: what is known about the
//!   pods may be stale, and a scale down on it could be wrong.

use super::delay::DelayWindow;
use super::{decide, History, Panic, Sample, Spec};
use std::time::Duration;

/// What the autoscaler last decided, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScalerStatus {
    pub desired: u32,
    pub panic: bool,
    pub stable_concurrency: f64,
    pub panic_concurrency: f64,
}

/// The load of one second, as the gateway or the pods saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub concurrency: f64,
    pub rps: f64,
    /// What the model servers report (`scaleMetric: queue`); 0 without
    /// `podMetrics`.
    pub queue: f64,
}

/// What the loop read during one second.
#[derive(Debug, Clone)]
pub struct Second<'a> {
    /// Time since the autoscaler started.
    pub now: Duration,
    /// `None` when no pod could report its load.
    pub load: Option<Load>,
    /// Pods ready now.
    pub ready: u32,
    /// Requests held for want of any pod.
    pub held: usize,
    /// Why the backend cannot be seen, if it cannot.
    pub unseen: Option<String>,
    pub spec: &'a Spec,
    pub tick_interval: Duration,
}

/// What to tell the actuator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Make sure this many replicas are coming (a request is held).
    Activate(u32),
    /// Ask for this many replicas.
    Scale(u32),
    /// No decision can be made now.
    NoDecision,
}

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started {
        desired: u32,
    },
    Activating {
        desired: u32,
    },
    Unreported,
    Blind {
        desired: u32,
        why: String,
    },
    SeeingAgain,
    EnteringPanic,
    LeavingPanic,
    Scaling {
        from: u32,
        to: u32,
        ready: u32,
        reason: String,
    },
}

/// What the loop carries out, in this order: log the events, give the
/// commands, publish the status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Action {
    pub events: Vec<Event>,
    pub commands: Vec<Command>,
    pub status: Option<ScalerStatus>,
}

#[derive(Debug)]
pub struct Scaler {
    owned: bool,
    desired: u32,
    history: History,
    panic: Panic,
    /// The last status published.
    status: ScalerStatus,
    samples_since_decision: u32,
    /// Whether the last decision was skipped because the backend could not
    /// be seen.
    blind: bool,
    /// When the first decision was made (for replicas not owned).
    watching_since: Option<Duration>,
    /// Owned replicas: the initial scale not yet reached once, so desired
    /// stays at least this.
    initial: Option<u32>,
    delay: DelayWindow,
}

// === impl Scaler ===

impl Scaler {
    /// `owned`: whether the replicas exist only because this sluice starts
    /// them; `ready`: the pods ready now.
    pub fn new(owned: bool, spec: &Spec, ready: u32) -> Self {
        let desired = if owned { spec.initial_scale } else { ready };
        Scaler {
            owned,
            desired,
            history: History::new(spec.stable_window),
            panic: Panic::default(),
            status: ScalerStatus::default(),
            samples_since_decision: 0,
            blind: false,
            watching_since: None,
            initial: owned.then_some(desired).filter(|&n| n > 0),
            delay: DelayWindow::default(),
        }
    }

    pub fn desired(&self) -> u32 {
        self.desired
    }

    /// What to do before the first second.
    pub fn start(&mut self) -> Action {
        let desired = self.desired;
        Action {
            events: vec![Event::Started { desired }],
            commands: if self.owned {
                vec![Command::Scale(desired)]
            } else {
                vec![]
            },
            status: Some(self.publish(ScalerStatus {
                desired,
                ..Default::default()
            })),
        }
    }

    /// A request is held and no replica is ready: make sure replicas are
    /// coming now (`activationScale` of them), not at the next tick.
    /// Idempotent if they are.
    pub fn activation_requested(&mut self, spec: &Spec) -> Action {
        let mut events = vec![];
        if self.desired == 0 {
            self.desired = spec.activation_scale.max(1);
            events.push(Event::Activating {
                desired: self.desired,
            });
        }
        let desired = self.desired;
        Action {
            events,
            commands: vec![Command::Activate(desired)],
            status: Some(self.publish(ScalerStatus {
                desired,
                ..self.status
            })),
        }
    }

    /// One second has passed.
    pub fn second(&mut self, input: Second<'_>) -> Action {
        let mut action = Action::default();
        if input.held > 0 && input.ready == 0 {
            // Still holding with no pod: ask again every second, in case the
            // first activation was lost (e.g. the API server did not answer).
            self.desired = self.desired.max(input.spec.activation_scale).max(1);
            action.commands.push(Command::Activate(self.desired));
        }
        let Some(load) = input.load else {
            action.events.push(Event::Unreported);
            return action;
        };
        let spec = input.spec;
        self.history.set_keep(spec.stable_window);
        self.history.record(Sample {
            at: input.now,
            concurrency: load.concurrency,
            rps: load.rps,
            queue: load.queue,
        });
        self.samples_since_decision += 1;
        let tick_samples = input.tick_interval.as_secs().max(1);
        if u64::from(self.samples_since_decision) < tick_samples {
            return action;
        }
        self.samples_since_decision = 0;
        if let Some(why) = input.unseen {
            // Held requests still activate (above).
            if !self.blind {
                action.events.push(Event::Blind {
                    desired: self.desired,
                    why,
                });
                action.commands.push(Command::NoDecision);
            }
            self.blind = true;
            return action;
        }
        if self.blind {
            action.events.push(Event::SeeingAgain);
            self.blind = false;
        }
        self.decide(input.now, spec, input.ready, &mut action);
        action
    }

    fn decide(&mut self, now: Duration, spec: &Spec, ready: u32, action: &mut Action) {
        let mut decision = decide(spec, &self.history, ready, self.panic, now);
        let wanted = decision.desired;
        decision.desired = self.delay.hold(now, spec.scale_down_delay, wanted);
        if decision.desired > wanted {
            decision.reason = format!(
                "scale-down delay: {wanted} wanted, {} wanted within the last {}s is kept ({})",
                decision.desired,
                spec.scale_down_delay.as_secs(),
                decision.reason
            );
        }
        if !self.owned {
            let since = *self.watching_since.get_or_insert(now);
            let watched = now.saturating_sub(since);
            if watched < spec.stable_window && decision.desired < ready {
                decision.desired = ready;
                decision.reason = format!(
                    "observed for {}s, less than the stable window: no scale down yet",
                    watched.as_secs()
                );
            }
        }
        if let Some(initial) = self.initial {
            if ready >= initial {
                self.initial = None;
            } else if decision.desired < initial {
                decision.desired = initial;
                decision.reason = format!(
                    "initial scale {initial} not reached yet ({ready} ready): no scale down"
                );
            }
        }
        let panicking = decision.panic.last_over.is_some();
        if panicking != self.panic.last_over.is_some() {
            action.events.push(if panicking {
                Event::EnteringPanic
            } else {
                Event::LeavingPanic
            });
        }
        self.panic = decision.panic;
        if decision.desired != self.desired {
            action.events.push(Event::Scaling {
                from: self.desired,
                to: decision.desired,
                ready,
                reason: decision.reason,
            });
            self.desired = decision.desired;
        }
        // Idempotent; repeating it each tick also heals a lost request.
        action.commands.push(Command::Scale(self.desired));
        action.status = Some(self.publish(ScalerStatus {
            desired: self.desired,
            panic: panicking,
            stable_concurrency: decision.stable_average,
            panic_concurrency: decision.panic_average,
        }));
    }

    fn publish(&mut self, status: ScalerStatus) -> ScalerStatus {
        self.status = status;
        status
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod knob_tests;
