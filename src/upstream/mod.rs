//! Talking to pods: connections kept per pod and reused, and the request
//! body as sent to a pod.
//!
//! A pod that speaks h2c instead has one HTTP/2 connection per worker
//! thread, shared by that thread's requests as streams (`multiplexed.rs`).
//!
//! Each pod keeps its own idle HTTP/1.1 connections. A connection goes back
//! to its pod when the response body has been read to the end, and is taken
//! again (most recently used first) by the next request to that pod; one
//! idle longer than the idle timeout is closed instead. Because the pool
//! lives in the pod, a pod that stays across a reload keeps its connections,
//! and a removed pod's connections close with it.

mod body;
mod multiplexed;
mod pool;

pub use self::body::{BodyLimitExceeded, ClientBodyError, Peeked, RequestBody};
pub use self::multiplexed::{connect_h2, Multiplexed, SharedConnections};
pub use self::pool::{connect, connect_for_upgrade, ConnectError, Connection, Connections};
