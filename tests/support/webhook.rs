//! A real webhook on 127.0.0.1 with a fresh self-signed certificate, and a
//! TLS client that trusts it.

use sluice::metrics::TlsMetrics;
use sluice::server::tls::{acceptor, CertificateFiles, ReloadingCertificate};
use sluice::webhook::{Injection, Webhook, WebhookConnections};
use std::sync::Arc;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// What the tests inject: the chart's defaults.
pub fn injection() -> Injection {
    Injection {
        image: "ghcr.io/example/sluice:0.1.0".into(),
        port: 8012,
        admin_port: 9091,
        pre_stop_seconds: 5,
    }
}

/// Starts a webhook; the temp dir holds its certificate and key.
pub async fn start(connections: WebhookConnections) -> (Webhook, TlsConnector, tempfile::TempDir) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let files = CertificateFiles::new(&cert_path, &key_path);
    let certificate = ReloadingCertificate::load(files, TlsMetrics::default())
        .await
        .unwrap();
    let tls = acceptor(certificate);
    let webhook = Webhook::start(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        injection(),
        connections,
    )
    .await
    .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (webhook, TlsConnector::from(Arc::new(config)), dir)
}

/// An HTTP/1.1 client connection over TLS to the webhook at `addr`, as
/// `localhost` (the name in its certificate).
pub async fn https<B>(
    addr: std::net::SocketAddr,
    connector: &TlsConnector,
) -> hyper::client::conn::http1::SendRequest<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    sender
}
