//! Raw HTTP/2 frames, for tests that must send what a well-behaved client
//! (the h2 crate) never would.

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 1;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;

/// An HTTP/2 frame: its type, flags and stream, and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// HPACK literal (without indexing) of a static table name, e.g. :path.
pub fn literal(name_index: u8, value: &str) -> Vec<u8> {
    let mut field = vec![name_index, value.len() as u8];
    field.extend_from_slice(value.as_bytes());
    field
}
