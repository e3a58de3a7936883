//! A certificate re-read when its files change. The files are read on an
//! interval and compared by content, not by modification time: a Kubernetes
//! Secret volume changes by swapping its `..data` symlink, which leaves the
//! mtime of the paths sluice was given alone.
//!
//! A change is applied once the same bytes were read twice in a row, so
//! that a pair caught halfway (a new certificate beside the old key, while
//! someone copies them in turn) is not reported as broken. New handshakes
//! get the new pair; open connections keep the one they began with. A pair
//! that fails to load is logged and counted once, and the old one stays.

use super::{CertificateFiles, TlsError};
use crate::metrics::TlsMetrics;
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tracing::{info, warn};

/// How often the files are read, unless told otherwise.
pub const DEFAULT_POLL: Duration = Duration::from_secs(5);

/// What one look at the files found: both files' bytes, or why not.
type Seen = Result<(Vec<u8>, Vec<u8>), String>;

/// The certificate new handshakes get, and its files.
#[derive(Debug)]
pub struct ReloadingCertificate {
    files: CertificateFiles,
    current: ArcSwap<CertifiedKey>,
    looks: Mutex<Looks>,
    metrics: TlsMetrics,
}

/// What the poller saw.
#[derive(Debug)]
struct Looks {
    /// Last acted on (loaded, or reported as failing).
    last: Seen,
    /// Seen once, differing from `last`: acted on if seen again next time.
    settling: Option<Seen>,
}

// === impl ReloadingCertificate ===

impl ReloadingCertificate {
    /// Loads the pair now; an error here is the caller's to report (at
    /// start, a configuration error).
    pub async fn load(files: CertificateFiles, metrics: TlsMetrics) -> Result<Arc<Self>, TlsError> {
        let reading = files.clone();
        let (cert, key) = tokio::task::spawn_blocking(move || reading.read())
            .await
            .map_err(|e| TlsError::Task(e.to_string()))??;
        let loaded = files.parse(&cert, &key)?;
        Ok(Arc::new(ReloadingCertificate {
            files,
            current: ArcSwap::new(loaded),
            looks: Mutex::new(Looks {
                last: Ok((cert, key)),
                settling: None,
            }),
            metrics,
        }))
    }

    /// The pair new handshakes get now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Reads the files every `every` until `stop`, applying what changed.
    pub async fn watch(self: Arc<Self>, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // The first tick is now: the pair was just loaded.
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = crate::server::stopped(&mut stop) => return,
            }
            self.look().await;
        }
    }

    /// One look at the files: applies a change seen twice in a row.
    pub async fn look(&self) {
        let files = self.files.clone();
        let seen: Seen = match tokio::task::spawn_blocking(move || files.read()).await {
            Ok(read) => read.map_err(|e| e.to_string()),
            Err(join) => Err(join.to_string()),
        };
        let settled = {
            let mut looks = self.looks();
            if looks.last == seen {
                looks.settling = None;
                return;
            }
            if looks.settling.as_ref() != Some(&seen) {
                looks.settling = Some(seen);
                return;
            }
            looks.settling = None;
            looks.last = seen.clone();
            seen
        };
        self.apply(settled);
    }

    fn apply(&self, seen: Seen) {
        let (cert, key) = (self.files.cert.display(), self.files.key.display());
        let loaded = seen.and_then(|(c, k)| self.files.parse(&c, &k).map_err(|e| e.to_string()));
        match loaded {
            Ok(pair) => {
                self.current.store(pair);
                self.metrics.reloaded(true);
                info!(%cert, %key, "TLS certificate reloaded; new connections get it");
            }
            Err(error) => {
                self.metrics.reloaded(false);
                warn!(%error, "TLS certificate not reloaded; the previous one stays");
            }
        }
    }

    fn looks(&self) -> MutexGuard<'_, Looks> {
        self.looks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use std::path::Path;

    /// A self-signed pair for `name`, as PEM.
    fn pair(name: &str) -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    /// The reload series, sorted (a family's order is its hash map's).
    fn reloads(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        let mut series: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("sluice_tls_reloads_total{"))
            .collect();
        series.sort();
        series.join(" ")
    }

    async fn start(dir: &Path, first: &(String, String)) -> (Arc<ReloadingCertificate>, Registry) {
        let files = CertificateFiles::new(dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&files.cert, &first.0).unwrap();
        std::fs::write(&files.key, &first.1).unwrap();
        let mut registry = Registry::default();
        let metrics = TlsMetrics::register(&mut registry);
        let certificate = ReloadingCertificate::load(files, metrics).await.unwrap();
        (certificate, registry)
    }

    #[tokio::test]
    async fn a_change_is_applied_once_two_looks_agree_and_a_half_copied_pair_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (pair("first.test"), pair("second.test"));
        let (certificate, registry) = start(dir.path(), &first).await;
        let served = || certificate.current().cert[0].clone();
        let first_der = served();

        certificate.look().await;
        assert_eq!(reloads(&registry), "", "nothing changed, nothing counted");

        // The new certificate beside the old key: seen once, not acted on.
        std::fs::write(dir.path().join("tls.crt"), &second.0).unwrap();
        certificate.look().await;
        assert_eq!(served(), first_der);
        // Then the new key: a different pair again, seen once.
        std::fs::write(dir.path().join("tls.key"), &second.1).unwrap();
        certificate.look().await;
        assert_eq!(served(), first_der);
        // Seen twice: applied, and counted once.
        certificate.look().await;
        assert_ne!(served(), first_der);
        assert_eq!(
            reloads(&registry),
            "sluice_tls_reloads_total{result=\"ok\"} 1"
        );
        certificate.look().await;
        assert_eq!(
            reloads(&registry),
            "sluice_tls_reloads_total{result=\"ok\"} 1"
        );

        // A missing key file, seen twice: counted once as an error, the pair stays.
        let second_der = served();
        std::fs::remove_file(dir.path().join("tls.key")).unwrap();
        for _ in 0..3 {
            certificate.look().await;
        }
        assert_eq!(served(), second_der);
        assert_eq!(
            reloads(&registry),
            "sluice_tls_reloads_total{result=\"error\"} 1 sluice_tls_reloads_total{result=\"ok\"} 1"
        );
    }
}
