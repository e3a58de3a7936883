//! Client connections per listener: how many are open, how often the limit
//! stopped accepting, accept errors, and connections closed by a timeout.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The phases whose timeouts close a connection (see `crate::server`).
pub const PHASES: [&str; 5] = [
    "first_byte",
    "tls_handshake",
    "header_read",
    "idle",
    "close",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimeoutLabels {
    listener: &'static str,
    phase: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct ConnectionMetrics {
    open: Family<ListenerLabels, Gauge>,
    limit_reached: Family<ListenerLabels, Counter>,
    accept_errors: Family<ListenerLabels, Counter>,
    timeouts: Family<TimeoutLabels, Counter>,
}

/// One listener's handles, taken once. `Default` gives handles that are
/// registered nowhere, for listeners without a metrics endpoint.
#[derive(Clone, Debug, Default)]
pub struct ListenerMetrics {
    listener: &'static str,
    open: Gauge,
    limit_reached: Counter,
    accept_errors: Counter,
    timeouts: Family<TimeoutLabels, Counter>,
}

// === impl ConnectionMetrics ===

impl ConnectionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ConnectionMetrics::default();
        registry.register(
            "sluice_open_connections",
            "Client connections open now, by listener",
            metrics.open.clone(),
        );
        registry.register(
            "sluice_connection_limit_reached",
            "Times a listener stopped accepting because it had its most connections open",
            metrics.limit_reached.clone(),
        );
        registry.register(
            "sluice_accept_errors",
            "Failed accepts (out of file descriptors, typically), by listener",
            metrics.accept_errors.clone(),
        );
        registry.register(
            "sluice_connection_timeouts",
            "Client connections closed by sluice because a phase timed out, by listener and phase",
            metrics.timeouts.clone(),
        );
        metrics
    }

    /// The handles of one listener; its series exist (at zero) from now on.
    pub fn listener(&self, listener: &'static str) -> ListenerMetrics {
        let labels = ListenerLabels { listener };
        for phase in PHASES {
            let _ = self
                .timeouts
                .get_or_create(&TimeoutLabels { listener, phase });
        }
        ListenerMetrics {
            listener,
            open: self.open.get_or_create(&labels).clone(),
            limit_reached: self.limit_reached.get_or_create(&labels).clone(),
            accept_errors: self.accept_errors.get_or_create(&labels).clone(),
            timeouts: self.timeouts.clone(),
        }
    }
}

// === impl ListenerMetrics ===

impl ListenerMetrics {
    pub fn opened(&self) {
        self.open.inc();
    }

    pub fn closed(&self) {
        self.open.dec();
    }

    pub fn limit_reached(&self) {
        self.limit_reached.inc();
    }

    pub fn accept_failed(&self) {
        self.accept_errors.inc();
    }

    /// A connection was closed because `phase` (one of [`PHASES`]) timed out.
    pub fn timed_out(&self, phase: &'static str) {
        let labels = TimeoutLabels {
            listener: self.listener,
            phase,
        };
        self.timeouts.get_or_create(&labels).inc();
    }
}
