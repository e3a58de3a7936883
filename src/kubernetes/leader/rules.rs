//! Who leads autoscaling: the pure rule for one round of a Lease election,
//! and the handle every actuator asks before it writes a replica count.
//!
//! Fencing is by time, as in client-go: a leader counts itself leader only
//! until `renewDeadline` after the start of its last successful renewal.
//! The others wait a whole `leaseDuration` (longer) after they last saw the
//! lease change before they may take it, measured on their own clocks. So
//! a leader that cannot renew stops scaling before anyone else can start.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What to do with a lease, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// It is ours: renew it.
    Renew,
    /// Free, released or expired: take it (conditionally on its version).
    Acquire,
    /// Someone else holds it and has renewed recently enough.
    Follow(String),
}

/// `holder` is the lease's holderIdentity; `observed_at` is when this
/// gateway last saw the lease's record change (its own clock, never the
/// remote `renewTime`, so clock skew between nodes does not matter).
pub fn step(
    me: &str,
    holder: Option<&str>,
    lease_duration: Duration,
    observed_at: Instant,
    now: Instant,
) -> Step {
    match holder {
        Some(h) if h == me => Step::Renew,
        Some(h) if !h.is_empty() && now < observed_at + lease_duration => {
            Step::Follow(h.to_string())
        }
        _ => Step::Acquire,
    }
}

/// This gateway's identity in the lease: the configured one, else the pod's
/// name (or host name) with a random suffix, so a restarted pod is new.
pub fn identity(configured: Option<&str>) -> String {
    if let Some(id) = configured {
        return id.to_string();
    }
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "sluice".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}_{}", &suffix[..8])
}

/// Shared by the elector (which writes it) and the actuators (which ask it).
#[derive(Debug, Clone)]
pub struct Leadership(Arc<State>);

#[derive(Debug)]
struct State {
    elected: bool,
    identity: String,
    inner: Mutex<Inner>,
    changes: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Leader until then; `None` when following.
    until: Option<Instant>,
    holder: Option<String>,
}

impl Leadership {
    /// No election: this gateway always leads (one gateway).
    pub fn always() -> Self {
        Self::new(false, "sluice".into())
    }

    pub fn elected(identity: String) -> Self {
        Self::new(true, identity)
    }

    fn new(elected: bool, identity: String) -> Self {
        Leadership(Arc::new(State {
            elected,
            identity,
            inner: Mutex::new(Inner::default()),
            changes: watch::channel(!elected).0,
        }))
    }

    /// Whether this gateway may write replica counts now. Checked right
    /// before each write.
    pub fn is_leader(&self) -> bool {
        self.is_leader_at(Instant::now())
    }

    pub fn is_leader_at(&self, now: Instant) -> bool {
        !self.0.elected || self.lock().until.is_some_and(|until| now < until)
    }

    /// When this gateway stops leading unless it renews; `None` if it does not lead.
    pub fn deadline(&self) -> Option<Instant> {
        self.lock().until.filter(|until| Instant::now() < *until)
    }

    pub fn is_elected(&self) -> bool {
        self.0.elected
    }

    pub fn identity(&self) -> &str {
        &self.0.identity
    }

    /// Who holds the lease, as last read.
    pub fn holder(&self) -> Option<String> {
        if !self.0.elected {
            return Some(self.0.identity.clone());
        }
        self.lock().holder.clone()
    }

    /// Changes to `true` when this gateway becomes leader, `false` when it
    /// stops, as the elector notices.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.changes.subscribe()
    }

    /// The lease was renewed in a round that started at `started`.
    pub(super) fn renewed(&self, started: Instant, renew_deadline: Duration) {
        let mut inner = self.lock();
        inner.until = Some(started + renew_deadline);
        inner.holder = Some(self.0.identity.clone());
        drop(inner);
        self.publish();
    }

    /// Someone else holds the lease (or nobody, after a release).
    pub(super) fn following(&self, holder: Option<String>) {
        let mut inner = self.lock();
        inner.until = None;
        inner.holder = holder;
        drop(inner);
        self.publish();
    }

    /// Tells subscribers when leadership changed, including by its deadline
    /// passing. Returns whether this gateway leads now.
    pub(super) fn publish(&self) -> bool {
        let leading = self.is_leader();
        self.0.changes.send_if_modified(|was| {
            let changed = *was != leading;
            *was = leading;
            changed
        });
        leading
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    #[test]
    fn a_lease_held_by_another_is_followed_until_it_has_not_changed_for_a_lease_duration() {
        let seen = Instant::now();
        let holder = Some("b");
        assert_eq!(
            step("a", holder, LEASE, seen, seen),
            Step::Follow("b".into())
        );
        let almost = seen + LEASE - Duration::from_millis(1);
        assert_eq!(
            step("a", holder, LEASE, seen, almost),
            Step::Follow("b".into())
        );
        assert_eq!(step("a", holder, LEASE, seen, seen + LEASE), Step::Acquire);
    }

    #[test]
    fn an_own_lease_is_renewed_and_a_free_or_released_one_taken() {
        let now = Instant::now();
        assert_eq!(step("a", Some("a"), LEASE, now, now), Step::Renew);
        assert_eq!(step("a", None, LEASE, now, now), Step::Acquire);
        assert_eq!(step("a", Some(""), LEASE, now, now), Step::Acquire);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_stops_at_its_deadline_before_the_lease_expires() {
        let leadership = Leadership::elected("a".into());
        assert!(!leadership.is_leader(), "nobody leads before an election");
        let renewed = Instant::now();
        leadership.renewed(renewed, Duration::from_secs(10));
        assert!(leadership.is_leader());
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(leadership.is_leader());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!leadership.is_leader(), "past the renew deadline");
        // Another gateway that saw the last renewal no earlier than it
        // started may take over only at renewed + 15 s: a gap, not an overlap.
        assert_eq!(
            step("b", Some("a"), LEASE, renewed, Instant::now()),
            Step::Follow("a".into())
        );
    }

    #[test]
    fn without_election_this_gateway_always_leads() {
        let leadership = Leadership::always();
        assert!(leadership.is_leader());
        assert!(*leadership.subscribe().borrow());
    }

    #[test]
    fn a_default_identity_is_unique_per_process_start() {
        assert_ne!(identity(None), identity(None));
        assert_eq!(identity(Some("gw-0")), "gw-0");
    }
}
