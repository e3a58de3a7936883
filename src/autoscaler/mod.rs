//! The embedded autoscaler: per-second load samples, a KPA-style decision
//! every tick, and an actuator that carries it out. The decision (`decide`,
//! `Scaler`) is pure; `run` is the thin loop that reads its inputs and
//! carries out its actions.

mod decide;
mod delay;
mod runner;
mod scaler;
mod scrape;
mod server_queue;
mod window;

pub use self::decide::{decide, Decision, Panic, Spec};
pub use self::runner::{run, Scaled, ScalingSettings};
pub use self::scaler::{Action, Command, Event, Load, Scaler, ScalerStatus, Second};
pub use self::scrape::{estimate, sample_size, PodsLoad, Scraper};
pub use self::server_queue::{observed_queue, PodQueue};
pub use self::window::{History, Sample};
