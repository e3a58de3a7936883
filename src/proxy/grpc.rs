//! What a gRPC request needs from a proxy: errors a gRPC client can read,
//! and its deadline (`grpc-timeout`) honoured and passed on.
//!
//! A gRPC client reads the outcome of a call from `grpc-status`, not from
//! the HTTP status; to it a 503 is a protocol error. So sluice answers its
//! own errors on a gRPC request as gRPC does: HTTP 200, `content-type:
//! application/grpc`, and `grpc-status`/`grpc-message` in a trailers-only
//! response (headers with the end of the stream, no body).
//!
//! A KServe v2 call to a host that names no service is routed by the model
//! its first message names: only the start of that message is read (see
//! `routing::grpc_model`), and it goes to the pod first, before the rest.

use super::peek::{peek, Look};
use super::{Proxy, ProxyError};
use crate::routing::{grpc_model, names_a_model, GrpcModel, MAX_PREFIX};
use crate::service::Service;
use crate::upstream::Peeked;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::Request;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;

pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The service of the model a KServe v2 call names in its first message,
/// if any. What was read of the body stays with the request (an extension
/// that `upstream_request` sends first), whatever the outcome. The read is
/// bounded by the queue timeout: a client that sends no body is not waited
/// for longer than a queued request is.
pub async fn route_by_model(proxy: &Proxy, req: &mut Request<Incoming>) -> Option<Arc<Service>> {
    if !names_a_model(req.uri().path()) {
        return None;
    }
    let wait = proxy.settings.load().queue_timeout.0;
    let look = |peeked: &Peeked, ended: bool| match grpc_model(&peeked.data, ended) {
        GrpcModel::Named(name) => Look::Decided(Some(name.to_string())),
        GrpcModel::Unnamed => Look::Decided(None),
        GrpcModel::NeedMore if peeked.data.len() >= MAX_PREFIX => Look::Decided(None),
        GrpcModel::NeedMore => Look::More,
    };
    // A broken body, or one that stops short, names no model: forwarding
    // says what is wrong with it.
    let name = peek(req, wait, look).await.ok().flatten()?;
    let routes = proxy.routes.load();
    routes.route_model(&name).cloned()
}

/// gRPC status codes (grpc/doc/statuscodes.md) that sluice answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

/// True for a gRPC call: `content-type: application/grpc` or `application/grpc+proto` etc.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// The code a client gets for each of sluice's errors. No pod, a full queue
/// or a failed pod are UNAVAILABLE (the call may be retried); a deadline
/// or an upstream timeout DEADLINE_EXCEEDED; no route UNIMPLEMENTED (as
/// gRPC maps a 404); limits RESOURCE_EXHAUSTED; a malformed request INTERNAL
/// (as gRPC maps a 400).
pub fn code(error: &ProxyError) -> Code {
    match error {
        ProxyError::BadRequest(_) => Code::Internal,
        ProxyError::RouteNotFound { .. }
        | ProxyError::NoModelInBody
        | ProxyError::UnknownModel(_) => Code::Unimplemented,
        ProxyError::ModelPastPeekLimit { .. } => Code::ResourceExhausted,
        ProxyError::HeadersTooLarge { .. }
        | ProxyError::TooManyHeaders { .. }
        | ProxyError::BodyTooLarge { .. } => Code::ResourceExhausted,
        ProxyError::QueueFull
        | ProxyError::QueueTimeout(_)
        | ProxyError::ActivationTimeout(_)
        | ProxyError::UpstreamConnect { .. }
        | ProxyError::Upstream { .. } => Code::Unavailable,
        ProxyError::UpstreamTimeout { .. } | ProxyError::DeadlineExceeded(_) => {
            Code::DeadlineExceeded
        }
    }
}

/// The status headers of a trailers-only answer: `grpc-status` and the
/// message percent-encoded, as the gRPC HTTP/2 protocol requires.
pub fn status_headers(headers: &mut HeaderMap, error: &ProxyError) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(code(error) as u16));
    if let Ok(message) = HeaderValue::try_from(percent_encode(&error.to_string())) {
        headers.insert(GRPC_MESSAGE, message);
    }
}

/// Bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The call's deadline from `grpc-timeout` (1 to 8 digits and a unit: H, M,
/// S, m, u or n). A malformed value is ignored, as gRPC servers do.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// `grpc-timeout` for what is left of a deadline, so the pod gives up when
/// the client does: milliseconds (at least 1), or seconds if they would
/// not fit in 8 digits.
pub fn timeout_value(left: Duration) -> HeaderValue {
    let millis = left.as_millis().max(1);
    let text = if millis < 100_000_000 {
        format!("{millis}m")
    } else {
        format!("{}S", left.as_secs().min(99_999_999))
    };
    HeaderValue::try_from(text).expect("digits and a unit are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        assert!(is_grpc(&headers(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&headers(&[(
            "content-type",
            "application/grpc+proto"
        )])));
        assert!(is_grpc(&headers(&[("content-type", "Application/GRPC")])));
        assert!(!is_grpc(&headers(&[(
            "content-type",
            "application/grpc-web"
        )])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_timeout_is_parsed_in_every_unit() {
        let t = |v: &'static str| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("5S"), Some(Duration::from_secs(5)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("7u"), Some(Duration::from_micros(7)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "5", "123456789m", "5s", "-5m", "1.5S", "5 m"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn what_is_left_of_a_deadline_is_passed_on() {
        assert_eq!(timeout_value(Duration::from_millis(1500)), "1500m");
        assert_eq!(timeout_value(Duration::from_micros(10)), "1m");
        assert_eq!(timeout_value(Duration::from_secs(200_000)), "200000S");
        let back = timeout(&headers(&[("grpc-timeout", "1500m")]));
        assert_eq!(back, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn errors_become_grpc_codes_with_encoded_messages() {
        assert_eq!(code(&ProxyError::QueueFull), Code::Unavailable);
        assert_eq!(
            code(&ProxyError::ActivationTimeout(Duration::from_secs(1))),
            Code::Unavailable
        );
        assert_eq!(
            code(&ProxyError::DeadlineExceeded(Duration::from_secs(1))),
            Code::DeadlineExceeded
        );
        let not_found = ProxyError::RouteNotFound {
            host: "x".into(),
            path: "/a".into(),
        };
        assert_eq!(code(&not_found), Code::Unimplemented);
        let mut map = HeaderMap::new();
        status_headers(&mut map, &ProxyError::BadRequest("bad é 100%".into()));
        assert_eq!(map["grpc-status"], "13");
        assert_eq!(map["grpc-message"], "bad request: bad %C3%A9 100%25");
        assert_eq!(map["content-type"], "application/grpc");
    }
}
