//! Header hygiene: hop-by-hop headers out, forwarding headers in.

use crate::server::OverTls;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Extensions;
use std::net::IpAddr;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes the hop-by-hop headers of RFC 9110 section 7.6.1: `Connection`
/// and every header it names, `Proxy-Connection`, `Keep-Alive`, `TE`,
/// `Transfer-Encoding` and `Upgrade`. `TE: trailers` is kept, as HTTP/2
/// allows, so that the peer still knows trailers are welcome.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one look at the names they have is
    // cheaper than the eight hashed lookups below.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(named) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = named
            .to_str()
            .unwrap_or_default()
            .split(',')
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| name != header::TE)
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let keep_te = headers
        .get_all(header::TE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_te {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The headers that never pass a proxy (`Connection` also stands for those
/// it names).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    PROXY_CONNECTION,
    KEEP_ALIVE,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// The client's address as a header value. A gateway's requests come from
/// few addresses (a load balancer, an ingress), so the last one formatted
/// on this thread is kept: formatting it was a fifth of the header work.
fn client_value(client: IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    let client = client.to_canonical();
    LAST.with(|last| {
        if let Some((ip, value)) = &*last.borrow() {
            if *ip == client {
                return Some(value.clone());
            }
        }
        let value = HeaderValue::try_from(client.to_string()).ok()?;
        *last.borrow_mut() = Some((client, value.clone()));
        Some(value)
    })
}

/// Appends the client to `X-Forwarded-For` and sets `X-Forwarded-Proto`
/// (`https` for a request the server marked [`OverTls`], else `http`) and
/// `X-Forwarded-Host`. The `Host` is set explicitly so that an HTTP/2
/// client's `:authority` reaches an HTTP/1.1 pod as its Host.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    extensions: &Extensions,
    client: IpAddr,
    host: Option<&HeaderValue>,
) {
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::to_str) {
        Some(Ok(prior)) if !prior.trim().is_empty() => {
            let client = client.to_canonical();
            HeaderValue::try_from(format!("{prior}, {client}")).ok()
        }
        _ => client_value(client),
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let proto = if extensions.get::<OverTls>().is_some() {
        "https"
    } else {
        "http"
    };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host.clone());
        headers.insert(header::HOST, host.clone());
    }
}

/// Total size of header names and values, as limited by `maxHeaderSize`.
pub fn headers_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "close"),
            ("te", "gzip"),
            ("content-type", "application/json"),
        ]);
        remove_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["content-type"]);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        for name in [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "proxy-connection",
            "te",
        ] {
            let mut h = map(&[(name, "x"), ("accept", "*/*")]);
            remove_hop_by_hop(&mut h);
            let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, vec!["accept"], "{name}");
        }
        let mut none = map(&[("accept", "*/*"), ("x-secret", "1")]);
        remove_hop_by_hop(&mut none);
        assert_eq!(none.len(), 2);
    }

    #[test]
    fn the_client_address_is_formatted_for_each_address() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "127.0.0.1",
            "::1",
            "::ffff:10.9.8.7",
        ] {
            let mut h = HeaderMap::new();
            add_forwarding(&mut h, &Extensions::new(), ip.parse().unwrap(), None);
            let want = ip.parse::<IpAddr>().unwrap().to_canonical().to_string();
            assert_eq!(h["x-forwarded-for"], want.as_str());
        }
    }

    #[test]
    fn te_trailers_is_kept() {
        let mut h = map(&[("te", "trailers"), ("connection", "te")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert!(h.get("connection").is_none());
    }

    #[test]
    fn forwarding_headers_are_added() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let host = HeaderValue::from_static("m.ns.example.com");
        let plain = Extensions::new();
        add_forwarding(&mut h, &plain, "127.0.0.1".parse().unwrap(), Some(&host));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "m.ns.example.com");
        assert_eq!(h["host"], "m.ns.example.com");
    }

    #[test]
    fn a_request_over_tls_is_forwarded_as_https_whatever_the_client_says() {
        let mut h = map(&[("x-forwarded-proto", "http")]);
        let mut over_tls = Extensions::new();
        over_tls.insert(OverTls);
        add_forwarding(&mut h, &over_tls, "127.0.0.1".parse().unwrap(), None);
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}
