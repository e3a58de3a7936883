//! The configuration file: typed, validated, with the tutorial's own field names.
//!
//! Parsing rejects unknown fields; [`validate`] then checks what types cannot say
//! (ranges, uniqueness, addresses) and names the field of every problem.

mod kubernetes;
mod size;
mod types;
mod validate;

pub use self::kubernetes::*;
pub use self::size::ByteSize;
pub use self::types::*;
pub use self::validate::{validate, validate_service_config};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: invalid configuration:\n  {}", .problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| e.at(path))
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        // serde_path_to_error names the exact field (`gateway.queueTimeout`),
        // where the YAML error alone names only its parent.
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config =
            serde_path_to_error::deserialize(deserializer).map_err(|e| ConfigError::Parse {
                path: PathBuf::new(),
                message: parse_message(&e),
            })?;
        let problems = validate(&config);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: PathBuf::new(),
                problems,
            })
        }
    }
}

fn parse_message(e: &serde_path_to_error::Error<serde_yaml_ng::Error>) -> String {
    let path = e.path().to_string();
    if path == "." || path.is_empty() {
        e.inner().to_string()
    } else {
        format!("{path}: {}", e.inner())
    }
}

impl ConfigError {
    fn at(self, file: &Path) -> Self {
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
