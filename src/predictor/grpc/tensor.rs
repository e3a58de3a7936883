//! KServe v2 gRPC tensors and the model's rows: reads the one `[N, 11]` FP32
//! or FP64 input, from `contents` or from `raw_input_contents`, and writes the
//! predictions back the way the request sent its input. Pure functions, so
//! malformed input is easy to test.

use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::predictor::model::{InputError, FEATURES};

/// The name of the model's one output tensor (as in the HTTP v2 answer).
pub const OUTPUT_NAME: &str = "output-0";

/// An input read from a request: `rows` rows of `FEATURES` numbers laid end
/// to end, and whether they came as raw bytes.
#[derive(Debug, PartialEq)]
pub struct Rows {
    pub data: Vec<f64>,
    pub rows: usize,
    pub raw: bool,
}

#[derive(Clone, Copy)]
enum Datatype {
    Fp32,
    Fp64,
}

/// The request's input as rows of features, or what is wrong with it.
pub fn read_input(request: &ModelInferRequest) -> Result<Rows, InputError> {
    let [input] = request.inputs.as_slice() else {
        return Err(shape(format!(
            "inputs: expected exactly one tensor, got {}",
            request.inputs.len()
        )));
    };
    let datatype = match input.datatype.as_str() {
        "FP32" => Datatype::Fp32,
        "FP64" => Datatype::Fp64,
        other => {
            return Err(shape(format!(
                "inputs[0].datatype: expected FP32 or FP64, got {other:?}"
            )))
        }
    };
    let rows = rows(&input.shape)?;
    let (data, raw) = match (request.raw_input_contents.as_slice(), &input.contents) {
        ([], Some(contents)) => (from_contents(datatype, contents), false),
        ([], None) => {
            return Err(shape(
                "inputs[0]: no contents, and no raw_input_contents".into(),
            ))
        }
        ([bytes], None) => (from_raw(datatype, bytes)?, true),
        ([_], Some(_)) => {
            return Err(shape(
                "inputs[0]: contents and raw_input_contents are both set; send one".into(),
            ))
        }
        (many, _) => {
            return Err(shape(format!(
                "raw_input_contents: expected one entry per input (1), got {}",
                many.len()
            )))
        }
    };
    let needed = rows * FEATURES;
    if data.len() != needed {
        return Err(shape(format!(
            "inputs[0]: shape {:?} needs {needed} numbers, got {}",
            input.shape,
            data.len()
        )));
    }
    Ok(Rows { data, rows, raw })
}

/// The response carrying `predictions` (one per row) as the FP64 output
/// tensor, in `raw_output_contents` when the input came raw.
pub fn write_output(model: &str, id: String, predictions: &[f64], raw: bool) -> ModelInferResponse {
    let mut output = InferOutputTensor {
        name: OUTPUT_NAME.into(),
        datatype: "FP64".into(),
        shape: vec![predictions.len() as i64],
        ..Default::default()
    };
    let mut raw_output_contents = Vec::new();
    if raw {
        raw_output_contents.push(predictions.iter().flat_map(|p| p.to_le_bytes()).collect());
    } else {
        output.contents = Some(InferTensorContents {
            fp64_contents: predictions.to_vec(),
            ..Default::default()
        });
    }
    ModelInferResponse {
        model_name: model.into(),
        id,
        outputs: vec![output],
        raw_output_contents,
        ..Default::default()
    }
}

fn shape(message: String) -> InputError {
    InputError::Shape(message)
}

/// The row count of a `[N, FEATURES]` shape, bounded so that `N * FEATURES`
/// cannot overflow.
fn rows(dims: &[i64]) -> Result<usize, InputError> {
    let wrong = || {
        shape(format!(
            "inputs[0].shape: expected [N, {FEATURES}], got {dims:?}"
        ))
    };
    match dims {
        [rows, features] if *features == FEATURES as i64 => usize::try_from(*rows)
            .ok()
            .filter(|rows| rows.checked_mul(FEATURES).is_some())
            .ok_or_else(wrong),
        _ => Err(wrong()),
    }
}

fn from_contents(datatype: Datatype, contents: &InferTensorContents) -> Vec<f64> {
    match datatype {
        Datatype::Fp32 => contents
            .fp32_contents
            .iter()
            .map(|&x| f64::from(x))
            .collect(),
        Datatype::Fp64 => contents.fp64_contents.clone(),
    }
}

/// Little-endian values, as the v2 protocol lays out raw tensor contents.
fn from_raw(datatype: Datatype, bytes: &[u8]) -> Result<Vec<f64>, InputError> {
    let (size, name) = match datatype {
        Datatype::Fp32 => (4, "FP32"),
        Datatype::Fp64 => (8, "FP64"),
    };
    if !bytes.len().is_multiple_of(size) {
        return Err(shape(format!(
            "raw_input_contents[0]: {} bytes is not a whole number of {name} values",
            bytes.len()
        )));
    }
    let values = bytes.chunks_exact(size);
    Ok(match datatype {
        Datatype::Fp32 => values
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().expect("4 bytes"))))
            .collect(),
        Datatype::Fp64 => values
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::grpc::proto::model_infer_request::InferInputTensor;

    const WINE: [f64; FEATURES] = [
        7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
    ];

    fn tensor(
        datatype: &str,
        shape: Vec<i64>,
        contents: Option<InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: "input-0".into(),
            datatype: datatype.into(),
            shape,
            contents,
            ..Default::default()
        }
    }

    /// A request with one input tensor.
    fn request(input: InferInputTensor, raw: Vec<Vec<u8>>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![input],
            raw_input_contents: raw,
            ..Default::default()
        }
    }

    fn fp64(values: &[f64]) -> Option<InferTensorContents> {
        Some(InferTensorContents {
            fp64_contents: values.to_vec(),
            ..Default::default()
        })
    }

    fn error(request: &ModelInferRequest) -> String {
        read_input(request).unwrap_err().to_string()
    }

    #[test]
    fn reads_contents_and_raw_alike() {
        let rows = [WINE, WINE].concat();
        let from_contents =
            read_input(&request(tensor("FP64", vec![2, 11], fp64(&rows)), vec![])).unwrap();
        assert_eq!((from_contents.rows, from_contents.raw), (2, false));
        assert_eq!(from_contents.data, rows);
        let bytes = rows.iter().flat_map(|x| x.to_le_bytes()).collect();
        let from_raw =
            read_input(&request(tensor("FP64", vec![2, 11], None), vec![bytes])).unwrap();
        assert_eq!((from_raw.rows, from_raw.raw), (2, true));
        assert_eq!(from_raw.data, rows);
        let bytes = WINE
            .iter()
            .flat_map(|&x| (x as f32).to_le_bytes())
            .collect();
        let fp32 = read_input(&request(tensor("FP32", vec![1, 11], None), vec![bytes])).unwrap();
        assert!(
            fp32.data
                .iter()
                .zip(WINE)
                .all(|(a, b)| (a - b).abs() < 1e-5),
            "{:?}",
            fp32.data
        );
    }

    #[test]
    fn malformed_input_is_named() {
        let wine = fp64(&WINE);
        let e = error(&request(tensor("INT32", vec![1, 11], wine.clone()), vec![]));
        assert!(e.contains("expected FP32 or FP64, got \"INT32\""), "{e}");
        let e = error(&request(tensor("FP64", vec![11], wine.clone()), vec![]));
        assert!(e.contains("expected [N, 11], got [11]"), "{e}");
        let e = error(&request(tensor("FP64", vec![-1, 11], wine.clone()), vec![]));
        assert!(e.contains("got [-1, 11]"), "{e}");
        let e = error(&request(
            tensor("FP64", vec![i64::MAX, 11], wine.clone()),
            vec![],
        ));
        assert!(e.contains("shape"), "{e}");
        let e = error(&request(tensor("FP64", vec![2, 11], wine.clone()), vec![]));
        assert!(e.contains("needs 22 numbers, got 11"), "{e}");
        let e = error(&request(tensor("FP64", vec![1, 11], None), vec![]));
        assert!(e.contains("no contents"), "{e}");
        let e = error(&request(
            tensor("FP64", vec![1, 11], wine),
            vec![vec![0; 88]],
        ));
        assert!(e.contains("both set"), "{e}");
        let e = error(&request(
            tensor("FP64", vec![1, 11], None),
            vec![vec![0; 87]],
        ));
        assert!(e.contains("87 bytes is not a whole number of FP64"), "{e}");
        let e = error(&request(
            tensor("FP64", vec![1, 11], None),
            vec![vec![0; 88]; 2],
        ));
        assert!(e.contains("got 2"), "{e}");
        let e = error(&ModelInferRequest::default());
        assert!(e.contains("exactly one tensor, got 0"), "{e}");
    }

    #[test]
    fn answers_in_the_form_it_was_asked() {
        let out = write_output("m", "r1".into(), &[5.0, 6.0], false);
        assert_eq!((out.model_name.as_str(), out.id.as_str()), ("m", "r1"));
        assert_eq!(out.outputs[0].shape, vec![2]);
        assert_eq!(
            out.outputs[0].contents.as_ref().unwrap().fp64_contents,
            vec![5.0, 6.0]
        );
        assert!(out.raw_output_contents.is_empty());
        let out = write_output("m", String::new(), &[5.0], true);
        assert!(out.outputs[0].contents.is_none());
        assert_eq!(out.raw_output_contents, vec![5.0f64.to_le_bytes().to_vec()]);
    }
}
