//! A model server's Prometheus text, read down to the three numbers the
//! balancer wants. Pure: text and names in, [`ServerLoad`] or an error out.

use super::ServerLoad;
use crate::config::MetricNames;
use prom_text_format_parser::{Scrape, Type};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not Prometheus text: {0}")]
    Malformed(String),
    #[error("the metrics parser failed on this text")]
    ParserPanicked,
    #[error("none of the configured metrics ({0}) is in the answer")]
    NoneOfTheNames(String),
}

/// The load `text` reports under `names`, summed over label sets (a server
/// with several models, or several engines, reports one series each). A
/// metric that is absent counts as 0, but an answer with none of them is an
/// error: it is not the server we were told it is.
pub fn parse(text: &str, names: &MetricNames) -> Result<ServerLoad, ParseError> {
    let running = sum_first(text, &names.running)?;
    let waiting = sum_first(text, &names.waiting)?;
    let kv_cache_usage = sum_first(text, &names.kv_cache_usage)?;
    if running.is_none() && waiting.is_none() && kv_cache_usage.is_none() {
        let all: Vec<&str> = [&names.running, &names.waiting, &names.kv_cache_usage]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        return Err(ParseError::NoneOfTheNames(all.join(", ")));
    }
    Ok(ServerLoad {
        running: running.unwrap_or(0.0),
        waiting: waiting.unwrap_or(0.0),
        kv_cache_usage: kv_cache_usage.unwrap_or(0.0),
    })
}

/// The sum of the first of `candidates` that has a usable sample.
fn sum_first(text: &str, candidates: &[String]) -> Result<Option<f64>, ParseError> {
    for name in candidates {
        if let Some(sum) = sum_of(text, name)? {
            return Ok(Some(sum));
        }
    }
    Ok(None)
}

/// The sum of `name`'s samples in `text`, if it has any usable one.
///
/// Each metric's own lines are parsed alone. A vLLM answer is mostly
/// histograms the balancer does not read, and it is read 20 times a second
/// from every pod, so the parser gets a few lines instead; and a line the
/// parser refuses elsewhere in the answer (a server's new metric in a
/// form it does not know) costs nothing.
fn sum_of(text: &str, name: &str) -> Result<Option<f64>, ParseError> {
    let lines = lines_about(text, name);
    if lines.is_empty() {
        return Ok(None);
    }
    // The text is a network peer's: whatever it says, a bad answer is an
    // error for this pod, never a panic of the task that reads every pod.
    let parsed = std::panic::catch_unwind(|| Scrape::parse(&lines))
        .map_err(|_| ParseError::ParserPanicked)?;
    let scrape = parsed.map_err(|e| ParseError::Malformed(format!("{e:?}")))?;
    // A gauge, a counter or an untyped series has one value per sample; a
    // histogram or a summary has none that is the load.
    let values: Vec<f64> = scrape
        .metrics
        .iter()
        .filter(|metric| metric.name == name)
        .filter(|metric| matches!(metric.kind, Type::Gauge | Type::Counter | Type::Untyped))
        .flat_map(|metric| &metric.samples)
        // Parsed here rather than by the crate's `as_f64`, which unwraps.
        .filter_map(|sample| sample.value.value.parse::<f64>().ok())
        // A count or a share is never negative, NaN or infinite: such a
        // sample is a broken series, left out rather than let it win or
        // lose every comparison.
        .filter(|v| v.is_finite() && *v >= 0.0)
        .collect();
    Ok((!values.is_empty()).then(|| values.iter().sum()))
}

/// The lines of `text` about `name`: its samples, HELP and TYPE.
fn lines_about(text: &str, name: &str) -> String {
    let about = |line: &str| {
        let series = (line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE ")))
        .unwrap_or(line);
        series
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with([' ', '\t', '{']))
    };
    let mut kept = String::new();
    for line in text.lines().filter(|line| about(line)) {
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}
