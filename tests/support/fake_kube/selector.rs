//! `labelSelector` and `fieldSelector`, parsed and matched as the API
//! server does for the fields every resource supports.

use super::resources::ApiError;
use serde_json::Value;

/// Both selectors of one list or watch; empty ones match everything.
#[derive(Debug, Default, Clone)]
pub(super) struct Selectors {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

#[derive(Debug, Clone)]
struct Requirement {
    key: String,
    operator: Operator,
}

#[derive(Debug, Clone)]
enum Operator {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// The fields every resource can be selected by.
const SELECTABLE_FIELDS: [&str; 2] = ["metadata.name", "metadata.namespace"];

// === impl Selectors ===

impl Selectors {
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selectors, ApiError> {
        let labels = split_terms(labels.unwrap_or(""))
            .into_iter()
            .map(|term| parse_label_term(&term))
            .collect::<Result<_, _>>()?;
        let fields = split_terms(fields.unwrap_or(""))
            .into_iter()
            .map(|term| parse_field_term(&term))
            .collect::<Result<_, _>>()?;
        Ok(Selectors { labels, fields })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        let label = |key: &str| metadata["labels"][key].as_str();
        let field = |key: &str| match key {
            "metadata.name" => metadata["name"].as_str(),
            _ => metadata["namespace"].as_str(),
        };
        self.labels.iter().all(|r| r.matches(label(&r.key)))
            && self.fields.iter().all(|r| r.matches(field(&r.key)))
    }
}

// === impl Requirement ===

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.operator, value) {
            (Operator::Equals(wanted), Some(value)) => value == wanted,
            (Operator::NotEquals(unwanted), value) => value != Some(unwanted.as_str()),
            (Operator::In(set), Some(value)) => set.iter().any(|v| v == value),
            (Operator::NotIn(set), value) => value.is_none_or(|v| !set.iter().any(|s| s == v)),
            (Operator::Exists, value) => value.is_some(),
            (Operator::DoesNotExist, value) => value.is_none(),
            (Operator::Equals(_) | Operator::In(_), None) => false,
        }
    }
}

/// Splits on the commas between terms, not those inside `in (a,b)`.
fn split_terms(selector: &str) -> Vec<String> {
    let mut terms = vec![String::new()];
    let mut depth = 0usize;
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(String::new());
                continue;
            }
            _ => {}
        }
        terms.last_mut().unwrap().push(c);
    }
    terms
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_label_term(term: &str) -> Result<Requirement, ApiError> {
    let requirement = |key: &str, operator| Requirement {
        key: key.trim().to_string(),
        operator,
    };
    if let Some(key) = term.strip_prefix('!') {
        return Ok(requirement(key, Operator::DoesNotExist));
    }
    if let Some((key, set)) = term.split_once(" notin ") {
        return Ok(requirement(key, Operator::NotIn(parse_set(term, set)?)));
    }
    if let Some((key, set)) = term.split_once(" in ") {
        return Ok(requirement(key, Operator::In(parse_set(term, set)?)));
    }
    Ok(match parse_equality(term) {
        Some((key, operator)) => requirement(key, operator),
        None => requirement(term, Operator::Exists),
    })
}

fn parse_field_term(term: &str) -> Result<Requirement, ApiError> {
    let Some((key, operator)) = parse_equality(term) else {
        return Err(ApiError::bad_request(format!(
            "invalid field selector: '{term}': does not contain an operator"
        )));
    };
    if !SELECTABLE_FIELDS.contains(&key) {
        return Err(ApiError::bad_request(format!(
            "field label not supported: {key}"
        )));
    }
    Ok(Requirement {
        key: key.to_string(),
        operator,
    })
}

/// `a!=b`, `a==b` or `a=b`, in that order so `!=` is not read as `=`.
fn parse_equality(term: &str) -> Option<(&str, Operator)> {
    if let Some((key, value)) = term.split_once("!=") {
        return Some((key.trim(), Operator::NotEquals(value.trim().to_string())));
    }
    let (key, value) = term.split_once("==").or_else(|| term.split_once('='))?;
    Some((key.trim(), Operator::Equals(value.trim().to_string())))
}

fn parse_set(term: &str, set: &str) -> Result<Vec<String>, ApiError> {
    let inner = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: {term}")))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}
