//! The open file limit: raised at start, and the default bound on
//! connections derived from it.
//!
//! Every client connection is a file descriptor, and a proxied one is two
//! (the client's and the pod's). Linux starts processes with a soft limit
//! of 1 024 under a much higher hard one; a server raises its own soft
//! limit to the hard one, as nginx (`worker_rlimit_nofile`) and Go's
//! runtime do, and then keeps its connections below what that allows, so
//! that `accept` does not fail for want of descriptors.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use tracing::{debug, info, warn};

/// Descriptors kept for what is not a data connection: the admin
/// listener's connections, replicas' pipes, Kubernetes watches, files.
const RESERVED: u64 = 256;
/// The default bound when the file limit allows it.
const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
/// The default bound never goes below this, whatever the file limit.
const MIN_DEFAULT_MAX_CONNECTIONS: u64 = 16;

/// Raises the soft open file limit to the hard one, and logs the outcome.
pub fn raise_open_file_limit() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return warn!("cannot read the open file limit");
    };
    if soft >= hard {
        return debug!(limit = soft, "open file limit already at its hard limit");
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => info!(from = soft, to = hard, "open file limit raised"),
        // An unlimited hard limit is refused on Linux (above fs.nr_open).
        Err(error) => warn!(limit = soft, hard, %error, "cannot raise the open file limit"),
    }
}

/// The soft open file limit now; `None` if unlimited or unknown.
fn open_file_limit() -> Option<u64> {
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    (soft != RLIM_INFINITY).then_some(soft)
}

/// The data listener's bound when none is configured: 10 000, or fewer
/// if the open file limit cannot hold that many proxied connections.
pub fn default_max_connections() -> usize {
    default_for_limit(open_file_limit()) as usize
}

fn default_for_limit(limit: Option<u64>) -> u64 {
    let Some(limit) = limit else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    (limit.saturating_sub(RESERVED) / 2).clamp(MIN_DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bound_leaves_two_descriptors_a_connection_and_a_reserve() {
        assert_eq!(default_for_limit(Some(1_024)), 384);
        assert_eq!(default_for_limit(Some(20_000)), 9_872);
        assert_eq!(default_for_limit(Some(1 << 20)), 10_000);
        assert_eq!(default_for_limit(Some(64)), 16);
        assert_eq!(default_for_limit(None), 10_000);
    }
}
