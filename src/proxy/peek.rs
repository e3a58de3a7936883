//! Reading the start of a request's body before it is routed: a KServe v2
//! gRPC call's model name, an OpenAI-style body's `model`. What is read is
//! kept in a [`Peeked`] that stays with the request and goes to the pod
//! first, so nothing of the body is lost whatever the look decides.

use crate::upstream::Peeked;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use std::time::Duration;

/// What a look at the start of a body says.
pub enum Look<T> {
    Decided(T),
    /// Not enough yet: read more (once the body has ended, there is no more).
    More,
}

/// Why a peek decided nothing.
#[derive(Debug)]
pub enum Undecided {
    /// The body ended and the look still wanted more.
    Ended,
    /// The client sent too little within the wait.
    TimedOut(Duration),
    /// The client's body broke off (it left, or sent a malformed chunk).
    Broken(String),
}

/// Reads `req`'s body frame by frame into the request's [`Peeked`], asking
/// `look` what the start says (and whether the body has ended) before each
/// read, at most for `wait`: a client that sends no body is not waited for
/// longer than a queued request is.
pub async fn peek<T>(
    req: &mut Request<Incoming>,
    wait: Duration,
    look: impl FnMut(&Peeked, bool) -> Look<T>,
) -> Result<T, Undecided> {
    let mut peeked = Peeked::default();
    let reading = read(req.body_mut(), &mut peeked, look);
    let decided = tokio::time::timeout(wait, reading)
        .await
        .unwrap_or(Err(Undecided::TimedOut(wait)));
    req.extensions_mut().insert(peeked);
    decided
}

async fn read<T>(
    body: &mut Incoming,
    peeked: &mut Peeked,
    mut look: impl FnMut(&Peeked, bool) -> Look<T>,
) -> Result<T, Undecided> {
    let mut finished = false;
    loop {
        let ended = finished || body.is_end_stream() || peeked.trailers.is_some();
        match look(peeked, ended) {
            Look::Decided(decision) => return Ok(decision),
            Look::More if ended => return Err(Undecided::Ended),
            Look::More => {}
        }
        match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => peeked.data.extend_from_slice(&data),
                Err(frame) => peeked.trailers = frame.into_trailers().ok(),
            },
            None => finished = true,
            Some(Err(e)) => return Err(Undecided::Broken(e.to_string())),
        }
    }
}
