use super::*;

fn reading(arrivals: u64) -> Reading {
    Reading {
        ready: 1,
        desired: 2,
        arrivals,
        ..Reading::default()
    }
}

fn mark(t: u64) -> Mark {
    Mark {
        t,
        kind: "scale".into(),
        from: Some(1),
        to: Some(2),
        reason: "load".into(),
    }
}

#[test]
fn the_request_rate_is_the_arrivals_between_samples_over_their_distance() {
    let h = History::default();
    h.record(10_000, reading(100));
    h.record(11_000, reading(105));
    h.record(13_000, reading(125));
    let (samples, _) = h.since(0);
    let rates: Vec<f64> = samples.iter().map(|s| s.rps).collect();
    assert_eq!(rates, [0.0, 5.0, 10.0]);
    assert_eq!(samples[1].desired, 2);
}

#[test]
fn a_clock_that_goes_back_gives_no_rate_rather_than_a_wrong_one() {
    let h = History::default();
    h.record(10_000, reading(100));
    h.record(9_000, reading(200));
    assert_eq!(h.since(0).0[1].rps, 0.0);
}

#[test]
fn samples_are_kept_for_ten_minutes_and_no_longer() {
    let h = History::default();
    for second in 0..(SAMPLES as u64 + 50) {
        h.record(second * 1000, reading(second));
    }
    let (samples, _) = h.since(0);
    assert_eq!(samples.len(), SAMPLES);
    assert_eq!(samples[0].t, 50_000);
    assert_eq!(samples.last().unwrap().t, (SAMPLES as u64 + 49) * 1000);
}

#[test]
fn marks_go_when_the_samples_of_their_time_do() {
    let h = History::default();
    h.mark(mark(500));
    h.record(1_000, reading(0));
    h.mark(mark(1_500));
    h.record(2_000, reading(0));
    // The start comes before the first sample, and is kept.
    assert_eq!(h.since(0).1, [mark(500), mark(1_500)]);
    for second in 3..=(SAMPLES as u64 + 1) {
        h.record(second * 1000, reading(0));
    }
    assert_eq!(h.since(0).0[0].t, 2_000);
    assert_eq!(h.since(0).1, [], "both are older than the oldest sample");
}

#[test]
fn marks_are_bounded_even_without_samples() {
    let h = History::default();
    for t in 0..(MARKS as u64 * 2) {
        h.mark(mark(t));
    }
    let marks = h.since(0).1;
    assert_eq!(marks.len(), MARKS);
    assert_eq!(marks[0].t, MARKS as u64);
}

#[test]
fn since_returns_only_what_is_newer() {
    let h = History::default();
    for t in [1_000, 2_000, 3_000] {
        h.record(t, reading(0));
    }
    h.mark(mark(2_500));
    let (samples, marks) = h.since(2_000);
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].t, 3_000);
    assert_eq!(marks.len(), 1);
}
