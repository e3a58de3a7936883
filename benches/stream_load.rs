//! Token-stream load for benches/llm.sh: `streams` clients at once, each
//! sending streaming chat completions (`"stream": true`) one after another
//! for `duration`, to an OpenAI-compatible URL (the stand-in language model
//! directly, or sluice in front of it).
//!
//! Per request it records the time to the first token (the first `data:`
//! event) and counts the tokens (events other than `[DONE]`). Prints one
//! line of `key=value`: requests, tokens, tokens/s, time to first token p50
//! and p99 in ms, errors.
//!
//!   stream-load --url http://127.0.0.1:8080 --model llama --streams 100 --duration 10s

use std::time::{Duration, Instant};

struct Args {
    url: String,
    host: Option<String>,
    model: String,
    streams: usize,
    max_tokens: u32,
    duration: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: String::new(),
        host: None,
        model: "llama".into(),
        streams: 100,
        max_tokens: 64,
        duration: Duration::from_secs(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => args.url = value,
            "--host" => args.host = Some(value),
            "--model" => args.model = value,
            "--streams" => args.streams = value.parse().map_err(|e| format!("--streams: {e}"))?,
            "--max-tokens" => {
                args.max_tokens = value.parse().map_err(|e| format!("--max-tokens: {e}"))?
            }
            "--duration" => {
                let seconds = value.trim_end_matches('s');
                let seconds: f64 = seconds.parse().map_err(|e| format!("--duration: {e}"))?;
                args.duration = Duration::from_secs_f64(seconds);
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.url.is_empty() {
        return Err("--url is required".into());
    }
    Ok(args)
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    requests: u64,
    tokens: u64,
    errors: u64,
    first_tokens: Vec<Duration>,
}

/// One streaming request: its time to first token and its tokens.
async fn one_stream(
    client: &reqwest::Client,
    args: &Args,
    body: &str,
) -> Result<(Duration, u64), String> {
    let started = Instant::now();
    let mut request = client
        .post(format!("{}/v1/chat/completions", args.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(host) = &args.host {
        request = request.header("host", host);
    }
    let mut response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let (mut buffer, mut tokens, mut first) = (Vec::new(), 0u64, None);
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        buffer.extend_from_slice(&chunk);
        // Whole events only: an event may be split across reads.
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            if event.starts_with(b"data: ") && !event.starts_with(b"data: [DONE]") {
                first.get_or_insert_with(|| started.elapsed());
                tokens += 1;
            }
        }
    }
    let first = first.ok_or("no token")?;
    Ok((first, tokens))
}

async fn client_loop(args: std::sync::Arc<Args>, until: Instant) -> Tally {
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "model": args.model,
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": args.max_tokens,
        "stream": true,
    })
    .to_string();
    let mut tally = Tally::default();
    while Instant::now() < until {
        match one_stream(&client, &args, &body).await {
            Ok((first, tokens)) => {
                tally.requests += 1;
                tally.tokens += tokens;
                tally.first_tokens.push(first);
            }
            Err(e) => {
                tally.errors += 1;
                if tally.errors == 1 {
                    eprintln!("stream-load: {e}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(args) => std::sync::Arc::new(args),
        Err(e) => {
            eprintln!("stream-load: {e}");
            std::process::exit(64);
        }
    };
    let started = Instant::now();
    let until = started + args.duration;
    let clients: Vec<_> = (0..args.streams)
        .map(|_| tokio::spawn(client_loop(args.clone(), until)))
        .collect();
    let mut total = Tally::default();
    for client in clients {
        let tally = client.await.expect("a client task panicked");
        total.requests += tally.requests;
        total.tokens += tally.tokens;
        total.errors += tally.errors;
        total.first_tokens.extend(tally.first_tokens);
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.first_tokens.sort_unstable();
    println!(
        "requests={} tokens={} tokens_per_s={:.0} ttft_p50_ms={:.1} ttft_p99_ms={:.1} errors={}",
        total.requests,
        total.tokens,
        total.tokens as f64 / elapsed,
        percentile(&total.first_tokens, 0.5),
        percentile(&total.first_tokens, 0.99),
        total.errors
    );
}
