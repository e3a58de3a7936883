//! TLS certificate reloads, by result.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// `Default` gives handles registered nowhere, for a listener without a
/// metrics endpoint (the webhook).
#[derive(Clone, Debug, Default)]
pub struct TlsMetrics {
    reloads: Family<ResultLabels, Counter>,
}

// === impl TlsMetrics ===

impl TlsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = TlsMetrics::default();
        registry.register(
            "sluice_tls_reloads",
            "Changes of the TLS certificate or key files, by result: ok (new \
             handshakes get the new pair) or error (the previous pair stays)",
            metrics.reloads.clone(),
        );
        metrics
    }

    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }
}
