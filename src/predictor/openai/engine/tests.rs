//! The engine on tokio's paused clock: every wait below is exact, and the
//! tests take no real time.

use super::super::metrics::Exposition;
use super::*;

const MS: Duration = Duration::from_millis(1);

/// Batch 8, 50ms to the first token, then one every 20ms.
fn settings() -> EngineSettings {
    EngineSettings {
        batch_size: 8,
        time_to_first_token: 50 * MS,
        tokens_per_second: 50.0,
        kv_cache_tokens: 1000,
    }
}

fn start(settings: EngineSettings) -> (Engine, EngineMetrics) {
    let (metrics, _) = start_exposed(settings);
    metrics
}

/// As `start`, with the metrics' exposition (for the histogram, which has
/// no getters).
fn start_exposed(settings: EngineSettings) -> ((Engine, EngineMetrics), Exposition) {
    let (metrics, exposition) = EngineMetrics::new("tiny");
    (
        (Engine::start(settings, metrics.clone()), metrics),
        exposition,
    )
}

/// A series' value in the exposition.
fn series(exposition: &Exposition, name: &str) -> f64 {
    let prefix = format!("{name}{{model_name=\"tiny\"}} ");
    let text = exposition.encode();
    let value = text.lines().find_map(|line| line.strip_prefix(&prefix));
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in:\n{text}"))
}

/// Lets the engine task take what was sent to it (the paused clock moves
/// only once every task is idle).
async fn settle() {
    tokio::time::sleep(Duration::from_nanos(1)).await;
}

fn state(metrics: &EngineMetrics) -> (i64, i64) {
    (metrics.running.get(), metrics.waiting.get())
}

#[tokio::test(start_paused = true)]
async fn the_first_token_comes_after_prefill_and_the_rest_at_the_decode_pace() {
    let (engine, _metrics) = start(settings());
    let t0 = Instant::now();
    let mut sequence = engine.submit(4, 3);
    let mut arrivals = Vec::new();
    while let Some(token) = sequence.next_token().await {
        arrivals.push((token, Instant::now() - t0));
    }
    let expect = |index, last, at| (Token { index, last }, at * MS);
    assert_eq!(
        arrivals,
        [
            expect(0, false, 50),
            expect(1, false, 70),
            expect(2, true, 90)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_ninth_sequence_waits_for_a_slot_in_a_batch_of_eight() {
    let (engine, metrics) = start(settings());
    let t0 = Instant::now();
    let mut first_eight: Vec<_> = (0..8).map(|_| engine.submit(1, 2)).collect();
    let mut ninth = engine.submit(1, 2);
    settle().await;
    assert_eq!(state(&metrics), (8, 1));

    // The eight finish at 70ms; the ninth is admitted then, and prefills.
    for sequence in &mut first_eight {
        while sequence.next_token().await.is_some() {}
    }
    assert_eq!(Instant::now() - t0, 70 * MS);
    let first = ninth.next_token().await.unwrap();
    assert_eq!((first.index, Instant::now() - t0), (0, 120 * MS));
    assert_eq!(state(&metrics), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_sequence_frees_its_slot_for_the_next_waiting_one_at_once() {
    let (engine, metrics) = start(EngineSettings {
        batch_size: 1,
        ..settings()
    });
    let mut talker = engine.submit(1, 1000);
    let mut waiter = engine.submit(1, 4);
    talker.next_token().await.unwrap();
    assert_eq!(state(&metrics), (1, 1));

    let dropped_at = Instant::now();
    drop(talker);
    settle().await;
    assert_eq!(state(&metrics), (1, 0), "the waiter took the slot");
    waiter.next_token().await.unwrap();
    assert_eq!(
        Instant::now() - dropped_at,
        50 * MS,
        "its prefill began at the drop"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_sequence_leaves_the_queue() {
    let (engine, metrics) = start(EngineSettings {
        batch_size: 1,
        ..settings()
    });
    let _running = engine.submit(1, 1000);
    let waiting = engine.submit(1, 4);
    settle().await;
    assert_eq!(state(&metrics), (1, 1));
    drop(waiting);
    settle().await;
    assert_eq!(state(&metrics), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn metrics_follow_tokens_cache_and_finished_requests() {
    let ((engine, metrics), exposition) = start_exposed(EngineSettings {
        batch_size: 2,
        kv_cache_tokens: 100,
        ..settings()
    });
    let mut a = engine.submit(10, 3);
    let mut b = engine.submit(20, 5);
    settle().await;
    // The prompts are in the cache from admission: 30 of 100 tokens.
    assert_eq!(metrics.kv_cache_usage.get(), 0.3);
    assert_eq!(metrics.prompt_tokens.get(), 0, "counted when prefill ends");

    a.next_token().await.unwrap();
    b.next_token().await.unwrap();
    assert_eq!(metrics.kv_cache_usage.get(), 0.32);
    assert_eq!(metrics.prompt_tokens.get(), 30);
    let ttft = |part| {
        series(
            &exposition,
            &format!("vllm:time_to_first_token_seconds_{part}"),
        )
    };
    assert_eq!(ttft("count"), 2.0);
    assert!((ttft("sum") - 0.1).abs() < 1e-9, "both waited 50ms");

    while a.next_token().await.is_some() {}
    settle().await;
    assert_eq!(metrics.request_success.get(), 1);
    assert_eq!(state(&metrics), (1, 0));
    // a's 13 tokens left the cache; b holds its 20 and the 3 it has made.
    assert_eq!(metrics.kv_cache_usage.get(), 0.23);
    while b.next_token().await.is_some() {}
    settle().await;
    assert_eq!(metrics.generation_tokens.get(), 8);
    assert_eq!(metrics.request_success.get(), 2);
    assert_eq!(metrics.kv_cache_usage.get(), 0.0);
    assert_eq!(state(&metrics), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_read_stalls_only_its_own_sequence() {
    let (engine, metrics) = start(settings());
    let slow = engine.submit(1, 1000);
    let mut quick = engine.submit(1, 100);
    while quick.next_token().await.is_some() {}
    // The slow one made only what its buffer holds, and keeps its slot.
    settle().await;
    assert_eq!(state(&metrics), (1, 0));
    assert_eq!(metrics.generation_tokens.get(), 100 + TOKEN_BUFFER as u64);
    drop(slow);
}

#[test]
fn tokens_read_as_words() {
    let text: String = (0..4)
        .map(|index| Token { index, last: false }.text())
        .collect();
    assert_eq!(text, "sluice stands in for");
}
