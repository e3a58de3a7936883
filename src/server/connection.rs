//! One client connection: its TLS handshake if any, HTTP, and the watch
//! that closes it when a phase runs out of time (`watched.rs`,
//! `lifecycle.rs`).
//!
//! The watch learns of the connection's first bytes from its socket
//! ([`Watched`]) and of its requests from its service ([`Tracked`]): a
//! request counts from its head until its response body is dropped, so a
//! streaming response is never taken for an idle connection.

use super::lifecycle::Expiry;
use super::protocol::{self, Protocol};
use super::watched::{Watch, Watched};
use super::woken::OnlyWhenWoken;
use super::{stopped, BoxError, ConnectionService, Listening, ResponseBody};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

/// The service, telling the watch when requests start and end.
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    watch: Arc<Watch>,
    over_tls: bool,
}

/// A request extension: the request came over TLS (so a proxy tells the
/// pod `X-Forwarded-Proto: https`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverTls;

/// A request in flight: ends when dropped.
#[derive(Debug)]
struct InFlight(Arc<Watch>);

pin_project_lite::pin_project! {
    /// The service's future, holding its request's place until the response.
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

pin_project_lite::pin_project! {
    /// A response body, holding its request's place until it is dropped.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

pin_project_lite::pin_project! {
    /// A connection's HTTP server: hyper's HTTP/1 server inline (the common
    /// case, and the smallest state), hyper-util's for the rest boxed.
    #[project = ServerProjection]
    enum Server<'a, I, S>
    where
        S: hyper::service::HttpService<Incoming>,
    {
        Http1 {
            #[pin]
            connection: http1::UpgradeableConnection<TokioIo<I>, S>,
        },
        Other {
            connection: Pin<Box<auto::UpgradeableConnection<'a, TokioIo<I>, S, TokioExecutor>>>,
        },
    }
}

/// One of a listener's connection slots, and the open connections gauge.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    listening: Arc<Listening>,
}

/// Serves one accepted connection until it ends, times out, or `stop`.
pub async fn run<S, B>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
) where
    S: ConnectionService<B>,
    B: ResponseBody,
{
    let listening = slot.listening.clone();
    let watch = Watch::new(listening.timeouts, listening.tls.is_some());
    match listening.tls.clone() {
        None => serve_plain(stream, peer, service, &listening, watch, &mut stop).await,
        // Boxed: inline, the TLS state would make every plain connection's
        // task larger.
        Some(tls) => {
            Box::pin(serve_tls(
                tls, stream, peer, service, &listening, watch, &mut stop,
            ))
            .await
        }
    }
}

/// A plain connection: its protocol told from its first bytes, left unread
/// for hyper.
async fn serve_plain<S, B>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    listening: &Listening,
    watch: Arc<Watch>,
    stop: &mut watch::Receiver<bool>,
) where
    S: ConnectionService<B>,
    B: ResponseBody,
{
    let protocol = tokio::select! {
        protocol = protocol::sniff(&stream) => protocol,
        expiry = watch.expired() => {
            listening.metrics.timed_out(expiry.phase());
            return debug!(%peer, phase = expiry.phase(), "connection timed out; closed");
        }
        _ = stopped(stop) => return,
    };
    let io = TokioIo::new(Watched {
        io: stream,
        watch: watch.clone(),
    });
    let service = Tracked {
        inner: service,
        watch: watch.clone(),
        over_tls: false,
    };
    let server = match protocol {
        Protocol::Http1 => Server::Http1 {
            // With upgrades: a WebSocket's 101 hands the connection to its tunnel.
            connection: listening
                .servers
                .http1
                .serve_connection(io, service)
                .with_upgrades(),
        },
        other => Server::Other {
            connection: Box::pin(
                (listening.servers.other(other)).serve_connection_with_upgrades(io, service),
            ),
        },
    };
    serve_http(server, peer, listening, watch, stop).await;
}

/// A TLS connection: the handshake, then the HTTP its ALPN chose (HTTP/1.1
/// when the client offered none).
async fn serve_tls<S, B>(
    tls: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    listening: &Listening,
    watch: Arc<Watch>,
    stop: &mut watch::Receiver<bool>,
) where
    S: ConnectionService<B>,
    B: ResponseBody,
{
    let io = Watched {
        io: stream,
        watch: watch.clone(),
    };
    let handshake = tls.accept(io);
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(stream) => stream,
            Err(error) => return debug!(%peer, %error, "TLS handshake failed"),
        },
        expiry = watch.expired() => {
            listening.metrics.timed_out(expiry.phase());
            return debug!(%peer, phase = expiry.phase(), "connection timed out; closed");
        }
        _ = stopped(stop) => return,
    };
    watch.update(|l, now| l.handshake_done(now));
    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let service = Tracked {
        inner: service,
        watch: watch.clone(),
        over_tls: true,
    };
    let io = TokioIo::new(stream);
    let server = if http2 {
        let server = listening.servers.other(Protocol::Http2);
        Server::Other {
            connection: Box::pin(server.serve_connection_with_upgrades(io, service)),
        }
    } else {
        Server::Http1 {
            // With upgrades, as over plain HTTP/1 (a WebSocket over TLS).
            connection: listening
                .servers
                .http1
                .serve_connection(io, service)
                .with_upgrades(),
        }
    };
    serve_http(server, peer, listening, watch, stop).await;
}

/// A connection's HTTP server, under the watch.
async fn serve_http<I, S, B>(
    server: Server<'_, I, Tracked<S>>,
    peer: SocketAddr,
    listening: &Listening,
    watch: Arc<Watch>,
    stop: &mut watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: ConnectionService<B>,
    B: ResponseBody,
{
    let connection = server;
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        // The connection first: it is what wakes this task nearly every time.
        tokio::select! {
            biased;
            ended = std::future::poll_fn(|cx| connection.as_mut().poll_ended(cx)) => {
                if let Err(error) = ended {
                    debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            // These two are polled only when they themselves were woken,
            // not on each of the connection's wake-ups (`woken.rs`).
            expiry = OnlyWhenWoken::new(watch.expired()) => {
                listening.metrics.timed_out(expiry.phase());
                debug!(%peer, phase = expiry.phase(), "connection timed out");
                if expiry != Expiry::Idle {
                    return; // Dropped: closed at once.
                }
                // HTTP/1 closes at once; HTTP/2 sends GOAWAY first.
                connection.as_mut().graceful_shutdown();
                watch.update(|l, now| l.close_begun(now));
            }
            _ = OnlyWhenWoken::new(stopped(stop)), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
                watch.update(|l, now| l.close_begun(now));
            }
        }
    }
}

// === impl Tracked ===

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let http2 = req.version() == Version::HTTP_2;
        if self.over_tls {
            req.extensions_mut().insert(OverTls);
        }
        self.watch.update(|l, _| l.request_started(http2));
        TrackedFuture {
            in_flight: Some(InFlight(self.watch.clone())),
            inner: self.inner.call(req),
        }
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, in_flight })))
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|l, now| l.request_ended(now));
    }
}

// === impl Server ===

impl<I, S, B> Server<'_, I, Tracked<S>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: ResponseBody,
{
    /// Serves until the connection ends.
    fn poll_ended(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.project() {
            ServerProjection::Http1 { connection } => connection.poll(cx).map_err(Into::into),
            ServerProjection::Other { connection } => connection.as_mut().poll(cx),
        }
    }

    /// HTTP/1: closes after the response in flight; HTTP/2: GOAWAY.
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            ServerProjection::Http1 { connection } => connection.graceful_shutdown(),
            ServerProjection::Other { connection } => connection.as_mut().graceful_shutdown(),
        }
    }
}

// === impl Slot ===

impl Slot {
    pub fn new(permit: OwnedSemaphorePermit, listening: Arc<Listening>) -> Self {
        listening.metrics.opened();
        Slot {
            _permit: permit,
            listening,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.listening.metrics.closed();
    }
}
