//! `x-request-id`: the client's if it sent one, else a new UUID v4. The pod
//! sees it on the request, and the client gets it back on the response
//! (unless the pod answered with one of its own), sluice's own answers too.

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, set on `headers` if it had none.
pub fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        return id.clone();
    }
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    let id = HeaderValue::from_str(text).expect("a UUID is a valid header value");
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// Gives the response the request's id, unless it carries one already.
pub fn propagate(headers: &mut HeaderMap, id: HeaderValue) {
    if let http::header::Entry::Vacant(slot) = headers.entry(X_REQUEST_ID) {
        slot.insert(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_an_id_gets_a_new_uuid_on_both_sides() {
        let mut request = HeaderMap::new();
        let id = ensure(&mut request);
        assert_eq!(request[&X_REQUEST_ID], id);
        let text = id.to_str().unwrap();
        assert!(uuid::Uuid::parse_str(text).is_ok(), "{text}");
        assert_ne!(ensure(&mut HeaderMap::new()), id, "each request its own");

        let mut response = HeaderMap::new();
        propagate(&mut response, id.clone());
        assert_eq!(response[&X_REQUEST_ID], id);
    }

    #[test]
    fn the_clients_id_is_kept_and_the_pods_own_wins_on_the_response() {
        let mut request = HeaderMap::new();
        request.insert(X_REQUEST_ID, HeaderValue::from_static("client-1"));
        assert_eq!(ensure(&mut request), "client-1");
        assert_eq!(request.get_all(&X_REQUEST_ID).iter().count(), 1);

        let mut response = HeaderMap::new();
        response.insert(X_REQUEST_ID, HeaderValue::from_static("pod-7"));
        propagate(&mut response, HeaderValue::from_static("client-1"));
        assert_eq!(response[&X_REQUEST_ID], "pod-7");
    }
}
