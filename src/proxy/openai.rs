//! What an OpenAI-compatible API needs from a proxy in front of many models:
//! routing by the `model` its JSON body names, and `GET /v1/models` listing
//! every model the gateway routes.
//!
//! The body is read only until its `model` field's value has arrived (see
//! `routing::body_model`), at most `gateway.modelPeekLimit` bytes and within
//! the queue timeout; what was read goes to the pod first, then the rest is
//! streamed as any body is.

use super::peek::{peek, Look, Undecided};
use super::{Proxy, ProxyError, ResponseBody};
use crate::routing::{body_model, BodyModel};
use crate::service::Service;
use crate::upstream::Peeked;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;

/// The service of the model a request's body names. What was read of the
/// body stays with the request (an extension sent first), whatever the
/// outcome.
pub async fn route_by_body_model(
    proxy: &Proxy,
    req: &mut Request<Incoming>,
) -> Result<Arc<Service>, ProxyError> {
    let settings = proxy.settings.load();
    let wait = settings.queue_timeout.0;
    let body_limit = settings.max_request_body_size.0;
    // Never more than the body may be.
    let limit = match body_limit {
        0 => settings.model_peek_limit.0,
        body_limit => settings.model_peek_limit.0.min(body_limit),
    } as usize;
    // The start is parsed again only when it has doubled since the last try
    // (or the body ended), so a long prompt before `model` costs at most
    // twice its length to skip, not its length once per frame.
    let mut tried_at = 0;
    let look = |peeked: &Peeked, ended: bool| {
        let seen = peeked.data.len();
        if !(ended || seen >= limit || seen >= tried_at * 2) {
            return Look::More;
        }
        tried_at = seen.max(1);
        // Past the limit, only the first `limit` bytes count.
        Look::Decided(
            match body_model(&peeked.data[..seen.min(limit)], ended && seen <= limit) {
                BodyModel::Named(name) => Ok(name),
                BodyModel::NeedMore if seen < limit => return Look::More,
                BodyModel::NeedMore if body_limit > 0 && seen as u64 > body_limit => {
                    Err(ProxyError::BodyTooLarge { limit: body_limit })
                }
                BodyModel::NeedMore => Err(ProxyError::ModelPastPeekLimit {
                    limit: limit as u64,
                }),
                BodyModel::Unnamed => Err(ProxyError::NoModelInBody),
                BodyModel::Malformed(why) => Err(ProxyError::BadRequest(format!(
                    "the body is not JSON: {why}"
                ))),
            },
        )
    };
    let name = match peek(req, wait, look).await {
        Ok(found) => found?,
        Err(Undecided::Ended) => return Err(ProxyError::NoModelInBody),
        Err(Undecided::TimedOut(wait)) => {
            return Err(ProxyError::BadRequest(format!(
                "the body did not name its model within {wait:?}"
            )))
        }
        Err(Undecided::Broken(why)) => {
            return Err(ProxyError::BadRequest(format!(
                "the client's request body failed: {why}"
            )))
        }
    };
    let routes = proxy.routes.load();
    routes
        .route_model(&name)
        .cloned()
        .ok_or(ProxyError::UnknownModel(name))
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
