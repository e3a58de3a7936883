//! The data listener's TLS (`tls:` in the configuration): the certificate
//! loaded at start, where a problem is a configuration error naming its
//! key, then re-read while the gateway runs (`server::tls`).

use crate::config::{Config, ConfigError, TlsSettings};
use crate::metrics::TlsMetrics;
use crate::server::tls::{CertificateFiles, PemFile, ReloadingCertificate, TlsError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The certificate of `config`'s `tls:`, if it has one.
pub async fn load(
    config: &Config,
    metrics: TlsMetrics,
) -> Result<Option<Arc<ReloadingCertificate>>, ConfigError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    ReloadingCertificate::load(files(tls), metrics)
        .await
        .map(Some)
        .map_err(invalid)
}

/// What `sluice check` adds to the file's own checks: the certificate and
/// key files load, as the gateway would load them at start.
pub fn check(config: &Config, path: &Path) -> Result<(), ConfigError> {
    let Some(tls) = &config.tls else {
        return Ok(());
    };
    files(tls)
        .load()
        .map(drop)
        .map_err(|error| invalid(error).at(path))
}

fn files(tls: &TlsSettings) -> CertificateFiles {
    CertificateFiles::new(&tls.cert_file, &tls.key_file)
}

/// The problem, under the key of the file it is in.
fn invalid(error: TlsError) -> ConfigError {
    let field = match error.file() {
        Some(PemFile::Certificate) => "tls.certFile",
        Some(PemFile::Key) => "tls.keyFile",
        None => "tls",
    };
    ConfigError::Invalid {
        path: PathBuf::new(),
        problems: vec![format!("{field}: {error}")],
    }
}
