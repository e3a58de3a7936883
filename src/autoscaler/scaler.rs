//! The whole autoscaling decision of one service, as a state machine: no
//! clock, no I/O. The loop feeds it what it read (each second, and when a
//! request is held at zero) and carries out the [`Action`] it returns.
//!
//! - Replicas this sluice starts itself begin at minReplicas at once; those
//!   that exist without it (a Deployment) are left as they are until the
//!   first decision, and are not scaled down before a full stable window of
//!   this scaler's own observation (a new leader, a restarted gateway).
//! - A request held with no replica ready raises desired from 0 to 1 at once,
//!   and asks again every second while it is still held with no pod.
//! - Decisions come every tick, counted in samples, not in time, so that
//!   timer drift cannot stretch a 2 s tick to 3 s; a second whose load could
//!   not be read does not count.
//! - While the backend cannot be seen, no decision: what is known about the
//!   pods may be stale, and a scale down on it could be wrong.

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
}

// === impl Scaler ===

impl Scaler {
    /// `owned`: whether the replicas exist only because this sluice starts
    /// them; `ready`: the pods ready now.
    pub fn new(owned: bool, spec: &Spec, ready: u32) -> Self {
        let desired = if owned { spec.min_replicas } else { ready };
        Scaler {
            owned,
            desired,
            history: History::new(spec.stable_window),
            panic: Panic::default(),
            status: ScalerStatus::default(),
            samples_since_decision: 0,
            blind: false,
            watching_since: None,
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

    /// A request is held and no replica is ready: make sure one is coming
    /// now, not at the next tick. Idempotent if it is.
    pub fn activation_requested(&mut self) -> Action {
        let mut events = vec![];
        if self.desired == 0 {
            self.desired = 1;
            events.push(Event::Activating { desired: 1 });
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
            self.desired = self.desired.max(1);
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
