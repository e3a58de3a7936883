//! The parser against a real vLLM answer, and against what no server should say.

use super::parse::{parse, ParseError};
use super::ServerLoad;
use crate::config::{MetricNameOverrides, PodMetrics};

/// A vLLM v0.10 `/metrics` answer, cut down: two models (a base and a LoRA
/// adapter), counters with `_created`, a histogram.
const VLLM: &str = include_str!("../../../tests/fixtures/vllm-metrics.txt");

fn vllm(text: &str) -> Result<ServerLoad, ParseError> {
    parse(text, &PodMetrics::default().names())
}

#[test]
fn a_vllm_answer_is_summed_over_its_models() {
    let load = vllm(VLLM).unwrap();
    assert_eq!(
        load,
        ServerLoad {
            running: 4.0,
            waiting: 7.0,
            kv_cache_usage: 0.4375,
        }
    );
}

#[test]
fn an_older_vllm_reports_its_cache_under_the_older_name() {
    let older = VLLM.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc");
    assert_eq!(vllm(&older).unwrap().kv_cache_usage, 0.4375);
}

#[test]
fn names_can_be_replaced_for_other_servers() {
    let tgi = "# TYPE tgi_queue_size gauge\ntgi_queue_size 12\n\
               # TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 3\n";
    let names = PodMetrics {
        names: MetricNameOverrides {
            running: Some("tgi_batch_current_size".into()),
            waiting: Some("tgi_queue_size".into()),
            kv_cache_usage: None,
        },
        ..Default::default()
    }
    .names();
    assert_eq!(
        parse(tgi, &names).unwrap(),
        ServerLoad {
            running: 3.0,
            waiting: 12.0,
            kv_cache_usage: 0.0,
        }
    );
}

#[test]
fn a_missing_metric_counts_as_zero_but_none_at_all_is_an_error() {
    let only_waiting = "vllm:num_requests_waiting{model_name=\"m\"} 2\n";
    assert_eq!(
        vllm(only_waiting).unwrap(),
        ServerLoad {
            running: 0.0,
            waiting: 2.0,
            kv_cache_usage: 0.0,
        }
    );
    let other = "# TYPE process_open_fds gauge\nprocess_open_fds 12\n";
    assert!(
        matches!(vllm(other), Err(ParseError::NoneOfTheNames(_))),
        "{:?}",
        vllm(other)
    );
}

#[test]
fn garbage_and_empty_answers_are_errors_not_panics() {
    for text in [
        "",
        "\n",
        "<html><body>502 Bad Gateway</body></html>",
        "vllm:num_requests_waiting{model_name=\"m\" 2\n",
        "vllm:num_requests_waiting two\n",
        "{\"waiting\": 2}",
        "\u{0}\u{1}\u{2}",
        "# TYPE vllm:num_requests_waiting gauge\n# TYPE vllm:num_requests_waiting counter\n",
    ] {
        assert!(vllm(text).is_err(), "{text:?} gave {:?}", vllm(text));
    }
}

#[test]
fn nan_infinite_and_negative_samples_are_left_out() {
    let text = "vllm:num_requests_waiting{model_name=\"a\"} NaN\n\
                vllm:num_requests_waiting{model_name=\"b\"} 3\n\
                vllm:num_requests_waiting{model_name=\"c\"} -5\n\
                vllm:num_requests_running{model_name=\"a\"} +Inf\n\
                vllm:kv_cache_usage_perc{model_name=\"a\"} NaN\n\
                vllm:gpu_cache_usage_perc{model_name=\"a\"} 0.25\n";
    assert_eq!(
        vllm(text).unwrap(),
        ServerLoad {
            running: 0.0,
            waiting: 3.0,
            // The newer name had nothing usable: the older one is read.
            kv_cache_usage: 0.25,
        }
    );
}

#[test]
fn the_crate_reads_a_whole_vllm_answer_and_a_bad_line_elsewhere_costs_nothing() {
    // Names with ':' and histograms with `_created`: the whole fixture parses.
    let whole = prom_text_format_parser::Scrape::parse(VLLM).unwrap();
    assert!(whole
        .metrics
        .iter()
        .any(|m| m.name == "vllm:num_requests_waiting"));
    // Only the configured metrics' lines are parsed.
    let broken = format!("{VLLM}vllm:some_new_gauge{{model_name=\"m\" 1\n");
    assert_eq!(vllm(&broken).unwrap().waiting, 7.0);
}
