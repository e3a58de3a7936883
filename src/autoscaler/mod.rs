//! The embedded autoscaler: per-second load samples, a KPA-style decision
//! every tick, and an actuator that carries it out.

mod decide;
mod runner;
mod scrape;
mod window;

pub use self::decide::{decide, Decision, Panic, Spec};
pub use self::runner::{run, ScalerStatus};
pub use self::scrape::{estimate, sample_size, PodsLoad, Scraper};
pub use self::window::{History, Sample};
