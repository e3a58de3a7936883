//! What an OpenAI-compatible API needs from a proxy in front of many models:
//! routing by the `model` its JSON body names, and `GET /v1/models` listing
//! every model the gateway routes.
//!
//! The body is read only until its `model` field's value has arrived (see
//! `routing::body_model`), at most `gateway.modelPeekLimit` bytes and within
//! the queue timeout; what was read goes to the pod first, then the rest is
//! streamed as any body is.

use super::ProxyError;
use super::{Proxy, ResponseBody};
use crate::routing::{body_model, BodyModel};
use crate::service::Service;
use crate::upstream::Peeked;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use std::sync::Arc;

/// The service of the model a request's body names. What was read of the
/// body stays with the request (an extension sent first), whatever the
/// outcome.
pub async fn route_by_body_model(
    proxy: &Proxy,
    req: &mut Request<Incoming>,
) -> Result<Arc<Service>, ProxyError> {
    let settings = proxy.settings.load();
    let (limit, wait) = (settings.model_peek_limit.0, settings.queue_timeout.0);
    let mut peeked = Peeked::default();
    let reading = read_model(req.body_mut(), &mut peeked, limit as usize);
    let found = tokio::time::timeout(wait, reading).await;
    req.extensions_mut().insert(peeked);
    let name = match found {
        Ok(Found::Model(name)) => name,
        Ok(Found::PastLimit) => return Err(ProxyError::ModelPastPeekLimit { limit }),
        Ok(Found::Unnamed) => return Err(ProxyError::NoModelInBody),
        Ok(Found::Malformed(why)) => {
            return Err(ProxyError::BadRequest(format!(
                "the body is not JSON: {why}"
            )))
        }
        Err(_) => {
            return Err(ProxyError::BadRequest(format!(
                "the body did not name its model within {wait:?}"
            )))
        }
    };
    let routes = proxy.routes.load();
    routes
        .route_model(&name)
        .cloned()
        .ok_or(ProxyError::UnknownModel(name))
}

enum Found {
    Model(String),
    Unnamed,
    Malformed(String),
    PastLimit,
}

/// Reads frames into `peeked` until its start names a model or cannot.
/// The start is parsed again only when it has doubled since the last try
/// (or the body ended), so a long prompt before `model` costs at most
/// twice its length to skip, not its length once per frame.
async fn read_model(body: &mut Incoming, peeked: &mut Peeked, limit: usize) -> Found {
    let (mut tried_at, mut finished) = (0, false);
    loop {
        let ended = finished || body.is_end_stream() || peeked.trailers.is_some();
        let seen = peeked.data.len();
        if ended || seen >= limit || seen >= tried_at * 2 {
            tried_at = seen.max(1);
            // Past the limit, the first `limit` bytes are all that count.
            match body_model(&peeked.data[..seen.min(limit)], ended && seen <= limit) {
                BodyModel::Named(name) => return Found::Model(name),
                BodyModel::Unnamed => return Found::Unnamed,
                BodyModel::Malformed(why) => return Found::Malformed(why),
                BodyModel::NeedMore if seen >= limit || ended => return Found::PastLimit,
                BodyModel::NeedMore => {}
            }
        }
        match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => peeked.data.extend_from_slice(&data),
                Err(frame) => peeked.trailers = frame.into_trailers().ok(),
            },
            None => finished = true,
            // The client's fault; forwarding would say the same.
            Some(Err(e)) => return Found::Malformed(format!("the body broke off: {e}")),
        }
    }
}

/// `GET /v1/models` to a host that names no service: every model (a
/// service's name or alias) the gateway routes by name, in OpenAI's shape.
pub fn model_list(proxy: &Proxy) -> Response<ResponseBody> {
    let routes = proxy.routes.load();
    let data: Vec<_> = routes
        .models()
        .into_iter()
        .map(|(name, service)| {
            serde_json::json!({
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": service.namespace(),
                "service": service.name(),
            })
        })
        .collect();
    let body = serde_json::json!({ "object": "list", "data": data });
    let mut response = Response::new(ResponseBody::full(Bytes::from(body.to_string())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
