//! Host header normalisation: no port, no trailing dot, lowercase.

use std::borrow::Cow;

/// Normalises a Host header value for lookup. Borrows when it can, so the
/// common case (an already-lowercase host) allocates nothing.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = strip_port(host.trim());
    let name = without_port.strip_suffix('.').unwrap_or(without_port);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: the port, if any, follows the closing bracket.
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_host;

    #[test]
    fn normalizes() {
        assert_eq!(normalize_host("a.b.c"), "a.b.c");
        assert_eq!(normalize_host("A.B.c:8080"), "a.b.c");
        assert_eq!(normalize_host("a.b.c.:80"), "a.b.c");
        assert_eq!(normalize_host("[::1]:30200"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert!(matches!(
            normalize_host("a.b"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
