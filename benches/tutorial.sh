#!/usr/bin/env bash
# The tutorial, measured: autoscaling under the tutorial's hey command, cold
# start from zero, and 10 000 requests held at zero. Loopback only; every
# process started here is stopped by its PID on exit.
#
#   bash benches/tutorial.sh            # all parts
#   PARTS="burst" bash benches/tutorial.sh
#
# Parts
#   burst     gateway on config/local.yaml (50 ms predictor, 1..8 replicas):
#             hey -z 10s -c 5 -m POST; replicas over time from /status, time
#             from the first request to 5 ready replicas, non-200s; then the
#             same load on 5 replicas running from the start, for comparison;
#             then (SCALE_DOWN=1, the default) the wait until back to 1.
#   coldstart minReplicas 0, a predictor that is ready at once: the time from
#             the replica being ready to the held request's response, i.e. the
#             client's total time minus the sluice-held-ms header. 5 runs.
#   held      minReplicas 0, a model that takes 20 s to load: 10 000 requests
#             arrive at zero and are held; the gateway's RSS once all are
#             held (and per held request, over its RSS before), then all
#             must be answered 200; the gateway's peak RSS. HEAPTRACK=1 runs
#             the gateway under heaptrack, stops it while the requests are
#             held, and prints where its heap was then, per held request
#             (benches/heap_peaks.py).
#   hyperheld the floor under "held": the same 10 000 POSTs held 20 s by
#             benches/hyper_proxy.rs (hyper's HTTP/1 server and nothing of
#             sluice's, as many workers as cores), then forwarded to a 0 ms
#             bench-upstream; its RSS per held request, measured the same way.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE="$ROOT/target/release/sluice"
PARTS=${PARTS:-"burst coldstart held hyperheld"}
SCALE_DOWN=${SCALE_DOWN:-1}
HOST=redwine-week4.kserve-inference.example.com
URL=http://127.0.0.1:30200/v1/models/redwine-week4:predict
ADMIN=127.0.0.1:9091
TMP=$(mktemp -d)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

command -v hey >/dev/null || apt-get install -y -qq hey >/dev/null
[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --release -q --bin sluice --example bench-upstream --example bench-hyper-proxy)
echo '{"instances": [[7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4]]}' > "$TMP/input.json"

now_ms() { date +%s%3N; }
status_field() { # status_field FIELD -> the first service's FIELD from /status
    curl -s "http://$ADMIN/status" | python3 -c "import json,sys; print(json.load(sys.stdin)['services'][0]['$1'])"
}

# start_gateway CONFIG: starts it, waits for its admin port, sets GW.
start_gateway() {
    local wrap=()
    # HEAPTRACK=1 (part held): the gateway runs under heaptrack, in a session
    # of its own (heaptrack's wrapper signals its process group at the end).
    [ -n "${2:-}" ] && wrap=(setsid heaptrack -o "$2")
    ${wrap[@]+"${wrap[@]}"} "$SLUICE" gateway --config "$1" 2>"$TMP/gateway.log" &
    GW=$!
    PIDS+=("$GW")
    if [ -n "${2:-}" ]; then # measure the gateway, not the wrapper
        local child=""
        for _ in $(seq 50); do
            child=$(pgrep -P "$GW" -x sluice | head -1 || true)
            [ -n "$child" ] && break
            sleep 0.1
        done
        [ -n "$child" ] && GW=$child && PIDS+=("$GW")
    fi
    for _ in $(seq 100); do curl -s "http://$ADMIN/readyz" >/dev/null && return; sleep 0.05; done
    echo "gateway did not start:"; cat "$TMP/gateway.log"; exit 1
}
stop_gateway() { kill "$GW"; wait "$GW" 2>/dev/null || true; }
wait_ready_pods() { # wait_ready_pods N SECONDS
    for _ in $(seq $(($2 * 20))); do [ "$(status_field readyPods)" = "$1" ] && return; sleep 0.05; done
    echo "not $1 ready pods after $2 s"; exit 1
}

# with_service FILE MIN MAX PREDICTOR_ARGS: a config for one process service.
with_service() {
    cat > "$1" <<YAML
listen: 127.0.0.1:30200
admin: $ADMIN
autoscaler: { stableWindow: 20s, scaleToZeroGracePeriod: 5s }
services:
  - name: redwine-week4
    namespace: kserve-inference
    minReplicas: $2
    maxReplicas: $3
    initialScale: 0 # start at minReplicas, also at zero
    backend:
      process:
        command: ["{sluice}", "predictor", "--port", "{port}", "--model-name", "{name}", "--log", "warn", $4]
        readinessPath: /v1/models/redwine-week4
YAML
}

hey_summary() { grep -E "Requests/sec|Average:|Slowest:|\[[0-9]+\]" "$1" | sed 's/^ */  /'; }

part_burst() {
    echo "## burst: config/local.yaml, hey -z 10s -c 5"
    start_gateway "$ROOT/config/local.yaml"
    wait_ready_pods 1 10
    ( while true; do
        printf '%s %s %s\n' "$(now_ms)" "$(status_field readyPods)" "$(status_field desired)"
        sleep 0.1
      done ) > "$TMP/replicas.log" 2>/dev/null &
    PIDS+=("$!"); POLLER=$!
    local start; start=$(now_ms)
    hey -z 10s -c 5 -m POST -host "$HOST" -D "$TMP/input.json" "$URL" > "$TMP/hey-burst.txt"
    hey_summary "$TMP/hey-burst.txt"
    local five_at
    five_at=$(awk -v s="$start" '$2 >= 5 { print $1 - s; exit }' "$TMP/replicas.log")
    echo "  time from the first request to 5 ready replicas: ${five_at:-never} ms"
    echo "  ready replicas over time (seconds since the first request: ready/desired):"
    awk -v s="$start" '{ t = int(($1 - s) / 1000); if (t != last && t >= 0) { printf "    %ds: %s/%s\n", t, $2, $3; last = t } }' "$TMP/replicas.log" | head -12
    local burst_rps; burst_rps=$(awk '/Requests\/sec/ { print $2 }' "$TMP/hey-burst.txt")
    if [ "$SCALE_DOWN" = 1 ]; then
        local idle; idle=$(now_ms)
        for _ in $(seq 1800); do [ "$(status_field desired)" = 1 ] && [ "$(status_field readyPods)" = 1 ] && break; sleep 0.1; done
        echo "  back to 1 replica $(( ($(now_ms) - idle) / 1000 )) s after the load stopped"
    fi
    kill "$POLLER"; stop_gateway

    echo "## baseline: the same load on 5 replicas running from the start"
    sed -e 's/minReplicas: 1/minReplicas: 5/' -e 's/maxReplicas: 8/maxReplicas: 5/' "$ROOT/config/local.yaml" > "$TMP/five.yaml"
    start_gateway "$TMP/five.yaml"
    wait_ready_pods 5 10
    hey -z 10s -c 5 -m POST -host "$HOST" -D "$TMP/input.json" "$URL" > "$TMP/hey-five.txt"
    hey_summary "$TMP/hey-five.txt"
    stop_gateway
    local five_rps; five_rps=$(awk '/Requests\/sec/ { print $2 }' "$TMP/hey-five.txt")
    echo "  autoscaled throughput: $(python3 -c "print(f'{100 * $burst_rps / $five_rps:.0f}')")% of 5 replicas from the start"
}

part_coldstart() {
    echo "## coldstart: held request, from replica ready to response (total - sluice-held-ms)"
    with_service "$TMP/zero.yaml" 0 1 '"--service-time", "0ms"'
    for run in 1 2 3 4 5; do
        start_gateway "$TMP/zero.yaml"
        curl -s -o /dev/null -D "$TMP/headers" -w '%{time_total}\n' -H "Host: $HOST" -d @"$TMP/input.json" "$URL" > "$TMP/total"
        local held total
        held=$(awk -F': ' 'tolower($1) == "sluice-held-ms" { printf "%.3f", $2 + 0 }' "$TMP/headers")
        total=$(awk '{ printf "%.2f", $1 * 1000 }' "$TMP/total")
        echo "  run $run: total ${total} ms, held ${held} ms, overhead after ready $(python3 -c "print(f'{$total - $held:.2f}')") ms"
        stop_gateway
    done
}

part_held() {
    echo "## held: 10 000 requests at zero, the model loads in 20 s"
    with_service "$TMP/held.yaml" 0 1 '"--service-time", "0ms", "--startup-delay", "20s"'
    # 10 000 connections on each side: the gateway and hey each need more
    # descriptors than that.
    ulimit -n "$(ulimit -Hn)"
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
        echo "  needs 10100 open files, the hard limit is $(ulimit -Hn)"; return 1
    fi
    local recording=""
    if [ "${HEAPTRACK:-0}" = 1 ]; then
        command -v heaptrack >/dev/null || { echo "  HEAPTRACK=1 needs heaptrack"; return 1; }
        recording="$TMP/held-heap"
    fi
    start_gateway "$TMP/held.yaml" "$recording"
    local idle_kib held=0 held_kib
    idle_kib=$(awk '/VmRSS/ { print $2 }' /proc/$GW/status)
    hey -n 10000 -c 10000 -t 120 -m POST -host "$HOST" -D "$TMP/input.json" "$URL" > "$TMP/hey-held.txt" &
    local hey=$!
    PIDS+=("$hey")
    # While the model loads, every request is held: read the gateway once
    # all are (from /metrics, cheaper to poll than /status), at most 15 s.
    for _ in $(seq 150); do
        held=$(curl -s "http://$ADMIN/metrics" | awk '/^sluice_held_requests[{]/ { printf "%d", $2 }')
        [ "${held:-0}" -ge 10000 ] && break
        sleep 0.1
    done
    held_kib=$(awk '/VmRSS/ { print $2 }' /proc/$GW/status)
    echo "  held at once: $held; gateway RSS $((idle_kib / 1024)) MiB before, $((held_kib / 1024)) MiB" \
        "holding them: $(awk -v a="$idle_kib" -v b="$held_kib" -v n="${held:-0}" \
            'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "?" }') KiB per held request"
    if [ -n "$recording" ]; then
        # The heap's peak must be the holding, not the release that follows:
        # the gateway stops while they are held (they get 503s, not counted).
        trap '' TERM # heaptrack's wrapper passes a TERM on when the gateway ends
        stop_gateway
        kill "$hey" 2>/dev/null || true
        wait "$hey" 2>/dev/null || true
        for _ in $(seq 100); do ls "$recording"*.zst >/dev/null 2>&1 && break; sleep 0.1; done
        sleep 1
        echo "  where the heap was at its peak, per held request (benches/heap_peaks.py):"
        python3 "$ROOT/benches/heap_peaks.py" "$(ls "$recording"*.zst | head -1)" "$held" 12 | sed 's/^/    /'
        trap - TERM
        return
    fi
    wait "$hey"
    hey_summary "$TMP/hey-held.txt"
    echo "  gateway peak RSS (including releasing them all to one replica): $(awk '/VmHWM/ { printf "%.1f MiB", $2 / 1024 }' /proc/$GW/status)"
    stop_gateway
}

part_hyperheld() {
    echo "## hyperheld: the same 10 000 requests held 20 s by a bare hyper proxy (the floor)"
    ulimit -n "$(ulimit -Hn)"
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
        echo "  needs 10100 open files, the hard limit is $(ulimit -Hn)"; return 1
    fi
    local upstream proxy idle_kib held=0 held_kib
    "$ROOT/target/release/examples/bench-upstream" --port 30281 --delay-ms 0 >"$TMP/upstream.log" 2>&1 &
    upstream=$!
    PIDS+=("$upstream")
    "$ROOT/target/release/examples/bench-hyper-proxy" --port 30280 --fast 127.0.0.1:30281 \
        --slow 127.0.0.1:30281 --workers "$(nproc)" --hold-ms 20000 >"$TMP/hyper.log" 2>&1 &
    proxy=$!
    PIDS+=("$proxy")
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/30280) 2>/dev/null && break; sleep 0.05; done
    idle_kib=$(awk '/VmRSS/ { print $2 }' /proc/$proxy/status)
    hey -n 10000 -c 10000 -t 120 -m POST -host "$HOST" -D "$TMP/input.json" \
        http://127.0.0.1:30280/v1/models/redwine-week4:predict > "$TMP/hey-hyper.txt" &
    local hey=$!
    PIDS+=("$hey")
    # Held: a client connection open on the proxy's port (it answers none
    # for 20 s). At most 15 s, as for sluice.
    for _ in $(seq 150); do
        held=$(ss -Htn state established "( sport = :30280 )" | wc -l)
        [ "$held" -ge 10000 ] && break
        sleep 0.1
    done
    held_kib=$(awk '/VmRSS/ { print $2 }' /proc/$proxy/status)
    echo "  held at once: $held; hyper proxy RSS $((idle_kib / 1024)) MiB before, $((held_kib / 1024)) MiB" \
        "holding them: $(awk -v a="$idle_kib" -v b="$held_kib" -v n="$held" \
            'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "?" }') KiB per held request"
    wait "$hey"
    hey_summary "$TMP/hey-hyper.txt"
    kill "$proxy" "$upstream"
    wait "$proxy" "$upstream" 2>/dev/null || true
}

for part in $PARTS; do "part_$part"; done
