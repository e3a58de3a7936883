#!/usr/bin/env bash
# Instructions per request: the gateway (one worker) and the bare hyper
# proxy of benches/hyper_proxy.rs (the floor), each under valgrind's
# callgrind, for the same N keep-alive GETs against a 0 ms upstream on
# loopback. Instructions, unlike seconds, repeat from run to run whatever
# else the machine does, so this is the figure to compare two versions of
# the request path with. It counts the proxy's own user-space work only
# (not the kernel's, which is most of a proxy's time: see load.sh).
#
#   bash benches/instructions.sh            # N=5000 requests, 16 connections
#   N=20000 TOP=30 bash benches/instructions.sh
#
# Prints per target: instructions per request (the count between two dumps,
# so start-up is not in it), and with TOP>0 the gateway's functions with the
# most instructions, inclusive, per request.
set -euo pipefail

N=${N:-5000}
CONNECTIONS=${CONNECTIONS:-16}
TOP=${TOP:-25}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE="$ROOT/target/release/sluice"
UPSTREAM="$ROOT/target/release/examples/bench-upstream"
HYPER_PROXY="$ROOT/target/release/examples/bench-hyper-proxy"
HOST=fast.bench.example.com

log() { printf '%s\n' "$*" >&2; }
die() { log "instructions.sh: $*"; exit 1; }

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v hey >/dev/null || missing+=(hey)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building release sluice, bench-upstream and bench-hyper-proxy"
    (cd "$ROOT" && cargo build --release --quiet --bin sluice --example bench-upstream --example bench-hyper-proxy)
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-instructions.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# Free loopback ports below the ephemeral range.
free_port() {
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 12000))
        grep -qs -- "$(printf ':%04X ' "$port")" /proc/net/tcp /proc/net/tcp6 || { echo "$port"; return; }
    done
    die "no free port"
}
UP_PORT=$(free_port)
GW_PORT=$(free_port)
ADMIN_PORT=$(free_port)
HY_PORT=$(free_port)

"$UPSTREAM" --port "$UP_PORT" --delay-ms 0 >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
cat >"$TMP/gateway.yaml" <<EOF
listen: 127.0.0.1:$GW_PORT
admin: 127.0.0.1:$ADMIN_PORT
domain: example.com
gateway:
  connections:
    workers: 1
services:
  - name: fast
    namespace: bench
    backend: {static: ["127.0.0.1:$UP_PORT"]}
EOF

# Runs one target under callgrind: waits for a 200, zeroes the counters,
# sends N requests, dumps; prints instructions per request.
measure() {
    local name=$1 port=$2 out="$TMP/callgrind-$1.out" pid code="" total
    shift 2
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$TMP/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" "http://127.0.0.1:$port/" || true)
        [[ $code == 200 ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$TMP/$name.log" >&2; die "$name exited"; }
        sleep 0.2
    done
    [[ $code == 200 ]] || die "$name did not answer 200 within 60 s"
    callgrind_control -z "$pid" >/dev/null 2>&1
    hey -n "$N" -c "$CONNECTIONS" -host "$HOST" "http://127.0.0.1:$port/" >"$TMP/hey-$name.txt"
    local answered
    answered=$(awk '/^ *\[200\]/ { print $2 }' "$TMP/hey-$name.txt")
    [[ -n $answered && $answered -gt 0 ]] || { cat "$TMP/hey-$name.txt" >&2; die "$name: no 200s"; }
    callgrind_control -d "$pid" >/dev/null 2>&1
    for _ in $(seq 100); do [[ -s $out.1 ]] && break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    total=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    printf '%s\t%s\t%s\n' "$name" "$answered" "$total" >>"$TMP/results.tsv"
}

measure sluice "$GW_PORT" "$SLUICE" --log warn gateway --config "$TMP/gateway.yaml"
measure hyper "$HY_PORT" "$HYPER_PROXY" --port "$HY_PORT" --fast "127.0.0.1:$UP_PORT" --slow "127.0.0.1:$UP_PORT"

echo "## Instructions per request (callgrind, $N GETs over $CONNECTIONS keep-alive connections, 0 ms upstream)"
echo
echo "| target | requests answered 200 | instructions | per request |"
echo "|---|---:|---:|---:|"
awk -F'\t' '{ printf "| %s | %d | %d | %.0f |\n", $1, $2, $3, $3 / $2; per[$1] = $3 / $2 }
    END { if (per["hyper"] > 0) printf "\nsluice / hyper floor: %.2f×\n", per["sluice"] / per["hyper"] }' "$TMP/results.tsv"

if ((TOP > 0)); then
    echo
    echo "## The gateway's heaviest functions, inclusive, instructions per request"
    echo
    answered=$(awk -F'\t' '$1 == "sluice" { print $2 }' "$TMP/results.tsv")
    callgrind_annotate --inclusive=yes --threshold=100 "$TMP/callgrind-sluice.out.1" 2>/dev/null |
        grep -E 'sluice::|smallvec|memcpy|malloc\.c:malloc' |
        sed -E 's|/root/.cargo/registry/src/[^/]+/||; s|/rustc/[0-9a-f]+/library/||; s| \[[^]]*\]$||; s|\( *[0-9.]+%\)||' |
        awk -v n="$answered" '{ c = $1; gsub(",", "", c); $1 = ""; printf "%8.0f %s\n", c / n, $0 }' |
        awk '!seen[$0]++' | head -n "$TOP"
fi
