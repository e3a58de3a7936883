//! What a completion request asks for, read from its JSON body. Pure, so
//! malformed input is easy to test; prompts are counted in words, which is
//! what the stand-in calls a token.

use serde::Deserialize;
use serde_json::Value;

/// `max_tokens` when the request leaves it out (vLLM's completions default).
pub const DEFAULT_MAX_TOKENS: u32 = 16;

/// The most a request may ask for, like a model's context length.
pub const MAX_TOKENS_LIMIT: u32 = 4096;

/// Which OpenAI endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Endpoint {
    Chat,
    Completion,
}

#[derive(Debug, PartialEq)]
pub struct Generation {
    pub model: String,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    pub stream: bool,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Body {
    model: String,
    messages: Option<Vec<Message>>,
    prompt: Option<Value>,
    max_tokens: Option<u64>,
    /// The newer name of `max_tokens` in chat; it wins when both are given.
    max_completion_tokens: Option<u64>,
    stream: Option<bool>,
}

#[derive(Deserialize)]
struct Message {
    /// A string, or a list of parts such as `{"type": "text", "text": ".."}`.
    #[serde(default)]
    content: Value,
}

/// Reads a request to `endpoint`.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<Generation, RequestError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|e| RequestError::NotJson(e.to_string()))?;
    // The path names the field at fault (`max_tokens: invalid value ..`).
    let body: Body =
        serde_path_to_error::deserialize(json).map_err(|e| RequestError::Invalid(e.to_string()))?;
    let prompt_tokens = match endpoint {
        Endpoint::Chat => {
            let messages = body
                .messages
                .ok_or_else(|| RequestError::Invalid("messages: required".into()))?;
            if messages.is_empty() {
                return Err(RequestError::Invalid("messages: must not be empty".into()));
            }
            messages.iter().map(|m| words(&m.content)).sum()
        }
        Endpoint::Completion => {
            let prompt = body
                .prompt
                .ok_or_else(|| RequestError::Invalid("prompt: required".into()))?;
            words(&prompt)
        }
    };
    let max_tokens = body
        .max_completion_tokens
        .or(body.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS.into());
    if !(1..=u64::from(MAX_TOKENS_LIMIT)).contains(&max_tokens) {
        return Err(RequestError::Invalid(format!(
            "max_tokens: must be between 1 and {MAX_TOKENS_LIMIT}, got {max_tokens}"
        )));
    }
    Ok(Generation {
        model: body.model,
        prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
        max_tokens: max_tokens as u32,
        stream: body.stream.unwrap_or(false),
    })
}

/// Words in a prompt or a message: in a string, in each string or text part
/// of a list; a number in a list is a token id, one token.
fn words(value: &Value) -> u64 {
    match value {
        Value::String(text) => text.split_whitespace().count() as u64,
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(words).sum(),
        Value::Object(part) => part.get("text").map_or(0, words),
        Value::Null | Value::Bool(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_request_counts_its_messages_words() {
        let body = br#"{"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello there you"}]}
        ], "max_tokens": 5, "stream": true}"#;
        let expected = Generation {
            model: "m".into(),
            prompt_tokens: 5,
            max_tokens: 5,
            stream: true,
        };
        assert_eq!(parse(Endpoint::Chat, body), Ok(expected));
    }

    #[test]
    fn a_completion_request_takes_defaults() {
        let request = parse(
            Endpoint::Completion,
            br#"{"model": "m", "prompt": "a b c"}"#,
        );
        let expected = Generation {
            model: "m".into(),
            prompt_tokens: 3,
            max_tokens: DEFAULT_MAX_TOKENS,
            stream: false,
        };
        assert_eq!(request, Ok(expected));
        let ids = parse(Endpoint::Completion, br#"{"model": "m", "prompt": [1, 2]}"#);
        assert_eq!(ids.unwrap().prompt_tokens, 2);
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let body = br#"{"model": "m", "messages": [{"content": "x"}],
            "max_tokens": 9, "max_completion_tokens": 2}"#;
        assert_eq!(parse(Endpoint::Chat, body).unwrap().max_tokens, 2);
    }

    #[test]
    fn malformed_requests_are_named() {
        let error = |endpoint, body: &str| parse(endpoint, body.as_bytes()).unwrap_err();
        assert!(matches!(
            error(Endpoint::Chat, "{nope"),
            RequestError::NotJson(_)
        ));
        assert!(matches!(
            error(Endpoint::Chat, ""),
            RequestError::NotJson(_)
        ));
        for (endpoint, body, says) in [
            (Endpoint::Chat, r#"{"model": "m"}"#, "messages: required"),
            (
                Endpoint::Chat,
                r#"{"model": "m", "messages": []}"#,
                "must not be empty",
            ),
            (
                Endpoint::Completion,
                r#"{"model": "m"}"#,
                "prompt: required",
            ),
            (
                Endpoint::Completion,
                r#"{"prompt": "x"}"#,
                "missing field `model`",
            ),
            (
                Endpoint::Completion,
                r#"{"model": "m", "prompt": "x", "max_tokens": 0}"#,
                "between 1 and 4096, got 0",
            ),
            (
                Endpoint::Completion,
                r#"{"model": "m", "prompt": "x", "max_tokens": -1}"#,
                "max_tokens: invalid value",
            ),
            (
                Endpoint::Completion,
                r#"{"model": "m", "prompt": "x", "stream": "yes"}"#,
                "stream: invalid type",
            ),
            (Endpoint::Completion, "[1, 2]", "invalid type"),
        ] {
            let message = error(endpoint, body).to_string();
            assert!(message.contains(says), "{body}: {message}");
        }
    }
}
