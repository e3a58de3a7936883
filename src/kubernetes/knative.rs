//! Knative's autoscaling annotations (`autoscaling.knative.dev/*`) on an
//! InferenceService, so that a manifest written for KServe on Knative
//! keeps its meaning when sluice serves it.
//!
//! They are read after KServe's own fields of `spec.predictor`: where
//! KServe writes the same setting from a field (`minReplicas` as
//! `min-scale`, `maxReplicas`, `scaleTarget`, `scaleMetric`), a field that is
//! set wins, as it does in KServe's Knative reconciler, which overwrites the
//! annotation with it. Then in Knative's order: the metric before the target
//! it is counted in, the bounds (`min-scale`, `max-scale`,
//! `activation-scale`) with min before max, then the windows and delays.
//! `initial-scale` cannot be honoured: KServe, not sluice, creates the
//! Deployment and its first replicas.
//!
//! An annotation sluice cannot honour (a bad value, a metric other than
//! `concurrency` or `rps`, a `class` other than the KPA, a key sluice does
//! not know) is not applied and comes back as a warning, which `/status`
//! shows and the log says once: never silently ignored. Knative's older
//! camelCase keys (`minScale`, `scaleDownDelay`, ...) are read as the
//! kebab-case ones, as Knative still does.

use crate::config::ranges;
use serde_json::{json, Value};

pub const PREFIX: &str = "autoscaling.knative.dev/";
/// The one autoscaler class sluice is: Knative's KPA.
const KPA: &str = "kpa.autoscaling.knative.dev";

/// How an annotation's text becomes a sluice key's value.
#[derive(Clone, Copy)]
enum Kind {
    Count,
    /// `max-scale`: `0` means no bound.
    MaxCount,
    Number,
    /// A percentage written as sluice's ratio.
    Percent,
    Duration,
    Metric,
}

/// The annotations sluice honours, in the order it applies them:
/// (key, sluice's key, KServe's field for the same thing, kind).
const HONOURED: [(&str, &str, Option<&str>, Kind); 11] = [
    ("metric", "scaleMetric", Some("scaleMetric"), Kind::Metric),
    ("target", "scaleTarget", Some("scaleTarget"), Kind::Number),
    (
        "target-utilization-percentage",
        "targetUtilization",
        None,
        Kind::Percent,
    ),
    ("min-scale", "minReplicas", Some("minReplicas"), Kind::Count),
    (
        "max-scale",
        "maxReplicas",
        Some("maxReplicas"),
        Kind::MaxCount,
    ),
    ("activation-scale", "activationScale", None, Kind::Count),
    ("window", "stableWindow", None, Kind::Duration),
    (
        "panic-window-percentage",
        "panicWindowPercentage",
        None,
        Kind::Number,
    ),
    (
        "panic-threshold-percentage",
        "panicThresholdPercentage",
        None,
        Kind::Number,
    ),
    ("scale-down-delay", "scaleDownDelay", None, Kind::Duration),
    (
        "scale-to-zero-pod-retention-period",
        "scaleToZeroPodRetentionPeriod",
        None,
        Kind::Duration,
    ),
];

/// Applies the Knative annotations of `annotations` to `service` (a
/// ServiceConfig as JSON, already holding KServe's fields from
/// `predictor`). `check` says why a candidate could not be served, if it
/// could not. Returns the warnings, one per annotation not honoured.
pub fn apply(
    annotations: &Value,
    predictor: &Value,
    service: &mut Value,
    check: impl Fn(&Value) -> Result<(), String>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(annotations) = annotations.as_object() else {
        return warnings;
    };
    let knative: Vec<(String, &str)> = annotations
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(PREFIX)?;
            Some((kebab(name), value.as_str().unwrap_or_default()))
        })
        .collect();
    for (name, text) in &knative {
        if HONOURED.iter().any(|(key, ..)| key == name) {
            continue;
        }
        let why = match name.as_str() {
            "class" if *text == KPA => continue,
            "class" => format!("sluice scales with its own KPA, not {text:?}"),
            "target-burst-capacity" => "no effect: sluice is always in the request path, so \
                 there is no activator to take in or out of it"
                .into(),
            // sluice's initialScale is where replicas it starts itself
            // begin; an InferenceService's are KServe's Deployment's.
            "initial-scale" => "KServe creates the predictor's Deployment and its first \
                 replicas; sluice adopts them as they are"
                .into(),
            _ => "not a setting sluice knows".into(),
        };
        warnings.push(format!("{PREFIX}{name}: {text:?} not applied: {why}"));
    }
    for (name, key, field, kind) in HONOURED {
        let Some((_, text)) = knative.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let warn = |why: String| format!("{PREFIX}{name}: {text:?} not applied: {why}");
        let value = match parse(kind, text) {
            Ok(value) => value,
            Err(why) => {
                warnings.push(warn(why));
                continue;
            }
        };
        let kserve = field.and_then(|f| predictor.get(f).filter(|v| !v.is_null()));
        if let (Some(field), Some(set)) = (field, kserve) {
            if !same(set, &value) {
                warnings.push(warn(format!(
                    "spec.predictor.{field} is set ({set}), and KServe's field wins"
                )));
            }
            continue;
        }
        let mut candidate = service.clone();
        candidate[key] = value;
        match check(&candidate) {
            Ok(()) => *service = candidate,
            Err(why) => warnings.push(warn(why)),
        }
    }
    warnings
}

fn parse(kind: Kind, text: &str) -> Result<Value, String> {
    let text = text.trim();
    let number = || {
        text.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| "not a number".to_string())
    };
    let count = || {
        text.parse::<u32>()
            .map_err(|_| "not a whole number of replicas".to_string())
    };
    Ok(match kind {
        Kind::Count => json!(count()?),
        Kind::MaxCount => match count()? {
            0 => json!(ranges::MAX_REPLICAS.max),
            n => json!(n),
        },
        Kind::Number => json!(number()?),
        Kind::Percent => json!(number()? / 100.0),
        Kind::Duration => {
            humantime::parse_duration(text).map_err(|e| format!("not a duration ({e})"))?;
            json!(text)
        }
        Kind::Metric => match text {
            "concurrency" | "rps" => json!(text),
            _ => return Err("sluice scales on concurrency or rps only".into()),
        },
    })
}

/// Whether KServe's field and the annotation say the same.
fn same(field: &Value, annotation: &Value) -> bool {
    match (field.as_f64(), annotation.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => field == annotation,
    }
}

/// `minScale` as `min-scale`: Knative's older keys.
fn kebab(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(annotations: Value, predictor: Value) -> (Value, Vec<String>) {
        let mut service = json!({});
        let warnings = apply(
            &annotations,
            &predictor,
            &mut service,
            |candidate| match candidate["stableWindow"].as_str() {
                Some("1s") => Err("stableWindow: must be between 2s and 1h, got 1s".into()),
                _ => Ok(()),
            },
        );
        (service, warnings)
    }

    #[test]
    fn each_annotation_becomes_its_sluice_key() {
        let (service, warnings) = run(
            json!({
                "autoscaling.knative.dev/min-scale": "2",
                "autoscaling.knative.dev/maxScale": "0",
                "autoscaling.knative.dev/target": "2.5",
                "autoscaling.knative.dev/metric": "rps",
                "autoscaling.knative.dev/target-utilization-percentage": "70",
                "autoscaling.knative.dev/window": "40s",
                "autoscaling.knative.dev/panic-window-percentage": "20",
                "autoscaling.knative.dev/panic-threshold-percentage": "300",
                "autoscaling.knative.dev/scale-down-delay": "1m30s",
                "autoscaling.knative.dev/activation-scale": "3",
                "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "45s",
                "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
                "sluice.dev/autoscale": "true",
            }),
            json!({}),
        );
        assert_eq!(warnings, Vec::<String>::new());
        assert_eq!(
            service,
            json!({
                "minReplicas": 2, "maxReplicas": 10_000, "scaleTarget": 2.5,
                "scaleMetric": "rps", "targetUtilization": 0.7, "stableWindow": "40s",
                "panicWindowPercentage": 20.0, "panicThresholdPercentage": 300.0,
                "scaleDownDelay": "1m30s", "activationScale": 3,
                "scaleToZeroPodRetentionPeriod": "45s",
            })
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_a_warning_naming_the_annotation() {
        let (service, warnings) = run(
            json!({
                "autoscaling.knative.dev/metric": "cpu",
                "autoscaling.knative.dev/min-scale": "3",
                "autoscaling.knative.dev/max-scale": "two",
                "autoscaling.knative.dev/window": "1s",
                "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev",
                "autoscaling.knative.dev/target-burst-capacity": "200",
                "autoscaling.knative.dev/made-up": "1",
                "autoscaling.knative.dev/initialScale": "2",
            }),
            json!({ "minReplicas": 1 }),
        );
        assert_eq!(service, json!({}), "{warnings:#?}");
        let expected = [
            "class: \"hpa.autoscaling.knative.dev\" not applied: sluice scales with its own KPA",
            "initial-scale: \"2\" not applied: KServe creates",
            "made-up: \"1\" not applied: not a setting sluice knows",
            "target-burst-capacity: \"200\" not applied: no effect",
            "metric: \"cpu\" not applied: sluice scales on concurrency or rps only",
            "min-scale: \"3\" not applied: spec.predictor.minReplicas is set (1)",
            "max-scale: \"two\" not applied: not a whole number",
            "window: \"1s\" not applied: stableWindow: must be between 2s and 1h",
        ];
        assert_eq!(warnings.len(), expected.len(), "{warnings:#?}");
        for (warning, expected) in warnings.iter().zip(expected) {
            assert!(
                warning.starts_with(&format!("{PREFIX}{expected}")),
                "{warning}\nexpected: {expected}"
            );
        }
        // The same value as KServe's field is no conflict.
        let (_, warnings) = run(
            json!({ "autoscaling.knative.dev/target": "1" }),
            json!({ "scaleTarget": 1 }),
        );
        assert_eq!(warnings, Vec::<String>::new());
    }
}
