//! The accept loop shared by every listener (data, admin, predictor): HTTP/1.1 with
//! keep-alive and HTTP/2 with prior knowledge on one port, and a graceful stop.

use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection builder whose header buffers are bounded by `max_header_size`
/// and whose HTTP/1 parser takes up to twice `max_header_count` header lines.
pub fn builder(max_header_size: u64, max_header_count: usize) -> auto::Builder<TokioExecutor> {
    // sluice answers 431 itself below this bound; hyper's own limit, kept
    // above it, only stops a peer from making a connection buffer grow forever.
    let hard_limit = (max_header_size.saturating_mul(2)).clamp(16 << 10, 16 << 20) as usize;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .max_buf_size(hard_limit);
    // Likewise for the count: sluice answers 431 past `max_header_count`.
    // At most 100, hyper keeps the parsed headers on the stack; above, it
    // allocates them per request.
    let parser_limit = max_header_count.saturating_mul(2).clamp(100, 1 << 16);
    if parser_limit > 100 {
        builder.http1().max_headers(parser_limit);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(hard_limit as u32);
    builder
}

/// Serves connections until `stop` turns true, then waits for the open
/// connections to finish their requests (HTTP/1 closes after the current
/// response; HTTP/2 sends GOAWAY).
pub async fn serve<S, B, F>(
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    make_service: F,
    mut stop: watch::Receiver<bool>,
) where
    F: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), make_service(peer))
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors, typically: back off a little
                    // rather than spin.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The `Ref` that wait_for returns is not Send: drop it here, not in a select!.
    let _ = stop.wait_for(|stop| *stop).await;
}
