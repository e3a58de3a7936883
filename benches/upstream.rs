//! A tiny, fast stand-in for a model server, used by `benches/load.sh`.
//!
//! HTTP/1.1 with keep-alive on 127.0.0.1. Every request (any method, any
//! path) has its body read and discarded, then — after `--delay-ms` — gets
//! `200 {"predictions":[5.6]}`.
//!
//!     cargo build --release --example bench-upstream
//!     target/release/examples/bench-upstream --port 18081 --delay-ms 50

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"predictions":[5.6]}"#;

const USAGE: &str = "usage: bench-upstream --port N [--delay-ms D]";

struct Args {
    port: u16,
    delay: Duration,
}

/// Hand-rolled parsing of `--port N --delay-ms D` (also `--port=N`).
fn parse_args() -> Result<Args, String> {
    let mut port = None;
    let mut delay_ms = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                port = Some(v.parse().map_err(|_| format!("bad --port {v:?}"))?);
            }
            "--delay-ms" => {
                let v = value()?;
                delay_ms = v.parse().map_err(|_| format!("bad --delay-ms {v:?}"))?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        port: port.ok_or_else(|| format!("--port is required\n{USAGE}"))?,
        delay: Duration::from_millis(delay_ms),
    })
}

/// Drains the request body, waits, answers.
async fn handle(
    req: Request<Incoming>,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read and discard the body; a broken body still gets an answer.
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(BODY)))
        .expect("a static response is valid");
    Ok(response)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = TcpListener::bind(addr).await?;
    let delay = args.delay;
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off rather than spin.
                eprintln!("bench-upstream: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, delay));
            // Keep-alive is hyper's default; said explicitly for the reader.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
