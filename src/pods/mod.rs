//! The pods of a service, how one is picked, the queue that admits requests
//! to them, and the load their model servers report.

mod balance;
mod dispatcher;
mod lease;
mod meter;
mod pod;
pub mod server_load;

pub use self::balance::{pick, Slot};
pub use self::dispatcher::{AdmitError, Dispatcher};
pub use self::lease::Lease;
pub use self::meter::{Meter, Reading};
pub use self::pod::Pod;
