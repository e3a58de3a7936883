//! The stand-in model: a fixed linear regression over the 11 wine features of
//! the tutorial's `redwine` model, and the KServe v1/v2 request and response
//! shapes. Pure functions, so malformed input is easy to test.

use serde::Deserialize;
use serde_json::{json, Value};

pub const FEATURES: usize = 11;

/// Weights in the order of the wine-quality columns: fixed acidity, volatile
/// acidity, citric acid, residual sugar, chlorides, free sulfur dioxide, total
/// sulfur dioxide, density, pH, sulphates, alcohol. Close to what a linear
/// regression on the public red-wine data finds; a stand-in, not a trained model.
const WEIGHTS: [f64; FEATURES] = [
    0.025, -1.084, -0.183, 0.016, -1.874, 0.004, -0.003, -17.881, -0.414, 0.916, 0.276,
];
const INTERCEPT: f64 = 21.965;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Shape(String),
}

pub fn predict(features: &[f64]) -> f64 {
    let sum: f64 = features.iter().zip(WEIGHTS).map(|(x, w)| x * w).sum();
    ((sum + INTERCEPT) * 1000.0).round() / 1000.0
}

/// Predictions for rows of `FEATURES` numbers laid end to end.
pub fn predict_rows(data: &[f64]) -> Vec<f64> {
    data.chunks(FEATURES).map(predict).collect()
}

/// KServe v1: `{"instances": [[11 numbers], ...]}` → `{"predictions": [...]}`.
pub fn v1_predict(body: &[u8]) -> Result<Value, InputError> {
    #[derive(Deserialize)]
    struct V1 {
        instances: Vec<Vec<f64>>,
    }
    let request: V1 =
        serde_json::from_slice(body).map_err(|e| InputError::NotJson(e.to_string()))?;
    if request.instances.is_empty() {
        return Err(InputError::Shape("instances: must not be empty".into()));
    }
    let mut predictions = Vec::with_capacity(request.instances.len());
    for (i, row) in request.instances.iter().enumerate() {
        if row.len() != FEATURES {
            return Err(InputError::Shape(format!(
                "instances[{i}]: expected {FEATURES} features, got {}",
                row.len()
            )));
        }
        predictions.push(predict(row));
    }
    Ok(json!({ "predictions": predictions }))
}

/// KServe v2 (Open Inference Protocol): one input tensor of shape `[N, 11]`.
pub fn v2_infer(model: &str, body: &[u8]) -> Result<Value, InputError> {
    #[derive(Deserialize)]
    struct Tensor {
        shape: Vec<usize>,
        data: Vec<f64>,
    }
    #[derive(Deserialize)]
    struct V2 {
        id: Option<String>,
        inputs: Vec<Tensor>,
    }
    let request: V2 =
        serde_json::from_slice(body).map_err(|e| InputError::NotJson(e.to_string()))?;
    let [input] = request.inputs.as_slice() else {
        return Err(InputError::Shape(
            "inputs: expected exactly one tensor".into(),
        ));
    };
    let rows = match input.shape.as_slice() {
        [rows, FEATURES] => *rows,
        other => {
            return Err(InputError::Shape(format!(
                "inputs[0].shape: expected [N, {FEATURES}], got {other:?}"
            )))
        }
    };
    if input.data.len() != rows * FEATURES {
        return Err(InputError::Shape(format!(
            "inputs[0].data: shape {:?} needs {} numbers, got {}",
            input.shape,
            rows * FEATURES,
            input.data.len()
        )));
    }
    let outputs = predict_rows(&input.data);
    let mut response = json!({
        "model_name": model,
        "outputs": [{ "name": "output-0", "shape": [rows], "datatype": "FP64", "data": outputs }],
    });
    if let Some(id) = request.id {
        response["id"] = json!(id);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINE: &str = "[7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4]";

    #[test]
    fn v1_predicts_a_plausible_quality() {
        let out = v1_predict(format!(r#"{{"instances": [{WINE}, {WINE}]}}"#).as_bytes()).unwrap();
        let predictions = out["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), 2);
        let q = predictions[0].as_f64().unwrap();
        assert!((4.0..7.0).contains(&q), "{q}");
    }

    #[test]
    fn v2_infers_a_batch() {
        let body = r#"{"id": "r1", "inputs": [{"name": "input-0", "shape": [1, 11], "datatype": "FP32",
            "data": [7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4]}]}"#;
        let out = v2_infer("redwine", body.as_bytes()).unwrap();
        assert_eq!(out["model_name"], "redwine");
        assert_eq!(out["id"], "r1");
        assert_eq!(out["outputs"][0]["shape"][0], 1);
    }

    #[test]
    fn malformed_input_is_named() {
        assert!(matches!(v1_predict(b"nope"), Err(InputError::NotJson(_))));
        let e = v1_predict(br#"{"instances": [[1, 2]]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("instances[0]: expected 11 features, got 2"),
            "{e}"
        );
        let e = v1_predict(br#"{"instances": []}"#).unwrap_err().to_string();
        assert!(e.contains("must not be empty"));
        let e = v2_infer(
            "m",
            br#"{"inputs": [{"name": "x", "shape": [2, 11], "data": [1]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs 22 numbers, got 1"), "{e}");
    }
}
