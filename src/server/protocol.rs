//! Which HTTP a plain connection speaks, told from its first bytes without
//! reading them (`peek`): HTTP/2 with prior knowledge starts with the
//! 24-byte preface, anything else is HTTP/1.
//!
//! hyper-util's own detection reads those bytes and hands them back to
//! hyper in front of the stream, which makes hyper's HTTP/1 read buffer
//! grow from 8 to 16 KiB on the first request of every connection, and its
//! connection state holds either protocol's. Told apart here, an HTTP/1
//! connection goes straight to hyper's HTTP/1 server (the smallest state,
//! kept inline in the connection's task); HTTP/2, and connections whose
//! first bytes are too few to tell (a prefix of the preface), go to
//! hyper-util's server (boxed), told to expect HTTP/2 or to detect. Over
//! TLS, ALPN says which (`connection.rs`).

use hyper::server::conn::http1;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    /// Not yet known: nothing arrived, or only the start of the preface.
    Unknown,
}

/// A listener's connection servers: one per protocol, and one that detects.
#[derive(Clone)]
pub struct Servers {
    pub http1: http1::Builder,
    detecting: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

/// The protocol the first `bytes` of a connection say.
pub fn from_first_bytes(bytes: &[u8]) -> Protocol {
    let n = bytes.len().min(PREFACE.len());
    if bytes[..n] != PREFACE[..n] {
        Protocol::Http1
    } else if n == PREFACE.len() {
        Protocol::Http2
    } else {
        Protocol::Unknown
    }
}

/// Waits for the first bytes of `stream` and tells its protocol from them,
/// leaving them to be read.
pub async fn sniff(stream: &TcpStream) -> Protocol {
    let mut first = [0u8; PREFACE.len()];
    match stream.peek(&mut first).await {
        Ok(n) => from_first_bytes(&first[..n]),
        Err(_) => Protocol::Unknown,
    }
}

// === impl Servers ===

impl Servers {
    /// hyper's HTTP/1 server, and hyper-util's for both protocols, set alike.
    pub fn new(http1: http1::Builder, both: auto::Builder<TokioExecutor>) -> Self {
        Servers {
            http1,
            http2: both.clone().http2_only(),
            detecting: both,
        }
    }

    /// hyper-util's server for a connection that speaks HTTP/2 or is yet
    /// to tell (HTTP/1 has its own, `http1`).
    pub fn other(&self, protocol: Protocol) -> &auto::Builder<TokioExecutor> {
        match protocol {
            Protocol::Http2 => &self.http2,
            Protocol::Http1 | Protocol::Unknown => &self.detecting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_says_http2_anything_else_http1_a_prefix_of_it_nothing_yet() {
        assert_eq!(from_first_bytes(PREFACE), Protocol::Http2);
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(b"\0\0\x12\x04");
        assert_eq!(from_first_bytes(&more), Protocol::Http2);
        assert_eq!(from_first_bytes(b"GET / HTTP/1.1\r\n"), Protocol::Http1);
        assert_eq!(
            from_first_bytes(b"POST /v1/models/x:predict"),
            Protocol::Http1
        );
        assert_eq!(from_first_bytes(b"PRI * HTTP/1.1\r\n\r\n"), Protocol::Http1);
        assert_eq!(from_first_bytes(b"PRI * HT"), Protocol::Unknown);
        assert_eq!(from_first_bytes(b"P"), Protocol::Unknown);
        assert_eq!(from_first_bytes(b""), Protocol::Unknown);
    }
}
