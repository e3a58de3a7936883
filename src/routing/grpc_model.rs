//! The model a KServe v2 gRPC call names (`inference.GRPCInferenceService`),
//! read from the start of its first message: `ModelInferRequest`,
//! `ModelReadyRequest` and `ModelMetadataRequest` all carry the model's name
//! as field 1, which protobuf encoders write first. Only that prefix is
//! needed, never the whole message (tensors can be large).

use bytes::Buf;
use prost::encoding::{decode_key, decode_varint, WireType};

/// The service every KServe v2 gRPC method is under.
pub const GRPC_INFERENCE_SERVICE: &str = "/inference.GRPCInferenceService/";

/// Longest model name read (a Kubernetes name is at most 253 bytes).
pub const MAX_MODEL_NAME: usize = 253;

/// The most of a call's body ever needed to find its model name: the
/// 5-byte gRPC frame header, a key, a length and the name.
pub const MAX_PREFIX: usize = 5 + 1 + 2 + MAX_MODEL_NAME;

/// What the start of a gRPC call's body says about its model.
#[derive(Debug, PartialEq, Eq)]
pub enum GrpcModel<'a> {
    /// The model's name.
    Named(&'a str),
    /// Not enough of the body yet.
    NeedMore,
    /// The call names no model this way (another method, a compressed
    /// message, a name that is not first or not UTF-8).
    Unnamed,
}

/// Whether a gRPC method names its model in field 1 of its request.
pub fn names_a_model(path: &str) -> bool {
    matches!(
        path.strip_prefix(GRPC_INFERENCE_SERVICE),
        Some("ModelInfer" | "ModelStreamInfer" | "ModelReady" | "ModelMetadata")
    )
}

/// Reads the model name from `prefix`, the first bytes of the call's body;
/// `ended` says the body has no more.
pub fn grpc_model(prefix: &[u8], ended: bool) -> GrpcModel<'_> {
    let need_more = if ended {
        GrpcModel::Unnamed
    } else {
        GrpcModel::NeedMore
    };
    if prefix.len() < 5 {
        return need_more;
    }
    if prefix[0] != 0 {
        return GrpcModel::Unnamed; // compressed: not read
    }
    let message_len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    let available = &prefix[5..prefix.len().min(5 + message_len)];
    // Whether more bytes of this message may still come.
    let whole = available.len() == message_len;
    let mut buf = available;
    let key = match decode_key(&mut buf) {
        Ok(key) => key,
        Err(_) if !whole && available.len() < 2 => return need_more,
        Err(_) => return GrpcModel::Unnamed,
    };
    if key != (1, WireType::LengthDelimited) {
        return GrpcModel::Unnamed;
    }
    let name_len = match decode_varint(&mut buf) {
        Ok(len) => len as usize,
        Err(_) if !whole && available.len() < 1 + 10 => return need_more,
        Err(_) => return GrpcModel::Unnamed,
    };
    if name_len == 0 || name_len > MAX_MODEL_NAME {
        return GrpcModel::Unnamed;
    }
    if buf.remaining() < name_len {
        return if whole { GrpcModel::Unnamed } else { need_more };
    }
    match std::str::from_utf8(&buf[..name_len]) {
        Ok(name) => GrpcModel::Named(name),
        Err(_) => GrpcModel::Unnamed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gRPC frame holding a message with `name` as field 1 and a tensor-ish
    /// field 5 after it.
    fn frame(name: &str) -> Vec<u8> {
        let mut message = vec![0x0a, name.len() as u8];
        message.extend_from_slice(name.as_bytes());
        message.extend_from_slice(&[0x2a, 3, 1, 2, 3]);
        let mut frame = vec![0];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        frame
    }

    #[test]
    fn the_name_is_read_from_the_first_bytes_whatever_follows() {
        let whole = frame("redwine-week4");
        assert_eq!(grpc_model(&whole, true), GrpcModel::Named("redwine-week4"));
        // Enough of a prefix: the rest of the message is not needed.
        assert_eq!(
            grpc_model(&whole[..20], false),
            GrpcModel::Named("redwine-week4")
        );
        // Every shorter prefix asks for more, and is no name once the body ended.
        for cut in 0..20 {
            assert_eq!(
                grpc_model(&whole[..cut], false),
                GrpcModel::NeedMore,
                "{cut}"
            );
            assert_eq!(grpc_model(&whole[..cut], true), GrpcModel::Unnamed, "{cut}");
        }
    }

    #[test]
    fn what_names_no_model_is_said_so() {
        let mut compressed = frame("m");
        compressed[0] = 1;
        assert_eq!(grpc_model(&compressed, false), GrpcModel::Unnamed);
        // Field 2 first.
        let other_field = [0, 0, 0, 0, 3, 0x12, 1, b'm'];
        assert_eq!(grpc_model(&other_field, false), GrpcModel::Unnamed);
        // An empty message (ServerReady's), not UTF-8, too long.
        assert_eq!(grpc_model(&[0, 0, 0, 0, 0], false), GrpcModel::Unnamed);
        let not_utf8 = [0, 0, 0, 0, 3, 0x0a, 1, 0xff];
        assert_eq!(grpc_model(&not_utf8, false), GrpcModel::Unnamed);
        let mut too_long = vec![0, 0, 0, 1, 4, 0x0a, 0xfe, 0x01];
        too_long.extend(std::iter::repeat_n(b'a', 254));
        assert_eq!(grpc_model(&too_long, false), GrpcModel::Unnamed);
        // A length that says more than the message holds.
        let short = [0, 0, 0, 0, 3, 0x0a, 5, b'm'];
        assert_eq!(grpc_model(&short, false), GrpcModel::Unnamed);
    }

    #[test]
    fn only_the_methods_that_name_a_model() {
        assert!(names_a_model("/inference.GRPCInferenceService/ModelInfer"));
        assert!(names_a_model("/inference.GRPCInferenceService/ModelReady"));
        assert!(!names_a_model(
            "/inference.GRPCInferenceService/ServerReady"
        ));
        assert!(!names_a_model("/other.Service/ModelInfer"));
    }
}
