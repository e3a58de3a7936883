//! One autoscaling leader among gateway replicas, through a
//! `coordination.k8s.io/v1` Lease: the rules (`rules.rs`, pure, tested with
//! an injected clock) and the task that reads and writes the Lease
//! (`lease.rs`).

mod lease;
mod rules;

pub use self::lease::{release, run};
pub use self::rules::{identity, step, Leadership, Step};
