//! Talking to pods: connections kept per pod and reused, and the request
//! body as sent to a pod.
//!
//! Each pod keeps its own idle HTTP/1.1 connections. A connection goes back
//! to its pod when the response body has been read to the end, and is taken
//! again (most recently used first) by the next request to that pod; one
//! idle longer than the idle timeout is closed instead. Because the pool
//! lives in the pod, a pod that stays across a reload keeps its connections,
//! and a removed pod's connections close with it.

mod body;
mod pool;

pub use self::body::{BodyLimitExceeded, ClientBodyError, RequestBody};
pub use self::pool::{connect, ConnectError, Connection, Connections};
