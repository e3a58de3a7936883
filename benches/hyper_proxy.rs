//! The least reverse proxy hyper makes: what `benches/load.sh` measures as
//! the floor under sluice's data plane ("hyper" target).
//!
//! The same architecture as sluice's gateway, with everything that is
//! sluice's own taken out: one current-thread runtime per worker thread on
//! its own `SO_REUSEPORT` socket, hyper's HTTP/1 server, and per-thread
//! keep-alive connections to the upstream through hyper's HTTP/1 client. No
//! routing table, no admission, no in-flight accounting, no header rewriting,
//! no metrics, no request ids, no timeouts: a request whose Host starts with
//! `slow` goes to `--slow`, every other one to `--fast`, head and body as
//! they came. Whatever this costs per request, sluice cannot cost less while
//! it is built on hyper.
//!
//!     cargo build --release --example bench-hyper-proxy
//!     target/release/examples/bench-hyper-proxy --port 18080 \
//!         --fast 127.0.0.1:18081 --slow 127.0.0.1:18082 [--workers N] [--hold-ms MS]
//!
//! `--hold-ms` makes every request wait that long before it is forwarded,
//! as sluice holds a request while its service is at zero: hyper's own
//! memory per held request (`PARTS=held bash benches/tutorial.sh`).

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::LocalSet;

const USAGE: &str =
    "usage: bench-hyper-proxy --port N --fast HOST:PORT --slow HOST:PORT [--workers N] [--hold-ms MS]";

struct Args {
    port: u16,
    fast: SocketAddr,
    slow: SocketAddr,
    workers: usize,
    hold: Duration,
}

fn parse_args() -> Result<Args, String> {
    let (mut port, mut fast, mut slow, mut workers, mut hold_ms) = (None, None, None, 1, 0);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--port" => port = Some(value.parse().map_err(|e| bad(&e))?),
            "--fast" => fast = Some(value.parse().map_err(|e| bad(&e))?),
            "--slow" => slow = Some(value.parse().map_err(|e| bad(&e))?),
            "--workers" => workers = value.parse().map_err(|e| bad(&e))?,
            "--hold-ms" => hold_ms = value.parse().map_err(|e| bad(&e))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    match (port, fast, slow) {
        (Some(port), Some(fast), Some(slow)) if workers > 0 => Ok(Args {
            port,
            fast,
            slow,
            workers,
            hold: Duration::from_millis(hold_ms),
        }),
        _ => Err("--port, --fast and --slow are required; --workers at least 1".into()),
    }
}

/// One worker's keep-alive connections to one upstream.
#[derive(Default)]
struct Pool {
    idle: RefCell<Vec<SendRequest<Incoming>>>,
}

impl Pool {
    /// A connection ready for a request: an idle one, else a new one.
    async fn take(&self, to: SocketAddr) -> Result<SendRequest<Incoming>, hyper::Error> {
        loop {
            let Some(mut sender) = self.idle.borrow_mut().pop() else {
                break;
            };
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = TcpStream::connect(to).await.expect("upstream connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::task::spawn_local(connection);
        Ok(sender)
    }
}

struct Worker {
    hold: Duration,
    fast: (SocketAddr, Pool),
    slow: (SocketAddr, Pool),
}

impl Worker {
    async fn forward(
        self: Rc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        let slow = req
            .headers()
            .get(hyper::header::HOST)
            .is_some_and(|h| h.as_bytes().starts_with(b"slow"));
        if !self.hold.is_zero() {
            tokio::time::sleep(self.hold).await;
        }
        let (to, pool) = if slow { &self.slow } else { &self.fast };
        let mut sender = pool.take(*to).await?;
        let response = sender.send_request(req).await;
        // Given back at once: `take` waits until it is ready again (its
        // response body read to the end) before it is used.
        pool.idle.borrow_mut().push(sender);
        response
    }
}

fn serve(args: &Args, listener: std::net::TcpListener) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let worker = Rc::new(Worker {
        hold: args.hold,
        fast: (args.fast, Pool::default()),
        slow: (args.slow, Pool::default()),
    });
    LocalSet::new().block_on(&runtime, async move {
        let listener = TcpListener::from_std(listener).expect("listener");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let worker = worker.clone();
            tokio::task::spawn_local(async move {
                let service = service_fn(move |req| {
                    let worker = worker.clone();
                    async move {
                        Ok::<_, hyper::Error>(match worker.forward(req).await {
                            Ok(response) => response.map(http_body_util::Either::Left),
                            Err(_) => {
                                let mut bad = Response::new(http_body_util::Either::Right(
                                    http_body_util::Empty::new(),
                                ));
                                *bad.status_mut() = StatusCode::BAD_GATEWAY;
                                bad
                            }
                        })
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn bind(port: u16) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => Arc::new(args),
        Err(error) => {
            eprintln!("bench-hyper-proxy: {error}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    let mut threads = Vec::new();
    for _ in 0..args.workers {
        let listener = match bind(args.port) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("bench-hyper-proxy: bind 127.0.0.1:{}: {error}", args.port);
                return ExitCode::from(69);
            }
        };
        let args = args.clone();
        threads.push(std::thread::spawn(move || serve(&args, listener)));
    }
    for thread in threads {
        let _ = thread.join();
    }
    ExitCode::SUCCESS
}
