//! The configuration file: typed, validated, with the tutorial's own field names.
//!
//! Parsing rejects unknown fields; [`validate`] then checks what types cannot say
//! (ranges, uniqueness, addresses) and names the field of every problem.

mod kubernetes;
mod pod_metrics;
pub mod ranges;
mod size;
mod tracing;
mod types;
mod validate;

pub use self::kubernetes::*;
pub use self::pod_metrics::{MetricNameOverrides, MetricNames, PodMetrics, PodMetricsFormat};
pub use self::size::ByteSize;
pub use self::tracing::{OtlpProtocol, OtlpSettings, TracingSettings};
pub use self::types::*;
pub use self::validate::{validate, validate_service_config};

use std::path::{Path, PathBuf};

#[derive(Clone, Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("{}{message}", origin(.path))]
    Parse { path: PathBuf, message: String },
    #[error("{}invalid configuration:\n  {}", origin(.path), .problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// `"path: "` before a message about a file; nothing for text that came
/// from no file.
fn origin(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", path.display())
    }
}

/// The largest configuration file read: a Kubernetes ConfigMap holds at most
/// 1 MiB, and no real sluice configuration comes near it.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// The deepest nesting the YAML may have. sluice's own schema is about six
/// levels deep; the bound stops the parser early on a hostile file (each
/// flow level makes a YAML scanner's work per token grow).
pub const MAX_NESTING: usize = 32;

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_bounded(path)?;
        Config::parse(&text).map_err(|e| e.at(path))
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config = parse_yaml(text).map_err(|message| ConfigError::Parse {
            path: PathBuf::new(),
            message,
        })?;
        config.validated()
    }

    /// The configuration, if it passes every check a file's would.
    pub fn validated(self) -> Result<Config, ConfigError> {
        let problems = validate(&self);
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ConfigError::Invalid {
                path: PathBuf::new(),
                problems,
            })
        }
    }
}

/// Reads the file if it is no larger than [`MAX_FILE_SIZE`], without ever
/// holding more than that in memory.
pub fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    text_of(path, read_bytes_bounded(path)?)
}

/// The file's bytes, at most one more than [`MAX_FILE_SIZE`] (so that a
/// larger file is refused without being read whole).
pub fn read_bytes_bounded(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source: std::sync::Arc::new(source),
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Ok(bytes)
}

/// The file's bytes as text; refused past [`MAX_FILE_SIZE`] or if not UTF-8.
pub fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, ConfigError> {
    let parse_error = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(parse_error(format!(
            "the file is larger than {MAX_FILE_SIZE} bytes (1 MiB, a ConfigMap's limit)"
        )));
    }
    String::from_utf8(bytes).map_err(|e| parse_error(format!("the file is not UTF-8: {e}")))
}

/// YAML to the typed [`Config`], streaming, with bounded nesting. The
/// message names the field (`gateway.queueTimeout: ...`) and the line.
fn parse_yaml(text: &str) -> Result<Config, String> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_NESTING;
    budget.flow_nesting_limit = MAX_NESTING;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    // serde_path_to_error names the exact field; the YAML error alone
    // names only the line.
    let mut path = None;
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    });
    parsed.map_err(|error| {
        let error = error.without_snippet();
        // A key written twice is named as a field, as every other error is.
        let message = error
            .to_string()
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        let path = path
            .as_deref()
            .map(|p| p.trim_end_matches(".?").trim_end_matches('?'));
        // An alias to no anchor is found while the reader looks ahead, before
        // its key reaches serde: the path ends at the map holding it.
        let key = match error {
            serde_saphyr::Error::UnknownAnchor { location } => {
                key_before(text, location.line(), location.column())
            }
            _ => None,
        };
        match (path, key) {
            (None | Some(".") | Some("?") | Some(""), None) => message,
            (None | Some(".") | Some("?") | Some(""), Some(key)) => format!("{key}: {message}"),
            (Some(path), None) => format!("{path}: {message}"),
            (Some(path), Some(key)) => format!("{path}.{key}: {message}"),
        }
    })
}

/// The key written just before a value on its line: `name` for the alias
/// in `  - name: *a` (line and column count from 1, in characters).
fn key_before(text: &str, line: u64, column: u64) -> Option<&str> {
    let line = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let value_at = line
        .char_indices()
        .nth(usize::try_from(column).ok()?.checked_sub(1)?)?
        .0;
    let before = line[..value_at].trim_end().strip_suffix(':')?.trim_end();
    let key_at = before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    Some(&before[key_at..]).filter(|key| !key.is_empty())
}

impl ConfigError {
    pub(crate) fn at(self, file: &Path) -> Self {
        match self {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: file.to_path_buf(),
                message,
            },
            ConfigError::Invalid { problems, .. } => ConfigError::Invalid {
                path: file.to_path_buf(),
                problems,
            },
            other => other,
        }
    }
}
