//! HTTP/1.1 upgrades (WebSocket and the like). The request goes to the pod
//! on a connection of its own with its `Upgrade` and `Connection: upgrade`
//! kept; if the pod answers 101 Switching Protocols, the client's connection
//! and the pod's become one byte tunnel. The tunnel holds its request's
//! place at the pod (one request in flight) until either side closes it, and
//! shutdown waits for open tunnels for the grace period, then closes them.
//!
//! A WebSocket over HTTP/2 (RFC 8441: `CONNECT` with `:protocol websocket`)
//! goes to the pod as the HTTP/1.1 upgrade it would have been (GET with
//! `Upgrade: websocket` and a key of sluice's), and the pod's 101 becomes
//! the 200 that opens the client's stream; the tunnel is the same.

use crate::pods::Lease;
use crate::server::Tunnels;
use base64::Engine;
use http::header::{HeaderName, HeaderValue, CONNECTION, UPGRADE};
use http::{response, Method, Request, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tracing::debug;

/// What a client asked to upgrade to, and its side of the upgrade.
pub struct Requested {
    protocol: HeaderValue,
    client: OnUpgrade,
    /// A WebSocket opened with HTTP/2's extended CONNECT.
    over_http2: bool,
}

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// The upgrade a request asks for, if any: HTTP/1.1 with `Upgrade` and an
/// `upgrade` token in `Connection` (RFC 9110 section 7.8), or HTTP/2's
/// extended CONNECT for a WebSocket (RFC 8441).
pub fn requested<B>(req: &mut Request<B>) -> Option<Requested> {
    match req.version() {
        Version::HTTP_11 => {}
        Version::HTTP_2 => {
            let protocol = req.extensions().get::<hyper::ext::Protocol>();
            let websocket = req.method() == Method::CONNECT
                && protocol.is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
            return websocket.then(|| Requested {
                protocol: HeaderValue::from_static("websocket"),
                client: hyper::upgrade::on(&mut *req),
                over_http2: true,
            });
        }
        _ => return None,
    }
    let headers = req.headers();
    let asks = headers.get_all(CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    let protocol = headers.get(UPGRADE).filter(|_| asks)?.clone();
    Some(Requested {
        protocol,
        client: hyper::upgrade::on(req),
        over_http2: false,
    })
}

impl Requested {
    /// Puts the upgrade back on the pod's request (the hop-by-hop headers
    /// were removed with the rest); an HTTP/2 WebSocket becomes HTTP/1.1's
    /// GET with a key (RFC 6455 section 4.1).
    pub fn ask_pod<B>(&self, request: &mut Request<B>) {
        if self.over_http2 {
            *request.method_mut() = Method::GET;
            let key = base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4());
            let headers = request.headers_mut();
            if let Ok(key) = HeaderValue::try_from(key) {
                headers.insert(SEC_WEBSOCKET_KEY, key);
            }
            if !headers.contains_key(SEC_WEBSOCKET_VERSION) {
                headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
        }
        let headers = request.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, self.protocol.clone());
    }

    /// Turns the pod's 101 into what the client asked for: a 101 with the
    /// protocol switched to (HTTP/1.1), or a 200 that opens the stream
    /// (HTTP/2, where `Upgrade` and the key's answer have no place).
    pub fn answer_client(&self, response: &mut response::Parts, switched_to: Option<HeaderValue>) {
        if self.over_http2 {
            response.headers.remove(SEC_WEBSOCKET_ACCEPT);
            response.status = StatusCode::OK;
            return;
        }
        (response.headers).insert(CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(protocol) = switched_to {
            response.headers.insert(UPGRADE, protocol);
        }
    }

    /// Joins the client to the pod once both sides have switched; the
    /// tunnel keeps `lease` (the request in flight) until it closes.
    pub fn tunnel(self, pod: OnUpgrade, lease: Lease, tunnels: &Arc<Tunnels>) {
        let open = tunnels.enter();
        let mut closing = tunnels.closing();
        tokio::spawn(async move {
            let _held = (lease, open);
            let (client, pod) = match tokio::join!(self.client, pod) {
                (Ok(client), Ok(pod)) => (client, pod),
                (Err(error), _) | (_, Err(error)) => {
                    return debug!(%error, "upgrade did not complete");
                }
            };
            let (mut client_reads, mut client_writes) = tokio::io::split(TokioIo::new(client));
            let (mut pod_reads, mut pod_writes) = tokio::io::split(TokioIo::new(pod));
            // Either side closing ends the tunnel (as nginx does): what it
            // sent is passed on and the other side's connection closed.
            let up = async {
                let copied = tokio::io::copy(&mut client_reads, &mut pod_writes).await;
                let _ = pod_writes.shutdown().await;
                copied
            };
            let down = async {
                let copied = tokio::io::copy(&mut pod_reads, &mut client_writes).await;
                let _ = client_writes.shutdown().await;
                copied
            };
            tokio::select! {
                copied = up => debug!(?copied, "tunnel closed by the client"),
                copied = down => debug!(?copied, "tunnel closed by the pod"),
                _ = closing.wait_for(|closing| *closing) => debug!("tunnel closed on shutdown"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_http11_request_with_both_headers_asks_to_upgrade() {
        let request = |version, connection: &str, upgrade: Option<&str>| {
            let mut builder = Request::get("/").version(version);
            builder = builder.header(CONNECTION, connection);
            if let Some(upgrade) = upgrade {
                builder = builder.header(UPGRADE, upgrade);
            }
            builder.body(()).unwrap()
        };
        let cases = [
            (Version::HTTP_11, "Upgrade", Some("websocket"), true),
            (
                Version::HTTP_11,
                "keep-alive, upgrade",
                Some("websocket"),
                true,
            ),
            (Version::HTTP_11, "keep-alive", Some("websocket"), false),
            (Version::HTTP_11, "upgrade", None, false),
            (Version::HTTP_10, "upgrade", Some("websocket"), false),
        ];
        for (version, connection, upgrade, asks) in cases {
            let mut req = request(version, connection, upgrade);
            assert_eq!(
                requested(&mut req).is_some(),
                asks,
                "{version:?} {connection} {upgrade:?}"
            );
        }
    }
}
