#!/usr/bin/env bash
# gRPC load: unary KServe v2 ModelInfer calls from the grpc-load example
# (benches/grpc_load.rs; ghz is not installable here) against the stand-in
# predictor directly and through `sluice gateway` (service `protocol: h2c`),
# in one run, on loopback only. Rounds alternate the order (ABBA) so that
# machine noise hits both targets alike. Prints one line per run and a
# summary of medians: calls/s, p50, p99, errors, the predictor's CPU per call
# and the gateway's (utime+stime from /proc/PID/stat before and after the
# run), and the ratios gateway / direct.
#
#   bash benches/grpc.sh                       # DURATION=10s ROUNDS=2 CONCURRENCY=16
#   DURATION=5s ROUNDS=3 CONCURRENCY=64 bash benches/grpc.sh
#
# Environment
#   DURATION     length of each run (default 10s)
#   ROUNDS       rounds (default 2)
#   WARMUP       warm-up per target before measuring, 0s to skip (default 2s)
#   CONCURRENCY  calls in flight (default 16); CONNECTIONS HTTP/2 connections (default 2)
#   SERVICE_TIME the predictor's time per call (default 0ms: the proxy's cost shows)
#   WORKERS      the gateway's worker threads (gateway.connections.workers; default 1)
#   SKIP_BUILD   1 to use the existing release binaries
#   KEEP_TMP     1 to keep the temp dir (config, logs)
#
# The gateway half needs a sluice whose services take `protocol: h2c`; a
# sluice without it fails `sluice check` on the config, and then only the
# direct half runs (said so in the output).
#
# Caveat: the load client, the gateway and the predictor share the machine's
# cores, so absolute numbers are noisy; compare the two targets within a run.
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-16}
CONNECTIONS=${CONNECTIONS:-2}
SERVICE_TIME=${SERVICE_TIME:-0ms}
WORKERS=${WORKERS:-1}
MODEL=redwine-grpc
NAMESPACE=bench
DOMAIN=example.com
AUTHORITY="$MODEL.$NAMESPACE.$DOMAIN"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE="$ROOT/target/release/sluice"
LOAD="$ROOT/target/release/examples/grpc-load"
SCRIPT=grpc.sh
TMP_PREFIX=sluice-grpc
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer, not '$WORKERS'"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release --bin sluice --example grpc-load) >&2
fi
[[ -x $SLUICE && -x $LOAD ]] || die "build first: cargo build --release --bin sluice --example grpc-load"

# ---------------------------------------------------------------- processes

# The predictor: enough workers that CONCURRENCY calls never wait for one.
"$SLUICE" --log info predictor --port 0 --model-name "$MODEL" --workers "$CONCURRENCY" \
    --service-time "$SERVICE_TIME" >"$TMP/predictor.log" 2>&1 &
PREDICTOR_PID=$!
PIDS+=("$PREDICTOR_PID")
PREDICTOR=$(bound_addr "$PREDICTOR_PID" "$TMP/predictor.log" "sluice predictor" addr)

cat >"$TMP/sluice.yaml" <<EOF
listen: 127.0.0.1:0
admin: 127.0.0.1:0
domain: $DOMAIN
gateway:
  shutdownGracePeriod: 2s
  connections:
    workers: $WORKERS
services:
  - name: $MODEL
    namespace: $NAMESPACE
    protocol: h2c
    backend: {static: ["$PREDICTOR"]}
EOF
GATEWAY=""
if "$SLUICE" --log warn check --config "$TMP/sluice.yaml" >"$TMP/check.log" 2>&1; then
    "$SLUICE" --log info gateway --config "$TMP/sluice.yaml" >"$TMP/sluice.log" 2>&1 &
    GATEWAY_PID=$!
    PIDS+=("$GATEWAY_PID")
    GATEWAY=$(bound_addr "$GATEWAY_PID" "$TMP/sluice.log" "sluice gateway started" listen)
else
    log "grpc.sh: this sluice cannot route gRPC yet ($(tail -1 "$TMP/check.log")); running the direct half only"
fi

# ---------------------------------------------------------------- runs

# One run against TARGET (direct|gateway): prints "target key=value ...".
run() {
    local target=$1 duration=$2 addr args=() out before_p before_g after_p after_g
    case $target in
        direct) addr=$PREDICTOR ;;
        gateway) addr=$GATEWAY; args=(--authority "$AUTHORITY") ;;
    esac
    before_p=$(cpu_ticks "$PREDICTOR_PID")
    [[ $target == gateway ]] && before_g=$(cpu_ticks "$GATEWAY_PID")
    out=$("$LOAD" --addr "$addr" ${args[@]+"${args[@]}"} --model "$MODEL" --concurrency "$CONCURRENCY" \
        --connections "$CONNECTIONS" --duration "$duration" 2>>"$TMP/load-errors.log") ||
        { cat "$TMP/load-errors.log" >&2; die "grpc-load against $target failed"; }
    after_p=$(cpu_ticks "$PREDICTOR_PID")
    local calls
    calls=$(sed -E 's/.*calls=([0-9]+).*/\1/' <<<"$out")
    ((calls > 0)) || { cat "$TMP/load-errors.log" >&2; die "no calls went through to $target"; }
    local pod_us gw_us=-
    pod_us=$(awk -v t=$((after_p - before_p)) -v c="$calls" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t * 1e6 / hz / c }')
    if [[ $target == gateway ]]; then
        after_g=$(cpu_ticks "$GATEWAY_PID")
        gw_us=$(awk -v t=$((after_g - before_g)) -v c="$calls" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t * 1e6 / hz / c }')
    fi
    echo "$target $out predictor_cpu_us=$pod_us gateway_cpu_us=$gw_us"
}

TARGETS=(direct)
[[ -n $GATEWAY ]] && TARGETS+=(gateway)

if [[ $WARMUP != 0s && $WARMUP != 0 ]]; then
    for target in "${TARGETS[@]}"; do run "$target" "$WARMUP" >/dev/null; done
fi

log "grpc.sh: $CONCURRENCY calls in flight over $CONNECTIONS connection(s), ${DURATION} a run, $ROUNDS round(s), predictor service time $SERVICE_TIME, gateway workers $WORKERS"
: >"$TMP/runs"
for round in $(seq "$ROUNDS"); do
    order=("${TARGETS[@]}")
    if ((round % 2 == 0)) && ((${#TARGETS[@]} == 2)); then order=(gateway direct); fi
    for target in "${order[@]}"; do
        line=$(run "$target" "$DURATION")
        echo "round $round $line" | tee -a "$TMP/runs"
    done
done

# ---------------------------------------------------------------- summary

median() { median_of "$TMP/runs" "$@"; }
errors_of() { total_errors "$TMP/runs" "$1"; }

echo
echo "| target | calls/s | p50 µs | p99 µs | errors | predictor CPU µs/call | gateway CPU µs/call |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for target in "${TARGETS[@]}"; do
    echo "| $target | $(median "$target" calls_per_s) | $(median "$target" p50_us) | $(median "$target" p99_us) | $(errors_of "$target") | $(median "$target" predictor_cpu_us) | $(median "$target" gateway_cpu_us) |"
done
if [[ -n $GATEWAY ]]; then
    awk -v gr="$(median gateway calls_per_s)" -v dr="$(median direct calls_per_s)" \
        -v gc="$(median gateway gateway_cpu_us)" -v pc="$(median direct predictor_cpu_us)" \
        'BEGIN { printf "\ngateway / direct: calls/s %.2f; gateway CPU per call / predictor CPU per call (direct) %.2f\n", gr / dr, gc / pc }'
else
    echo
    echo "gateway half not run: this sluice has no \`protocol: h2c\` for services yet"
fi
