//! The log every role writes to stderr: which events (a filter in
//! `RUST_LOG`'s syntax, from `--log`, `SLUICE_LOG` or `RUST_LOG`), in which
//! format (text for people, JSON for log collectors), and whether the access
//! log (target [`ACCESS_TARGET`]) is on.

use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// The target of the access log's lines (one per request, at INFO).
pub const ACCESS_TARGET: &str = "sluice::access";

/// The filter when none is given.
const DEFAULT_FILTER: &str = "info";

/// How each line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO target: message key=value`, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object a line: timestamp, level, target, message and the fields.
    Json,
}

/// What the command line and the environment ask of the log.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    /// `--log` or `SLUICE_LOG` (clap reads both; the flag wins).
    pub filter: Option<String>,
    /// `RUST_LOG`, read when neither `--log` nor `SLUICE_LOG` is set.
    pub rust_log: Option<String>,
    pub format: LogFormat,
    /// `--access-log`: the access log on, whatever the filter says of it.
    pub access_log: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid log filter {filter:?} (from {source_name}): {error}")]
pub struct LogError {
    filter: String,
    source_name: &'static str,
    error: tracing_subscriber::filter::ParseError,
}

/// The format this process logs in, for the processes it starts (a local
/// replica's sidecar writes to the same stderr, so in the same format).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

// === impl LogFormat ===

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// The format this process was started with (text until then).
    pub fn current() -> LogFormat {
        FORMAT.get().copied().unwrap_or_default()
    }
}

// === impl LogSettings ===

impl LogSettings {
    /// The filter asked for and where it came from: `--log` or `SLUICE_LOG`,
    /// else `RUST_LOG`, else `info`.
    pub fn chosen(&self) -> (&str, &'static str) {
        match (given(&self.filter), given(&self.rust_log)) {
            (Some(filter), _) => (filter, "--log or SLUICE_LOG"),
            (None, Some(rust_log)) => (rust_log, "RUST_LOG"),
            (None, None) => (DEFAULT_FILTER, "the default"),
        }
    }

    /// The filter's directives: the chosen ones, with the access log added
    /// (`--access-log`) or, unless they name its target themselves, taken
    /// out: a blanket `debug` must not write a line per request.
    pub fn directives(&self) -> String {
        let mut directives = self.chosen().0.to_string();
        if self.access_log {
            directives.push_str(",sluice::access=info");
        } else if !names_access_target(&directives) {
            directives.push_str(",sluice::access=off");
        }
        directives
    }

    /// The filter, or why it is not one.
    pub fn filter(&self) -> Result<EnvFilter, LogError> {
        let (chosen, source_name) = self.chosen();
        EnvFilter::builder()
            .parse(self.directives())
            .map_err(|error| LogError {
                filter: chosen.to_string(),
                source_name,
                error,
            })
    }

    /// Installs the log for this process: to stderr, filtered, in the format
    /// asked for. Called once, first thing in `main`.
    pub fn init(&self) -> Result<(), LogError> {
        let filter = self.filter()?;
        let _ = FORMAT.set(self.format);
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        // Installing twice (a test that calls this again) keeps the first.
        let _ = match self.format {
            LogFormat::Text => builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .try_init(),
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .try_init(),
        };
        Ok(())
    }
}

/// A value that says something: set and not blank.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

/// Whether a directive of `directives` is for the access log's target.
fn names_access_target(directives: &str) -> bool {
    directives
        .split(',')
        .any(|directive| directive.trim().starts_with(ACCESS_TARGET))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(filter: Option<&str>, rust_log: Option<&str>, access_log: bool) -> LogSettings {
        LogSettings {
            filter: filter.map(String::from),
            rust_log: rust_log.map(String::from),
            format: LogFormat::Text,
            access_log,
        }
    }

    #[test]
    fn the_flag_wins_then_rust_log_then_the_default() {
        let cases = [
            (Some("warn"), Some("debug"), "warn", "--log or SLUICE_LOG"),
            (None, Some("kube=debug"), "kube=debug", "RUST_LOG"),
            (Some(" "), Some("debug"), "debug", "RUST_LOG"),
            (None, Some(""), "info", "the default"),
            (None, None, "info", "the default"),
        ];
        for (filter, rust_log, chosen, source) in cases {
            let settings = settings(filter, rust_log, false);
            assert_eq!(
                settings.chosen(),
                (chosen, source),
                "{filter:?} {rust_log:?}"
            );
            assert_eq!(
                settings.directives(),
                format!("{chosen},sluice::access=off")
            );
        }
    }

    #[test]
    fn the_access_log_is_on_when_asked_for_by_flag_or_by_its_target() {
        let on = settings(Some("warn"), None, true).directives();
        assert_eq!(on, "warn,sluice::access=info");
        let named = settings(None, Some("warn,sluice::access=info"), false).directives();
        assert_eq!(named, "warn,sluice::access=info");
        let blanket = settings(Some("sluice=debug"), None, false).directives();
        assert_eq!(blanket, "sluice=debug,sluice::access=off");
    }

    #[test]
    fn a_bad_filter_is_an_error_naming_it_and_its_source() {
        let error = settings(None, Some("sluice=loud"), false)
            .filter()
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"sluice=loud\""), "{error}");
        assert!(error.contains("from RUST_LOG"), "{error}");
        assert!(settings(Some("info,kube_client=debug"), None, false)
            .filter()
            .is_ok());
    }
}
