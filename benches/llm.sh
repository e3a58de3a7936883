#!/usr/bin/env bash
# Token streams: STREAMS concurrent streaming chat completions from the
# stream-load example (benches/stream_load.rs) against the stand-in language
# model (`sluice predictor --openai`) directly and through `sluice gateway`
# (routed by the `model` in the body), in one run, on loopback only. Rounds
# alternate the order (ABBA). Prints one line per run and a summary of
# medians: tokens/s, time to first token p50/p99 and what the gateway adds
# to it, the gateway's CPU per streamed token (utime+stime from
# /proc/PID/stat before and after the run) against the model server's, and
# the gateway's memory per open stream (its peak RSS during a run, less its
# RSS before any, over STREAMS).
#
#   bash benches/llm.sh                    # STREAMS=100 DURATION=10s ROUNDS=2
#   STREAMS=200 DURATION=5s bash benches/llm.sh
#
# Environment
#   STREAMS      streams open at once (default 100); the model decodes them all together
#   DURATION     length of each run (default 10s)
#   ROUNDS       rounds (default 2)
#   TTFT         the model's time to first token (default 50ms)
#   TOKENS_PER_S tokens per second per stream (default 50)
#   MAX_TOKENS   tokens per answer (default 64)
#   HEAPTRACK    1 to run the gateway under heaptrack and print, at the end,
#                where its heap was at its peak, per open stream (benches/heap_peaks.py);
#                slows the gateway, so its CPU and latency figures are not comparable
#   SKIP_BUILD   1 to use the existing release binaries
#   KEEP_TMP     1 to keep the temp dir (config, logs)
set -euo pipefail

STREAMS=${STREAMS:-100}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
TTFT=${TTFT:-50ms}
TOKENS_PER_S=${TOKENS_PER_S:-50}
MAX_TOKENS=${MAX_TOKENS:-64}
MODEL=llama

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE="$ROOT/target/release/sluice"
LOAD="$ROOT/target/release/examples/stream-load"
SCRIPT=llm.sh
TMP_PREFIX=sluice-llm
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $STREAMS =~ ^[1-9][0-9]*$ ]] || die "STREAMS must be a positive integer, not '$STREAMS'"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release --bin sluice --example stream-load) >&2
fi
[[ -x $SLUICE && -x $LOAD ]] || die "build first: cargo build --release --bin sluice --example stream-load"

# ---------------------------------------------------------------- processes

"$SLUICE" --log info predictor --openai --port 0 --model-name "$MODEL" --batch-size "$STREAMS" \
    --time-to-first-token "$TTFT" --tokens-per-second "$TOKENS_PER_S" >"$TMP/predictor.log" 2>&1 &
PREDICTOR_PID=$!
PIDS+=("$PREDICTOR_PID")
PREDICTOR=$(bound_addr "$PREDICTOR_PID" "$TMP/predictor.log" "sluice predictor" addr)

cat >"$TMP/sluice.yaml" <<EOF
listen: 127.0.0.1:0
admin: 127.0.0.1:0
gateway:
  shutdownGracePeriod: 2s
  connections:
    workers: 1
services:
  - name: $MODEL
    namespace: bench
    backend: {static: ["$PREDICTOR"]}
EOF
WRAP=()
if [[ ${HEAPTRACK:-0} == 1 ]]; then
    command -v heaptrack >/dev/null || die "HEAPTRACK=1 needs heaptrack (apt-get install heaptrack)"
    # Its own session: heaptrack signals its process group when the gateway exits.
    WRAP=(setsid heaptrack -o "$TMP/gateway")
fi
${WRAP[@]+"${WRAP[@]}"} "$SLUICE" --log info gateway --config "$TMP/sluice.yaml" >"$TMP/sluice.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")
GATEWAY=$(bound_addr "$GATEWAY_PID" "$TMP/sluice.log" "sluice gateway started" listen)
if [[ ${HEAPTRACK:-0} == 1 ]]; then
    # heaptrack's wrapper forks the gateway: measure the gateway itself.
    for _ in $(seq 50); do
        child=$(pgrep -P "$GATEWAY_PID" -x sluice | head -1 || true)
        [[ -n $child ]] && break
        sleep 0.1
    done
    [[ -n ${child:-} ]] && GATEWAY_PID=$child && PIDS+=("$GATEWAY_PID")
fi
IDLE_RSS=$(rss_kib "$GATEWAY_PID")

# ---------------------------------------------------------------- runs

# One run against TARGET (direct|gateway): prints "target key=value ...".
run() {
    local target=$1 duration=$2 addr before_p before_g after_p after_g out sampler
    case $target in
        direct) addr=$PREDICTOR ;;
        gateway) addr=$GATEWAY ;;
    esac
    before_p=$(cpu_ticks "$PREDICTOR_PID")
    before_g=$(cpu_ticks "$GATEWAY_PID")
    # The gateway's RSS, sampled while the streams are open.
    (while kill -0 "$GATEWAY_PID" 2>/dev/null; do rss_kib "$GATEWAY_PID"; sleep 0.25; done) >"$TMP/rss.$target" &
    sampler=$!
    out=$("$LOAD" --url "http://$addr" --model "$MODEL" --streams "$STREAMS" \
        --max-tokens "$MAX_TOKENS" --duration "$duration" 2>>"$TMP/load-errors.log") ||
        { kill "$sampler" 2>/dev/null; cat "$TMP/load-errors.log" >&2; die "stream-load against $target failed"; }
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    after_p=$(cpu_ticks "$PREDICTOR_PID")
    after_g=$(cpu_ticks "$GATEWAY_PID")
    local tokens
    tokens=$(sed -E 's/.*tokens=([0-9]+).*/\1/' <<<"$out")
    ((tokens > 0)) || { cat "$TMP/load-errors.log" >&2; die "no tokens came through $target"; }
    local per_token="BEGIN { printf \"%.2f\", t * 1e6 / hz / n }"
    local pod_us gw_us=- per_stream=-
    pod_us=$(awk -v t=$((after_p - before_p)) -v n="$tokens" -v hz="$CLK_TCK" "$per_token")
    if [[ $target == gateway ]]; then
        gw_us=$(awk -v t=$((after_g - before_g)) -v n="$tokens" -v hz="$CLK_TCK" "$per_token")
        per_stream=$(sort -n "$TMP/rss.$target" | tail -1 | awk -v idle="$IDLE_RSS" -v n="$STREAMS" '{ printf "%.1f", ($1 - idle) / n }')
    fi
    echo "$target $out model_cpu_us_per_token=$pod_us gateway_cpu_us_per_token=$gw_us gateway_kib_per_stream=$per_stream"
}

# A short warm-up of each, not measured.
for target in direct gateway; do run "$target" 2s >/dev/null; done

log "llm.sh: $STREAMS streams, ${DURATION} a run, $ROUNDS round(s); the model: first token after $TTFT, $TOKENS_PER_S tokens/s per stream, $MAX_TOKENS tokens per answer; gateway idle RSS $IDLE_RSS KiB"
: >"$TMP/runs"
for round in $(seq "$ROUNDS"); do
    order=(direct gateway)
    ((round % 2 == 0)) && order=(gateway direct)
    for target in "${order[@]}"; do
        line=$(run "$target" "$DURATION")
        echo "round $round $line" | tee -a "$TMP/runs"
    done
done

# ---------------------------------------------------------------- summary

median() { median_of "$TMP/runs" "$@"; }
errors_of() { total_errors "$TMP/runs" "$1"; }

echo
echo "| target | tokens/s | TTFT p50 ms | TTFT p99 ms | errors | model CPU µs/token | gateway CPU µs/token | gateway KiB/open stream |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for target in direct gateway; do
    echo "| $target | $(median "$target" tokens_per_s) | $(median "$target" ttft_p50_ms) | $(median "$target" ttft_p99_ms) | $(errors_of "$target") | $(median "$target" model_cpu_us_per_token) | $(median "$target" gateway_cpu_us_per_token) | $(median "$target" gateway_kib_per_stream) |"
done
awk -v g50="$(median gateway ttft_p50_ms)" -v d50="$(median direct ttft_p50_ms)" \
    -v g99="$(median gateway ttft_p99_ms)" -v d99="$(median direct ttft_p99_ms)" \
    -v gc="$(median gateway gateway_cpu_us_per_token)" -v pc="$(median direct model_cpu_us_per_token)" \
    'BEGIN { printf "\nadded by the gateway: TTFT p50 %+.1f ms, p99 %+.1f ms; gateway CPU per token / model server CPU per token %.2f\n", g50 - d50, g99 - d99, gc / pc }'

if [[ ${HEAPTRACK:-0} == 1 ]]; then
    # The recording is complete once the gateway has exited. (heaptrack's
    # wrapper passes a TERM on to this script when its program ends: ignored.)
    trap '' TERM
    kill -TERM "$GATEWAY_PID"
    for _ in $(seq 100); do kill -0 "$GATEWAY_PID" 2>/dev/null || break; sleep 0.1; done
    wait 2>/dev/null || true
    sleep 1
    echo
    python3 "$ROOT/benches/heap_peaks.py" "$(ls "$TMP"/gateway*.zst | head -1)" "$STREAMS"
fi
