//! TLS on the gateway's data listener: ALPN `h2` and `http/1.1` both reach
//! the pod (told `X-Forwarded-Proto: https`), a replaced certificate is
//! picked up by new connections, a broken one is not, a missing file is a
//! startup error, a WebSocket upgrades over TLS, and a plain-HTTP client on
//! the TLS port harms nothing.

mod support;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::config::quoted;
use support::process::sluice;
use support::*;
use tokio::io::AsyncReadExt;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

const WITHIN: Duration = Duration::from_secs(10);
const RELOADS_OK: &str = "sluice_tls_reloads_total{result=\"ok\"}";
const RELOADS_ERROR: &str = "sluice_tls_reloads_total{result=\"error\"}";

/// A self-signed certificate for `localhost` and one name of its own, and
/// its key, as PEM.
struct TestCertificate {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn certificate(name: &str) -> TestCertificate {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), name.to_string()]).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCertificate {
        der: cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// The certificate's two files in `dir`, as `tls.crt` and `tls.key`.
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    /// The files in `dir`, holding a new certificate for `name` and its key.
    fn with_pair(dir: &Path, name: &str) -> (Files, TestCertificate) {
        let files = Files::new(dir);
        let cert = certificate(name);
        files.write(&cert.cert_pem, &cert.key_pem);
        (files, cert)
    }

    /// Each file replaced whole (written beside it, then renamed over it),
    /// as a Secret volume or `mv` replaces it.
    fn write(&self, cert: &str, key: &str) {
        replace(&self.cert, cert);
        replace(&self.key, key);
    }
}

fn replace(path: &Path, text: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, text).unwrap();
    std::fs::rename(&new, path).unwrap();
}

/// The tutorial's service on `pod`, over TLS from `files`, polled often.
fn tls_config(pod: &Upstream, files: &Files) -> String {
    ConfigBuilder::new()
        .tls("certFile", quoted(&files.cert.display().to_string()))
        .tls("keyFile", quoted(&files.key.display().to_string()))
        .tls("pollInterval", "20ms")
        .tls("handshakeTimeout", "500ms")
        .service(tutorial(&[pod.addr]))
        .yaml()
}

/// A TLS client trusting `trusted`, offering `alpn` (none if empty). It
/// resumes no session: a resumed session shows the certificate of the
/// session it resumes, and each connection here is to show the current one.
fn connector(trusted: &[&TestCertificate], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.der.clone()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

async fn handshake(gw: &TestGateway, connector: &TlsConnector) -> TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(gw.gateway.data_addr())
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// The certificate the server presented on `stream`.
fn presented(stream: &TlsStream<tokio::net::TcpStream>) -> CertificateDer<'static> {
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate");
    certs[0].clone().into_owned()
}

/// One GET to the tutorial's service over `stream`, in the HTTP its ALPN
/// chose: the status and the version the response came in.
async fn get(stream: TlsStream<tokio::net::TcpStream>) -> (u16, Version) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = Request::get(format!("https://{HOST}/"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        let request = Request::get("/")
            .header("host", HOST)
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(request).await.unwrap()
    };
    let (parts, body) = response.into_parts();
    body.collect().await.unwrap();
    (parts.status.as_u16(), parts.version)
}

async fn metrics(gw: &TestGateway) -> String {
    get_text(gw.admin_url("/metrics")).await
}

#[tokio::test]
async fn alpn_h2_and_http1_both_reach_the_pod_which_is_told_https() {
    let pod = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (files, cert) = Files::with_pair(dir.path(), "first.sluice.test");
    let gw = TestGateway::start(&tls_config(&pod, &files)).await;

    for (offered, negotiated, version) in [
        (
            &[b"http/1.1".as_slice()][..],
            Some(&b"http/1.1"[..]),
            Version::HTTP_11,
        ),
        (&[b"h2".as_slice()][..], Some(&b"h2"[..]), Version::HTTP_2),
        // Both offered: the server prefers h2.
        (
            &[b"h2".as_slice(), b"http/1.1"][..],
            Some(&b"h2"[..]),
            Version::HTTP_2,
        ),
        // None offered: HTTP/1.1.
        (&[][..], None, Version::HTTP_11),
    ] {
        let stream = handshake(&gw, &connector(&[&cert], offered)).await;
        assert_eq!(
            stream.get_ref().1.alpn_protocol(),
            negotiated,
            "{offered:?}"
        );
        assert_eq!(presented(&stream), cert.der);
        let (status, got) = get(stream).await;
        assert_eq!((status, got), (200, version), "{offered:?}");
        let seen = pod.last_headers();
        assert_eq!(seen["x-forwarded-proto"], "https", "{offered:?}");
        assert_eq!(seen["host"], HOST, "{offered:?}");
    }
    assert_eq!(pod.hits(), 4);
}

/// A WebSocket pod answering each text message with the same text.
async fn websocket_echo_pod() -> std::net::SocketAddr {
    use futures::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() {
                        let _ = socket.send(message).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_websocket_upgrades_over_tls() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let pod = websocket_echo_pod().await;
    let dir = tempfile::tempdir().unwrap();
    let (files, cert) = Files::with_pair(dir.path(), "first.sluice.test");
    let yaml = ConfigBuilder::new()
        .tls("certFile", quoted(&files.cert.display().to_string()))
        .tls("keyFile", quoted(&files.key.display().to_string()))
        .service(tutorial(&[pod]))
        .yaml();
    let gw = TestGateway::start(&yaml).await;

    let stream = handshake(&gw, &connector(&[&cert], &[b"http/1.1"])).await;
    let request = format!("wss://{HOST}/chat").into_client_request().unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the upgrade goes through");
    assert_eq!(response.status(), 101);
    socket.send(Message::text("over tls")).await.unwrap();
    let answer = tokio::time::timeout(WITHIN, socket.next())
        .await
        .expect("an answer")
        .unwrap()
        .unwrap();
    assert_eq!(answer, Message::text("over tls"));
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn a_replaced_certificate_is_picked_up_and_a_broken_one_is_not() {
    let pod = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let (first, second) = (
        certificate("first.sluice.test"),
        certificate("second.sluice.test"),
    );
    files.write(&first.cert_pem, &first.key_pem);
    let gw = TestGateway::start(&tls_config(&pod, &files)).await;
    let trusting_both = connector(&[&first, &second], &[b"h2", b"http/1.1"]);
    // Held open across the change: it keeps the certificate it began with.
    let open = handshake(&gw, &trusting_both).await;
    assert_eq!(presented(&open), first.der);

    files.write(&second.cert_pem, &second.key_pem);
    poll_until(
        WITHIN,
        "new connections get the new certificate",
        || async {
            let stream = handshake(&gw, &trusting_both).await;
            (presented(&stream) == second.der)
                .then_some(())
                .ok_or_else(|| "the first certificate".to_string())
        },
    )
    .await;
    // One change, one reload. (Were the two files' renames seen apart
    // twice, the pair between them would count as an error; rare, allowed.)
    let errors = poll_until(WITHIN, "the reload is counted as ok", || async {
        let text = metrics(&gw).await;
        match metric(&text, RELOADS_OK) {
            Some(1.0) => Ok(metric(&text, RELOADS_ERROR).unwrap_or(0.0)),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    assert_eq!(get(open).await.0, 200, "the open connection still serves");
    let stream = handshake(&gw, &trusting_both).await;
    assert_eq!(get(stream).await.0, 200);

    // A key that is no key: refused, counted, and the second pair stays.
    replace(&files.key, "-----BEGIN PRIVATE KEY-----\ngarbage\n");
    poll_until(WITHIN, "the broken key is counted as an error", || async {
        let text = metrics(&gw).await;
        match (metric(&text, RELOADS_OK), metric(&text, RELOADS_ERROR)) {
            (Some(ok), Some(error)) if ok == 1.0 && error == errors + 1.0 => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    let stream = handshake(&gw, &trusting_both).await;
    assert_eq!(presented(&stream), second.der, "the previous pair stays");
    assert_eq!(get(stream).await.0, 200);
}

#[tokio::test]
async fn plain_http_and_a_silent_client_on_the_tls_port_are_closed_and_harm_nothing() {
    let pod = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (files, cert) = Files::with_pair(dir.path(), "first.sluice.test");
    let gw = TestGateway::start(&tls_config(&pod, &files)).await;

    let plain = client().get(gw.url("/")).header("host", HOST).send().await;
    assert!(plain.is_err(), "plain HTTP is not served: {plain:?}");
    // A client that says nothing is closed when the handshake times out.
    let mut silent = tokio::net::TcpStream::connect(gw.gateway.data_addr())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WITHIN, silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed by the handshake timeout: {read:?}"
    );
    let series = "sluice_connection_timeouts_total{listener=\"data\",phase=\"tls_handshake\"}";
    poll_until(WITHIN, "the handshake timeout is counted", || async {
        let text = metrics(&gw).await;
        match metric(&text, series) {
            Some(1.0) => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;

    let stream = handshake(&gw, &connector(&[&cert], &[b"h2"])).await;
    assert_eq!(get(stream).await.0, 200, "TLS clients are still served");
    assert_eq!(pod.hits(), 1, "the plain request reached no pod");
}

#[tokio::test]
async fn a_missing_certificate_file_or_a_foreign_key_is_a_startup_error() {
    let pod = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let cert = certificate("first.sluice.test");
    std::fs::write(&files.key, &cert.key_pem).unwrap();
    let yaml = tls_config(&pod, &files);

    let config = sluice::config::Config::parse(&yaml).unwrap();
    let Err(error) = sluice::gateway::Gateway::start(config, None).await else {
        panic!("the gateway started without its certificate file");
    };
    let error = error.to_string();
    assert!(error.contains("tls.certFile"), "{error}");
    assert!(error.contains(&files.cert.display().to_string()), "{error}");

    let file = dir.path().join("sluice.yaml");
    std::fs::write(&file, &yaml).unwrap();
    for command in ["check", "gateway"] {
        let out = sluice()
            .args([command, "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{command}: {stderr}");
        assert!(stderr.contains("tls.certFile"), "{command}: {stderr}");
    }

    // Both files there, but the key is another certificate's.
    std::fs::write(&files.cert, &cert.cert_pem).unwrap();
    std::fs::write(&files.key, certificate("other.sluice.test").key_pem).unwrap();
    let out = sluice()
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("tls: private key"), "{stderr}");
    assert!(stderr.contains("is not the key of certificate"), "{stderr}");
    assert_eq!(pod.hits(), 0);
}
