//! A gRPC load client (`ghz` is not installable here): CONCURRENCY callers
//! each send unary KServe v2 `ModelInfer` calls back to back for DURATION
//! over a few HTTP/2 connections, then it prints one line: calls, calls/s,
//! p50/p99 latency and errors. `--authority` sets the :authority the calls
//! carry, as a gateway routing on the host needs. Loopback addresses only.
//!
//!   cargo run --release --example grpc-load -- --addr 127.0.0.1:8080 \
//!       --model redwine-week4 --concurrency 16 --duration 10s
//!
//! Output (one line, `key=value`, for benches/grpc.sh to read):
//!   calls=51234 errors=0 seconds=10.00 calls_per_s=5123.4 p50_us=2900 p99_us=6100

use clap::Parser;
use sluice::predictor::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use sluice::predictor::grpc::proto::model_infer_request::InferInputTensor;
use sluice::predictor::grpc::proto::{InferTensorContents, ModelInferRequest};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// The longest run it agrees to make: the load stops by itself.
const MAX_DURATION: Duration = Duration::from_secs(600);
const MAX_CONCURRENCY: usize = 4096;

/// One row of the red wine data set: the call's input tensor.
const WINE: [f64; 11] = [
    7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
];

#[derive(Debug, Parser)]
#[command(
    name = "grpc-load",
    about = "Unary KServe v2 ModelInfer load over h2c, loopback only"
)]
struct Args {
    /// The server (a predictor, or a gateway in front of one).
    #[arg(long)]
    addr: SocketAddr,
    /// The :authority of the calls (the gateway routes on it); the address if unset.
    #[arg(long)]
    authority: Option<String>,
    /// The model to call.
    #[arg(long, default_value = "redwine-week4")]
    model: String,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// HTTP/2 connections the callers share, round robin.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// How long to send calls (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

/// What one caller saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    /// Failed calls by their gRPC status code and message.
    errors: BTreeMap<String, u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(problem) = check(&args) {
        eprintln!("grpc-load: {problem}");
        return ExitCode::from(64);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("grpc-load: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &Args) -> Result<(), String> {
    if !args.addr.ip().is_loopback() {
        return Err(format!(
            "--addr {}: only loopback addresses are load-tested",
            args.addr
        ));
    }
    if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
        return Err(format!(
            "--concurrency: 1 to {MAX_CONCURRENCY}, not {}",
            args.concurrency
        ));
    }
    if args.connections == 0 || args.connections > args.concurrency {
        return Err(format!(
            "--connections: 1 to --concurrency ({}), not {}",
            args.concurrency, args.connections
        ));
    }
    if args.duration.is_zero() || args.duration > MAX_DURATION {
        return Err(format!(
            "--duration: more than 0 and at most {MAX_DURATION:?}"
        ));
    }
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(connect(&args).await?);
    }
    let request = infer_request(&args.model);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + args.duration;
    let callers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let client = GrpcInferenceServiceClient::new(channels[i % channels.len()].clone());
            tokio::spawn(caller(client, request.clone(), deadline))
        })
        .collect();
    let mut total = Tally::default();
    for caller in callers {
        let tally = caller.await.map_err(|e| format!("a caller failed: {e}"))?;
        total.latencies.extend(tally.latencies);
        for (error, n) in tally.errors {
            *total.errors.entry(error).or_default() += n;
        }
    }
    report(total, started.elapsed());
    Ok(())
}

async fn connect(args: &Args) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(format!("http://{}", args.addr))
        .map_err(|e| format!("--addr {}: {e}", args.addr))?
        .tcp_nodelay(true);
    if let Some(authority) = &args.authority {
        let origin = format!("http://{authority}")
            .parse()
            .map_err(|e| format!("--authority {authority}: {e}"))?;
        endpoint = endpoint.origin(origin);
    }
    endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {}: {e}", args.addr))
}

fn infer_request(model: &str) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: "input-0".into(),
            datatype: "FP64".into(),
            shape: vec![1, WINE.len() as i64],
            contents: Some(InferTensorContents {
                fp64_contents: WINE.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Calls back to back until the deadline; a call under way then finishes.
async fn caller(
    mut client: GrpcInferenceServiceClient<Channel>,
    request: ModelInferRequest,
    deadline: tokio::time::Instant,
) -> Tally {
    let mut tally = Tally::default();
    while tokio::time::Instant::now() < deadline {
        let sent = Instant::now();
        match client.model_infer(request.clone()).await {
            Ok(_) => tally.latencies.push(sent.elapsed()),
            Err(status) => {
                let key = format!("{:?}: {}", status.code(), status.message());
                *tally.errors.entry(key).or_default() += 1;
            }
        }
    }
    tally
}

fn report(mut tally: Tally, elapsed: Duration) {
    tally.latencies.sort_unstable();
    let percentile = |p: f64| -> u128 {
        if tally.latencies.is_empty() {
            return 0;
        }
        let index = ((tally.latencies.len() - 1) as f64 * p).round() as usize;
        tally.latencies[index].as_micros()
    };
    let errors: u64 = tally.errors.values().sum();
    let calls = tally.latencies.len() as u64 + errors;
    let seconds = elapsed.as_secs_f64();
    println!(
        "calls={calls} errors={errors} seconds={seconds:.2} calls_per_s={:.1} p50_us={} p99_us={}",
        tally.latencies.len() as f64 / seconds,
        percentile(0.50),
        percentile(0.99)
    );
    for (error, n) in &tally.errors {
        eprintln!("grpc-load: {n} x {error}");
    }
}
