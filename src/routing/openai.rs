//! The model an OpenAI-style request names: the top-level `model` field of
//! its JSON body (`POST /v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, and the same under KServe's `/openai` prefix).
//!
//! Only the start of the body is needed: the field can be read as soon as
//! its value has arrived, whatever follows. The start is parsed by
//! serde_json, which skips the fields before `model` (a prompt, say) without
//! keeping them; an input that ends too early is told apart from a malformed
//! one by serde_json's own end-of-input error.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

/// The API paths whose body names the model, after an optional `/openai`.
const BODY_NAMES_MODEL: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

/// Whether a POST to `path` names its model in the body.
pub fn names_model_in_body(path: &str) -> bool {
    BODY_NAMES_MODEL.contains(&without_prefix(path))
}

/// Whether `path` asks for the list of models (`GET /v1/models`).
pub fn is_model_list(path: &str) -> bool {
    without_prefix(path) == "/v1/models"
}

fn without_prefix(path: &str) -> &str {
    path.strip_prefix("/openai")
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(path)
}

/// What the start of a JSON body says about its model.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyModel {
    /// The `model` field's value.
    Named(String),
    /// The body stops before the field's value: read more.
    NeedMore,
    /// A JSON object without a string `model` at its top level.
    Unnamed,
    /// Not a JSON object.
    Malformed(String),
}

/// Reads the `model` field from `prefix`, the first bytes of a body;
/// `ended` says the body has no more.
pub fn body_model(prefix: &[u8], ended: bool) -> BodyModel {
    let found = RefCell::new(None);
    let mut parser = serde_json::Deserializer::from_slice(prefix);
    let result = (&mut parser).deserialize_map(ModelField(&found));
    // The visitor stops at the field, so what follows it is never parsed
    // (and serde_json's complaint about that is not a problem).
    if let Some(name) = found.into_inner() {
        return name;
    }
    match result {
        Ok(()) => BodyModel::Unnamed,
        Err(e) if e.is_eof() && !ended => BodyModel::NeedMore,
        Err(e) if e.is_eof() => BodyModel::Malformed("the body ends before the JSON does".into()),
        Err(e) if e.is_data() => BodyModel::Unnamed,
        Err(e) => BodyModel::Malformed(e.to_string()),
    }
}

/// Visits the top-level object's fields up to `model`, skipping the others.
struct ModelField<'a>(&'a RefCell<Option<BodyModel>>);

impl<'de> Visitor<'de> for ModelField<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key != "model" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            // A value that is not a string names no model; one cut short
            // is an end-of-input error, and more is read.
            let value = map.next_value::<serde_json::Value>()?;
            *self.0.borrow_mut() = Some(match value {
                serde_json::Value::String(name) if !name.is_empty() => BodyModel::Named(name),
                _ => BodyModel::Unnamed,
            });
            return Ok(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> BodyModel {
        BodyModel::Named(name.into())
    }

    #[test]
    fn the_paths_that_name_a_model_in_the_body() {
        for path in [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/openai/v1/chat/completions",
            "/openai/v1/embeddings",
        ] {
            assert!(names_model_in_body(path), "{path}");
        }
        for path in [
            "/v1/models",
            "/v2/models/x/infer",
            "/openaiv1/completions",
            "/",
        ] {
            assert!(!names_model_in_body(path), "{path}");
        }
        assert!(is_model_list("/v1/models"));
        assert!(is_model_list("/openai/v1/models"));
        assert!(!is_model_list("/v1/models/x"));
    }

    #[test]
    fn the_model_is_found_wherever_it_is_among_the_fields() {
        let body = br#"{"messages":[{"role":"user","content":"hi {\"model\":\"no\"}"}],"model":"llama-3","stream":true}"#;
        assert_eq!(body_model(body, true), named("llama-3"));
        let first = br#" { "model" : "m\u00e9" , "prompt": "x"}"#;
        assert_eq!(body_model(first, true), named("m\u{e9}"));
    }

    #[test]
    fn a_prefix_that_stops_before_the_value_asks_for_more() {
        let body = br#"{"prompt":"a long prompt","max_tokens":5,"model":"llama-3","stream":true}"#;
        let through_value = body.iter().position(|&b| b == b'3').unwrap() + 2;
        for cut in 0..through_value {
            assert_eq!(
                body_model(&body[..cut], false),
                BodyModel::NeedMore,
                "{cut}"
            );
        }
        // Once the value is whole, the rest is not needed.
        assert_eq!(body_model(&body[..through_value], false), named("llama-3"));
    }

    #[test]
    fn what_names_no_model_is_said_so() {
        assert_eq!(body_model(br#"{"prompt":"x"}"#, true), BodyModel::Unnamed);
        assert_eq!(body_model(br#"{"model":7}"#, true), BodyModel::Unnamed);
        assert_eq!(body_model(br#"{"model":""}"#, true), BodyModel::Unnamed);
        assert_eq!(
            body_model(br#"{"a":{"model":"inner"}}"#, true),
            BodyModel::Unnamed
        );
        assert_eq!(body_model(br#"["model","x"]"#, true), BodyModel::Unnamed);
        for bad in [
            &b"not json"[..],
            b"{\"model\" 1}",
            b"{\"prompt\":\"x\"",
            b"",
            b"\xff",
        ] {
            assert!(
                matches!(body_model(bad, true), BodyModel::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
