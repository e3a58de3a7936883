//! The model named in a KServe v1 or v2 inference path.

/// `/v1/models/<name>`, `/v1/models/<name>:<verb>`, `/v2/models/<name>[/...]`.
pub fn model_name(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/v1/models/")
        .or_else(|| path.strip_prefix("/v2/models/"))?;
    let end = rest.find(['/', ':', '?']).unwrap_or(rest.len());
    let name = &rest[..end];
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::model_name;

    #[test]
    fn finds_the_model() {
        assert_eq!(
            model_name("/v1/models/redwine-week4"),
            Some("redwine-week4")
        );
        assert_eq!(
            model_name("/v1/models/redwine-week4:predict"),
            Some("redwine-week4")
        );
        assert_eq!(model_name("/v1/models/m:explain"), Some("m"));
        assert_eq!(model_name("/v2/models/m/infer"), Some("m"));
        assert_eq!(model_name("/v2/models/m/versions/2/infer"), Some("m"));
        assert_eq!(model_name("/v2/models/m"), Some("m"));
        assert_eq!(model_name("/v1/models/"), None);
        assert_eq!(model_name("/v3/models/m"), None);
        assert_eq!(model_name("/"), None);
    }
}
