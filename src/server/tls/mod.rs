//! TLS for a listener: one loader of PEM certificate and key files, shared
//! by the gateway's data listener and the webhook, and a certificate that is
//! re-read when its files change ([`ReloadingCertificate`]).
//!
//! rustls with the ring provider; ALPN offers `h2` and `http/1.1`, and a
//! connection speaks what the handshake chose (HTTP/1.1 without ALPN).

mod reload;

pub use self::reload::{ReloadingCertificate, DEFAULT_POLL};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::ResolvesServerCert;
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{Error, InconsistentKeys, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The ALPN protocols offered, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Which of the two files a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PemFile {
    Certificate,
    Key,
}

/// Why a certificate and key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{which} {}: {source}", .path.display())]
    File {
        which: PemFile,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{which} {}: no PEM {which} in the file", .path.display())]
    Empty { which: PemFile, path: PathBuf },
    #[error("private key {} is not the key of certificate {}", .key.display(), .cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("certificate {} and key {}: {source}", .cert.display(), .key.display())]
    Rustls {
        cert: PathBuf,
        key: PathBuf,
        source: tokio_rustls::rustls::Error,
    },
    #[error("reading the certificate and key: {0}")]
    Task(String),
}

/// The two files of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

// === impl CertificateFiles ===

impl CertificateFiles {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        CertificateFiles {
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// Both files' bytes, as they are now.
    pub fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        Ok((
            read(PemFile::Certificate, &self.cert)?,
            read(PemFile::Key, &self.key)?,
        ))
    }

    /// Reads and checks both files: a chain of at least one certificate,
    /// a private key, and the key the first certificate's.
    pub fn load(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let (cert, key) = self.read()?;
        self.parse(&cert, &key)
    }

    /// [`load`](Self::load) on the blocking pool, as every file is read.
    pub async fn load_off_runtime(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let files = self.clone();
        tokio::task::spawn_blocking(move || files.load())
            .await
            .map_err(|e| TlsError::Task(e.to_string()))?
    }

    /// The certified key the PEM bytes of the two files hold.
    pub fn parse(&self, cert: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
        fn malformed(which: PemFile, path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
            move |source| TlsError::File {
                which,
                path: path.to_path_buf(),
                source,
            }
        }
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert[..])
            .collect::<Result<_, _>>()
            .map_err(malformed(PemFile::Certificate, &self.cert))?;
        if chain.is_empty() {
            return Err(TlsError::Empty {
                which: PemFile::Certificate,
                path: self.cert.clone(),
            });
        }
        let private_key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key[..])
            .map_err(malformed(PemFile::Key, &self.key))?
            .ok_or_else(|| TlsError::Empty {
                which: PemFile::Key,
                path: self.key.clone(),
            })?;
        // Parses the key, and checks it against the certificate's public key.
        CertifiedKey::from_der(chain, private_key, &provider())
            .map(Arc::new)
            .map_err(|source| match source {
                Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::KeyMismatch {
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                },
                source => TlsError::Rustls {
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                    source,
                },
            })
    }
}

/// The file's bytes; certificate files are small, and none is read past
/// 1 MiB (a Kubernetes Secret's limit).
fn read(which: PemFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    const MAX: u64 = 1 << 20;
    let failed = |source| TlsError::File {
        which,
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX + 1).read_to_end(&mut bytes))
        .map_err(failed)?;
    if bytes.len() as u64 > MAX {
        let too_large = std::io::Error::other("larger than 1 MiB");
        return Err(failed(too_large));
    }
    Ok(bytes)
}

/// A TLS acceptor whose certificate comes from `certificates` at each
/// handshake, offering ALPN `h2` and `http/1.1`.
pub fn acceptor(certificates: Arc<dyn ResolvesServerCert>) -> TlsAcceptor {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

fn provider() -> CryptoProvider {
    ring::default_provider()
}

// === impl PemFile ===

impl std::fmt::Display for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PemFile::Certificate => "certificate",
            PemFile::Key => "private key",
        })
    }
}

impl TlsError {
    /// The file the problem is in, if it is in one of them only.
    pub fn file(&self) -> Option<PemFile> {
        match self {
            TlsError::File { which, .. } | TlsError::Empty { which, .. } => Some(*which),
            TlsError::KeyMismatch { .. } | TlsError::Rustls { .. } | TlsError::Task(_) => None,
        }
    }
}
