//! OpenAI's response shapes: a whole completion, the chunks of a streamed
//! one (a body that writes each token as the engine makes it), and errors.

use super::engine::{Sequence, Token};
use super::request::Endpoint;
use bytes::Bytes;
use http_body::{Body, Frame};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why every streamed completion ends this way: every length-limited one.
const FINISH_REASON: &str = "length";

/// What every chunk and the whole answer of one request share.
#[derive(Debug, Clone)]
pub struct Completion {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
}

/// A streamed completion's body: one server-sent event per token, then a
/// chunk with the finish reason, then `data: [DONE]`. Dropping it (the
/// client went away) drops the sequence, which cancels it in the engine.
pub struct EventStream {
    completion: Completion,
    sequence: Sequence,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Tokens,
    Finish,
    Done,
    Ended,
}

/// `{"error": {...}}` as OpenAI answers it.
pub fn error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "code": code } })
}

/// Seconds since the epoch, as `created` says it.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// === impl Completion ===

impl Completion {
    pub fn new(endpoint: Endpoint, model: &str) -> Completion {
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        };
        Completion {
            endpoint,
            id: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
            created: unix_now(),
            model: model.to_string(),
        }
    }

    /// The whole answer, for a request that did not ask to stream.
    pub fn whole(&self, text: &str, prompt_tokens: u32, completion_tokens: u32) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "finish_reason": FINISH_REASON,
            }),
            Endpoint::Completion => json!({
                "index": 0,
                "text": text,
                "finish_reason": FINISH_REASON,
            }),
        };
        let usage = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": u64::from(prompt_tokens) + u64::from(completion_tokens),
        });
        self.shape(self.object(false), choice, Some(usage))
    }

    /// One streamed chunk: a token's text, or (`None`) the finish.
    fn chunk(&self, token: Option<&Token>) -> Value {
        let finish_reason = match token {
            Some(_) => Value::Null,
            None => FINISH_REASON.into(),
        };
        let text = token.map(Token::text);
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let delta = match (token, text) {
                    (Some(t), Some(text)) if t.index == 0 => {
                        json!({ "role": "assistant", "content": text })
                    }
                    (_, Some(text)) => json!({ "content": text }),
                    _ => json!({}),
                };
                json!({ "index": 0, "delta": delta, "finish_reason": finish_reason })
            }
            Endpoint::Completion => json!({
                "index": 0,
                "text": text.unwrap_or_default(),
                "finish_reason": finish_reason,
            }),
        };
        self.shape(self.object(true), choice, None)
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    fn shape(&self, object: &str, choice: Value, usage: Option<Value>) -> Value {
        let mut body = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        if let Some(usage) = usage {
            body["usage"] = usage;
        }
        body
    }
}

// === impl EventStream ===

impl EventStream {
    pub fn new(completion: Completion, sequence: Sequence) -> EventStream {
        EventStream {
            completion,
            sequence,
            phase: Phase::Tokens,
        }
    }
}

fn event(data: &str) -> Option<Result<Frame<Bytes>, Infallible>> {
    Some(Ok(Frame::data(Bytes::from(format!("data: {data}\n\n")))))
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let frame = match this.phase {
            Phase::Tokens => match std::task::ready!(this.sequence.poll_token(cx)) {
                Some(token) => {
                    if token.last {
                        this.phase = Phase::Finish;
                    }
                    event(&this.completion.chunk(Some(&token)).to_string())
                }
                // The engine is gone (the server is stopping): no finish to tell.
                None => {
                    this.phase = Phase::Ended;
                    None
                }
            },
            Phase::Finish => {
                this.phase = Phase::Done;
                event(&this.completion.chunk(None).to_string())
            }
            Phase::Done => {
                this.phase = Phase::Ended;
                event("[DONE]")
            }
            Phase::Ended => None,
        };
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.phase == Phase::Ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_chunks_carry_deltas_and_the_finish() {
        let completion = Completion::new(Endpoint::Chat, "m");
        let first = completion.chunk(Some(&Token {
            index: 0,
            last: false,
        }));
        assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["model"], "m");
        assert_eq!(
            first["choices"][0],
            json!({ "index": 0, "delta": { "role": "assistant", "content": "sluice" }, "finish_reason": null })
        );
        let second = completion.chunk(Some(&Token {
            index: 1,
            last: true,
        }));
        assert_eq!(
            second["choices"][0]["delta"],
            json!({ "content": " stands" })
        );
        let finish = completion.chunk(None);
        assert_eq!(finish["choices"][0]["delta"], json!({}));
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn a_whole_completion_has_text_and_usage() {
        let completion = Completion::new(Endpoint::Completion, "m");
        let whole = completion.whole("sluice stands", 3, 2);
        assert_eq!(whole["object"], "text_completion");
        assert_eq!(whole["choices"][0]["text"], "sluice stands");
        assert_eq!(whole["choices"][0]["finish_reason"], "length");
        assert_eq!(
            whole["usage"],
            json!({ "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5 })
        );
        let chunk = completion.chunk(Some(&Token {
            index: 0,
            last: false,
        }));
        assert_eq!(chunk["object"], "text_completion");
        assert_eq!(chunk["choices"][0]["text"], "sluice");
    }
}
