#!/usr/bin/env bash
# Load test: the same load against an upstream directly, through sluice,
# through sluice with a sidecar hop (gateway -> `sluice sidecar` -> upstream)
# through a bare hyper proxy (the floor of anything built on hyper), and
# through nginx and haproxy, interleaved in rounds, on loopback only. Prints
# one line per run and a final markdown table of medians over the rounds,
# followed by the cost of the sidecar hop and of sluice over the hyper floor.
#
#   bash benches/load.sh                      # DURATION=10s ROUNDS=2, scenarios A B C
#   DURATION=5s ROUNDS=3 bash benches/load.sh
#   WORKERS=auto SCENARIOS="A C" bash benches/load.sh
#
# Scenarios
#   A  proxy overhead: wrk -t2 -c64 --latency, GET, against a 0 ms upstream.
#   B  the tutorial's command: hey -c 5 -m POST with a small JSON body,
#      against an upstream that answers after 50 ms.
#   C  many slow requests in flight: wrk -t2 -c64 --latency, GET, against the
#      50 ms upstream (64 requests waiting at once, ~1300 req/s at most), so
#      the proxies hold connections to the pod open while it thinks.
# Each scenario runs ROUNDS rounds of direct -> sluice -> sluice+sidecar ->
# nginx -> haproxy, each round in the reverse order of the one before (ABBA),
# so machine noise (other processes, thermal, caches, drift within a round)
# hits all five targets alike.
#
# Targets
#   direct          the scenario's upstream
#   sluice          `sluice gateway`, Host fast|slow.bench.example.com
#   sluice+sidecar  the same gateway process, Host fastsc|slowsc.bench.example.com,
#                   whose static backend is a `sluice sidecar` (one per
#                   upstream, containerConcurrency unlimited, --workers 1: a
#                   sidecar serves one pod) in front of the same upstream
#   hyper           the floor: benches/hyper_proxy.rs, the least reverse proxy
#                   hyper makes on sluice's architecture (a current-thread
#                   runtime per worker on SO_REUSEPORT, per-thread keep-alive
#                   connections to the upstream), without anything that is
#                   sluice's own; as many workers as sluice
#   nginx           nginx (benches/nginx.conf.template)
#   haproxy         haproxy (benches/haproxy.cfg.template)
#
# Measured per run: req/s, p50, p99 (from the load tool); for the proxies
# the CPU time per request (utime+stime from /proc/PID/stat before and after;
# nginx = master + all its workers) and the peak RSS (VmHWM; nginx = the sum
# over its workers, master excluded: with one worker, that worker's; with
# several, an upper bound, since pages they share, such as the binary and the
# configuration inherited from the master, count once per worker). For
# sluice+sidecar the gateway and the sidecar in the path are measured
# separately (columns "CPU" and "sidecar CPU"), and the summary gives the
# sidecar hop's cost: its p50/p99 over the plain sluice row and its CPU per
# request, next to nginx's CPU per request as a yardstick for a proxy hop.
# For every target, including direct, the CPU per request of the upstream
# that serves the scenario ("pod CPU": the 0 ms bench-upstream for A, the
# 50 ms one for B and C), same method: what each proxy's way of talking to
# the pod (connection reuse, pool size, request rewriting) costs the pod.
#
# Summary columns (medians over the rounds): req/s, p50, p99; CPU µs/req (the
# proxy) and CPU / nginx (that over nginx's in the same scenario); sidecar CPU
# µs/req; pod CPU µs/req and pod CPU / behind nginx (that over the pod's CPU
# per request when nginx feeds it, same scenario); peak RSS and sidecar peak
# RSS; +p50 vs direct; errors (summed over rounds); other CPU (the most that
# processes outside the benchmark took during any round).
#
# Environment
#   DURATION   length of each run, as wrk/hey take it (default 10s)
#   ROUNDS     rounds per scenario (default 2)
#   WARMUP     warm-up per target before measuring, 0 to skip (default 2s)
#   WORKERS    1 (default): one worker each, the sluice gateway
#              (gateway.connections.workers: 1), nginx (worker_processes 1)
#              and haproxy (nbthread 1). auto: one per core (nproc) each:
#              sluice with connections.workers unset (its default: one per
#              core it may use), nginx worker_processes N, haproxy nbthread N.
#              The sidecars keep one worker either way.
#   SCENARIOS  which scenarios to run, in order, from A B C (default "A B C")
#   SKIP_BUILD 1 to use the existing release binaries
#   KEEP_TMP   1 to keep the temp dir (configs, logs, raw tool output)
#
# Caveat: the load tool, the proxy and the upstream share the machine's cores,
# so absolute numbers are noisy and lower than on separate hosts; compare the
# targets within one run.
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2s}
NAMESPACE=bench
DOMAIN=example.com
FAST_HOST="fast.$NAMESPACE.$DOMAIN"
SLOW_HOST="slow.$NAMESPACE.$DOMAIN"
FASTSC_HOST="fastsc.$NAMESPACE.$DOMAIN" # via the sidecar in front of the 0 ms upstream
SLOWSC_HOST="slowsc.$NAMESPACE.$DOMAIN" # via the sidecar in front of the 50 ms upstream
SLOW_DELAY_MS=50

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE="$ROOT/target/release/sluice"
UPSTREAM="$ROOT/target/release/examples/bench-upstream"
HYPER_PROXY="$ROOT/target/release/examples/bench-hyper-proxy"
TEMPLATE="$ROOT/benches/nginx.conf.template"
HAPROXY_TEMPLATE="$ROOT/benches/haproxy.cfg.template"

log() { printf '%s\n' "$*" >&2; }
die() { log "load.sh: $*"; exit 1; }

# ---------------------------------------------------------------- arguments

# A bare number means seconds (wrk's reading); hey needs the unit.
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
[[ $WARMUP =~ ^[0-9]+$ ]] && WARMUP="${WARMUP}s"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"

# Seconds in a duration like 10s, 2m, 1h (for the timeouts around each run).
seconds() {
    local d=$1
    case $d in
        *ms) echo 1 ;;
        *s) echo "${d%s}" ;;
        *m) echo $((${d%m} * 60)) ;;
        *h) echo $((${d%h} * 3600)) ;;
        *) die "cannot read duration '$d'; write e.g. 10s or 1m" ;;
    esac
}
RUN_SECS=$(seconds "$DURATION")
WARMUP_SECS=$(seconds "$WARMUP")
[[ $RUN_SECS =~ ^[0-9]+$ ]] || die "DURATION must be whole seconds/minutes/hours, not '$DURATION'"
[[ $WARMUP_SECS =~ ^[0-9]+$ ]] || die "WARMUP must be whole seconds/minutes/hours, not '$WARMUP'"

# Scenarios to run: words from A B C, each at most once (a repeat would mix
# two sets of rounds into one row of the summary).
SCENARIOS=${SCENARIOS:-A B C}
read -r -a SCENARIO_LIST <<<"$SCENARIOS"
((${#SCENARIO_LIST[@]})) || die "SCENARIOS lists no scenario; list some of A B C, e.g. SCENARIOS=\"A C\""
seen=" "
for s in "${SCENARIO_LIST[@]}"; do
    [[ $s == [ABC] ]] || die "SCENARIOS: unknown scenario '$s'; list some of A B C, e.g. SCENARIOS=\"A C\""
    [[ $seen == *" $s "* ]] && die "SCENARIOS: scenario '$s' listed twice"
    seen+="$s "
done

# Workers of each proxy: 1, or one per core. NPROC is what nginx and haproxy
# get; sluice, left to its default, counts the cores it may use itself (CPU
# affinity and cgroup quota), which is the same number unless a quota is set.
WORKERS=${WORKERS:-1}
NPROC=$(nproc)
case $WORKERS in
    1) PROXY_WORKERS=1 ;;
    auto) PROXY_WORKERS=$NPROC ;;
    *) die "WORKERS must be 1 or auto, not '$WORKERS'" ;;
esac

# ---------------------------------------------------------------- tools

# Install wrk, hey and nginx if missing (Debian packages). apt-get update
# only if the first install fails (stale or empty package lists).
# Note: on a machine with an init system, installing nginx-light also starts
# the distribution's nginx service on port 80; this script does not use it.
find_nginx() { command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true; }
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v hey >/dev/null || missing+=(hey)
[[ -n $(find_nginx) ]] || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get install -y "${missing[@]}" ||
        { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y "${missing[@]}"; }
fi
NGINX=$(find_nginx)
[[ -n $NGINX ]] || die "nginx not found after install"
HAPROXY=$(command -v haproxy) || die "haproxy not found after install"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building release sluice and the bench-upstream and bench-hyper-proxy examples"
    (cd "$ROOT" && cargo build --release --quiet --bin sluice --example bench-upstream --example bench-hyper-proxy)
fi
[[ -x $SLUICE && -x $UPSTREAM && -x $HYPER_PROXY ]] || die "missing $SLUICE, $UPSTREAM or $HYPER_PROXY; build first"

CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- processes

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-load.XXXXXX")
PIDS=() # every process this script starts; all killed on exit

cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Up to 5 s for a graceful stop, then SIGKILL what is left.
    for i in $(seq 50); do
        local alive=0
        for pid in ${PIDS[@]+"${PIDS[@]}"}; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port below the ephemeral range (so no outgoing connection
# of the load tools can be holding it): not in /proc/net/tcp{,6} as a local
# or remote port, and not handed out before by this script.
CHOSEN_PORTS=" "
free_port() {
    local port hex
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 12000))
        hex=$(printf ':%04X ' "$port")
        [[ $CHOSEN_PORTS == *" $port "* ]] && continue
        grep -qs -- "$hex" /proc/net/tcp /proc/net/tcp6 && continue
        CHOSEN_PORTS+="$port "
        echo "$port"
        return
    done
    die "no free port found"
}

# Waits until PID accepts TCP connections on PORT (at most 10 s).
wait_listening() {
    local pid=$1 port=$2 name=$3 logfile=$4
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during start-up; its log:"
            cat "$logfile" >&2 || true
            die "$name did not start"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    cat "$logfile" >&2 || true
    die "$name is not listening on 127.0.0.1:$port after 10 s"
}

# Status code of `GET PATH` on 127.0.0.1:PORT with Host HOST (plain bash, no
# curl needed; one request, connection closed after).
http_status() {
    local port=$1 host=$2 path=${3:-/} line=""
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
    IFS= read -r -t 5 line <&3 || true
    exec 3<&- 3>&-
    line=${line%$'\r'}
    echo "${line#* }" | cut -d' ' -f1
}

expect_200() {
    local what=$1 port=$2 host=$3 code
    code=$(http_status "$port" "$host" /) || code="no answer"
    [[ $code == 200 ]] || die "$what (127.0.0.1:$port, Host $host) answered '$code', not 200"
}

# utime+stime in clock ticks, summed over the given processes (all threads:
# the thread-group leader's stat aggregates them). Fields 14 and 15; the
# command name (field 2) may hold spaces, so cut after its closing paren.
cpu_ticks() {
    local total=0 pid t
    for pid in "$@"; do
        t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")
        total=$((total + t))
    done
    echo "$total"
}

# Peak resident set (VmHWM) in MiB, summed over the given processes.
peak_rss_mib() {
    local pid files=()
    for pid in "$@"; do files+=("/proc/$pid/status"); done
    awk '/^VmHWM:/ { kib += $2 } END { printf "%.1f", kib / 1024 }' "${files[@]}"
}

# Busy CPU ticks of the whole machine (user + nice + system, all cores) and
# all ticks (busy + idle + everything else), from the first line of /proc/stat.
machine_ticks() {
    awk '/^cpu / { busy = $2 + $3 + $4; all = 0; for (i = 2; i <= NF; i++) all += $i; print busy, all; exit }' /proc/stat
}

# CPU ticks of everything this benchmark runs: the upstreams, the proxies, and
# this shell's reaped children (timeout -> wrk/hey, awk, ...: cutime+cstime).
own_ticks() {
    local children
    children=$(awk '{ sub(/.*\) /, ""); print $14 + $15 }' "/proc/$$/stat")
    echo $(($(cpu_ticks "$FAST_PID" "$SLOW_PID" "$SLUICE_PID" "$FAST_SC_PID" "$SLOW_SC_PID" \
        "$HYPER_PID" "$NGINX_PID" "${NGINX_WORKERS[@]}" "$HAPROXY_PID") + children))
}

# Child processes of PID (nginx's workers): from /proc/PID/task/PID/children
# where the kernel provides it, else by scanning every process's parent pid.
children_of() {
    local parent=$1 f
    if [[ -r /proc/$parent/task/$parent/children ]]; then
        tr ' ' '\n' <"/proc/$parent/task/$parent/children" | grep -E '^[0-9]+$' || true
        return
    fi
    for f in /proc/[0-9]*/stat; do
        awk -v p="$parent" '{ s = $0; sub(/.*\) /, "", s); split(s, a, " "); if (a[2] == p) { split(FILENAME, b, "/"); print b[3] } }' "$f" 2>/dev/null || true
    done
}

# ---------------------------------------------------------------- start

FAST_PORT=$(free_port)
SLOW_PORT=$(free_port)
SLUICE_PORT=$(free_port)
ADMIN_PORT=$(free_port)
FAST_SC_PORT=$(free_port)
FAST_SC_ADMIN_PORT=$(free_port)
SLOW_SC_PORT=$(free_port)
SLOW_SC_ADMIN_PORT=$(free_port)
NGINX_PORT=$(free_port)
HAPROXY_PORT=$(free_port)
HYPER_PORT=$(free_port)

# Two upstreams: 0 ms (scenario A) and 50 ms (scenarios B and C).
"$UPSTREAM" --port "$FAST_PORT" --delay-ms 0 >"$TMP/upstream-fast.log" 2>&1 &
FAST_PID=$!
PIDS+=("$FAST_PID")
"$UPSTREAM" --port "$SLOW_PORT" --delay-ms "$SLOW_DELAY_MS" >"$TMP/upstream-slow.log" 2>&1 &
SLOW_PID=$!
PIDS+=("$SLOW_PID")

# sluice: one service per upstream, routed by Host <name>.<namespace>.<domain>.
# Its data-port worker threads come from gateway.connections.workers; left
# out with WORKERS=auto, so that sluice's own default (one per core) is what
# is measured.
sluice_workers=""
[[ $WORKERS == 1 ]] && sluice_workers=$'\n  connections:\n    workers: 1'
cat >"$TMP/sluice.yaml" <<EOF
listen: 127.0.0.1:$SLUICE_PORT
admin: 127.0.0.1:$ADMIN_PORT
domain: $DOMAIN
gateway:
  shutdownGracePeriod: 2s$sluice_workers
services:
  - name: fast
    namespace: $NAMESPACE
    backend: {static: ["127.0.0.1:$FAST_PORT"]}
  - name: slow
    namespace: $NAMESPACE
    backend: {static: ["127.0.0.1:$SLOW_PORT"]}
  - name: fastsc
    namespace: $NAMESPACE
    backend: {static: ["127.0.0.1:$FAST_SC_PORT"]}
  - name: slowsc
    namespace: $NAMESPACE
    backend: {static: ["127.0.0.1:$SLOW_SC_PORT"]}
EOF
"$SLUICE" --log warn check --config "$TMP/sluice.yaml" >/dev/null
"$SLUICE" --log warn gateway --config "$TMP/sluice.yaml" >"$TMP/sluice.log" 2>&1 &
SLUICE_PID=$!
PIDS+=("$SLUICE_PID")

# Two sidecars, one in front of each upstream, with their defaults otherwise
# (containerConcurrency 0 = unlimited). One worker thread in both WORKERS
# modes, as deployed: a sidecar serves one pod (given explicitly, so that a
# SLUICE_WORKERS in the environment cannot change it). A short drain so that
# they stop at once on the exit trap's SIGTERM instead of waiting out the 5 s
# default.
SIDECAR_WORKERS=1
start_sidecar() {
    local port=$1 upstream_port=$2 admin_port=$3 logfile=$4
    "$SLUICE" --log warn sidecar \
        --listen "127.0.0.1:$port" --upstream "127.0.0.1:$upstream_port" \
        --admin "127.0.0.1:$admin_port" --readiness-path / --workers "$SIDECAR_WORKERS" \
        --drain-period 100ms --drain-timeout 2s >"$logfile" 2>&1 &
}
start_sidecar "$FAST_SC_PORT" "$FAST_PORT" "$FAST_SC_ADMIN_PORT" "$TMP/sidecar-fast.log"
FAST_SC_PID=$!
PIDS+=("$FAST_SC_PID")
start_sidecar "$SLOW_SC_PORT" "$SLOW_PORT" "$SLOW_SC_ADMIN_PORT" "$TMP/sidecar-slow.log"
SLOW_SC_PID=$!
PIDS+=("$SLOW_SC_PID")

# The hyper floor: as many workers as sluice's gateway runs.
"$HYPER_PROXY" --port "$HYPER_PORT" --fast "127.0.0.1:$FAST_PORT" --slow "127.0.0.1:$SLOW_PORT" \
    --workers "$PROXY_WORKERS" >"$TMP/hyper.log" 2>&1 &
HYPER_PID=$!
PIDS+=("$HYPER_PID")

# nginx: PROXY_WORKERS workers, foreground, everything under $TMP/nginx. The prefix dir
# is world-readable so that a worker running as nobody can reach its temp dirs.
NGINX_DIR="$TMP/nginx"
mkdir -p "$NGINX_DIR/logs"
chmod 755 "$TMP" "$NGINX_DIR"
module_temp_paths=""
for m in fastcgi uwsgi scgi; do
    # Only for the modules this nginx was built with (else the directive is unknown).
    if ! "$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module"; then
        module_temp_paths+="    ${m}_temp_path $NGINX_DIR/${m}_temp;"$'\n'
    fi
done
sed -e "s|@DIR@|$NGINX_DIR|g" \
    -e "s|@FAST_PORT@|$FAST_PORT|g" \
    -e "s|@SLOW_PORT@|$SLOW_PORT|g" \
    -e "s|@NGINX_PORT@|$NGINX_PORT|g" \
    -e "s|@WORKERS@|$PROXY_WORKERS|g" \
    -e "s|@NAMESPACE@|$NAMESPACE|g" \
    -e "s|@DOMAIN@|$DOMAIN|g" \
    "$TEMPLATE" |
    awk -v paths="$module_temp_paths" '/@MODULE_TEMP_PATHS@/ { printf "%s", paths; next } { print }' \
        >"$NGINX_DIR/nginx.conf"
"$NGINX" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -t >"$TMP/nginx-test.log" 2>&1 ||
    { cat "$TMP/nginx-test.log" >&2; die "nginx rejected its config"; }
"$NGINX" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -g 'daemon off;' >"$TMP/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

# haproxy: PROXY_WORKERS threads, foreground (-db), no master process: its
# PID does the work.
sed -e "s|@HAPROXY_PORT@|$HAPROXY_PORT|g" \
    -e "s|@WORKERS@|$PROXY_WORKERS|g" \
    -e "s|@FAST_PORT@|$FAST_PORT|g" \
    -e "s|@SLOW_PORT@|$SLOW_PORT|g" \
    -e "s|@NAMESPACE@|$NAMESPACE|g" \
    -e "s|@DOMAIN@|$DOMAIN|g" \
    "$HAPROXY_TEMPLATE" >"$TMP/haproxy.cfg"
"$HAPROXY" -c -f "$TMP/haproxy.cfg" >"$TMP/haproxy-test.log" 2>&1 ||
    { cat "$TMP/haproxy-test.log" >&2; die "haproxy rejected its config"; }
"$HAPROXY" -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")

wait_listening "$FAST_PID" "$FAST_PORT" "upstream (0 ms)" "$TMP/upstream-fast.log"
wait_listening "$SLOW_PID" "$SLOW_PORT" "upstream (${SLOW_DELAY_MS} ms)" "$TMP/upstream-slow.log"
wait_listening "$SLUICE_PID" "$SLUICE_PORT" sluice "$TMP/sluice.log"
wait_listening "$FAST_SC_PID" "$FAST_SC_PORT" "sidecar (0 ms)" "$TMP/sidecar-fast.log"
wait_listening "$FAST_SC_PID" "$FAST_SC_ADMIN_PORT" "sidecar (0 ms) admin" "$TMP/sidecar-fast.log"
wait_listening "$SLOW_SC_PID" "$SLOW_SC_PORT" "sidecar (${SLOW_DELAY_MS} ms)" "$TMP/sidecar-slow.log"
wait_listening "$SLOW_SC_PID" "$SLOW_SC_ADMIN_PORT" "sidecar (${SLOW_DELAY_MS} ms) admin" "$TMP/sidecar-slow.log"
wait_listening "$HYPER_PID" "$HYPER_PORT" "hyper proxy" "$TMP/hyper.log"
wait_listening "$NGINX_PID" "$NGINX_PORT" nginx "$TMP/nginx.log"
wait_listening "$HAPROXY_PID" "$HAPROXY_PORT" haproxy "$TMP/haproxy.log"

# nginx's workers: the processes that do the work (and hold the memory). The
# master forks them one after the other; wait until all PROXY_WORKERS are there.
NGINX_WORKERS=()
for _ in $(seq 50); do
    mapfile -t NGINX_WORKERS < <(children_of "$NGINX_PID")
    ((${#NGINX_WORKERS[@]} >= PROXY_WORKERS)) && break
    sleep 0.1
done
((${#NGINX_WORKERS[@]} == PROXY_WORKERS)) ||
    die "nginx has ${#NGINX_WORKERS[@]} child process(es) (${NGINX_WORKERS[*]}), not the $PROXY_WORKERS worker(s) configured"
PIDS+=("${NGINX_WORKERS[@]}") # normally stopped by their master; tracked in case they are not

# Waits until the sidecar on ADMIN_PORT reports the model ready (/readyz 200;
# it probes the upstream's readiness path), at most 10 s.
wait_sidecar_ready() {
    local admin_port=$1 name=$2 code=""
    for _ in $(seq 100); do
        code=$(http_status "$admin_port" localhost /readyz 2>/dev/null) || code="no answer"
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    die "$name: /readyz on 127.0.0.1:$admin_port answered '$code', not 200, after 10 s"
}
wait_sidecar_ready "$FAST_SC_ADMIN_PORT" "sidecar (0 ms)"
wait_sidecar_ready "$SLOW_SC_ADMIN_PORT" "sidecar (${SLOW_DELAY_MS} ms)"

# Every route answers 200 before any load is sent.
expect_200 "upstream (0 ms)" "$FAST_PORT" "$FAST_HOST"
expect_200 "upstream (${SLOW_DELAY_MS} ms)" "$SLOW_PORT" "$SLOW_HOST"
expect_200 "sluice fast" "$SLUICE_PORT" "$FAST_HOST"
expect_200 "sluice slow" "$SLUICE_PORT" "$SLOW_HOST"
expect_200 "sidecar (0 ms)" "$FAST_SC_PORT" "$FASTSC_HOST"
expect_200 "sidecar (${SLOW_DELAY_MS} ms)" "$SLOW_SC_PORT" "$SLOWSC_HOST"
expect_200 "sluice fastsc (via sidecar)" "$SLUICE_PORT" "$FASTSC_HOST"
expect_200 "sluice slowsc (via sidecar)" "$SLUICE_PORT" "$SLOWSC_HOST"
expect_200 "hyper fast" "$HYPER_PORT" "$FAST_HOST"
expect_200 "hyper slow" "$HYPER_PORT" "$SLOW_HOST"
expect_200 "nginx fast" "$NGINX_PORT" "$FAST_HOST"
expect_200 "nginx slow" "$NGINX_PORT" "$SLOW_HOST"
expect_200 "haproxy fast" "$HAPROXY_PORT" "$FAST_HOST"
expect_200 "haproxy slow" "$HAPROXY_PORT" "$SLOW_HOST"

# The tutorial's request body (the red-wine model's 11 features).
BODY="$TMP/input.json"
echo '{"instances": [[7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4]]}' >"$BODY"

# ---------------------------------------------------------------- targets

TARGETS=(direct sluice sluice+sidecar hyper nginx haproxy)

# The load tool of SCENARIO, which also decides how its output is parsed.
scenario_tool() {
    case $1 in
        A | C) echo wrk ;;
        B) echo hey ;;
    esac
}
# The upstream (bench-upstream process) serving SCENARIO: its "pod".
scenario_pod_pid() {
    case $1 in
        A) echo "$FAST_PID" ;;
        B | C) echo "$SLOW_PID" ;;
    esac
}

# Port of TARGET for SCENARIO: direct goes to the upstream of the scenario.
target_port() {
    case $2 in
        direct) if [[ $1 == A ]]; then echo "$FAST_PORT"; else echo "$SLOW_PORT"; fi ;;
        sluice | sluice+sidecar) echo "$SLUICE_PORT" ;;
        hyper) echo "$HYPER_PORT" ;;
        nginx) echo "$NGINX_PORT" ;;
        haproxy) echo "$HAPROXY_PORT" ;;
    esac
}
# Host header of TARGET for SCENARIO: the sidecar services for sluice+sidecar.
target_host() {
    case $1/$2 in
        A/sluice+sidecar) echo "$FASTSC_HOST" ;;
        [BC]/sluice+sidecar) echo "$SLOWSC_HOST" ;;
        A/*) echo "$FAST_HOST" ;;
        [BC]/*) echo "$SLOW_HOST" ;;
    esac
}
# Processes whose CPU is charged to TARGET (none for direct; for
# sluice+sidecar the gateway only, the sidecar is measured on its own).
target_cpu_pids() {
    case $1 in
        sluice | sluice+sidecar) echo "$SLUICE_PID" ;;
        hyper) echo "$HYPER_PID" ;;
        nginx) echo "$NGINX_PID ${NGINX_WORKERS[*]}" ;;
        haproxy) echo "$HAPROXY_PID" ;;
    esac
}
# Processes whose peak RSS is summed for TARGET (nginx: its workers).
target_rss_pids() {
    case $1 in
        sluice | sluice+sidecar) echo "$SLUICE_PID" ;;
        hyper) echo "$HYPER_PID" ;;
        nginx) echo "${NGINX_WORKERS[*]}" ;;
        haproxy) echo "$HAPROXY_PID" ;;
    esac
}
# The sidecar in the path of TARGET for SCENARIO (none but for sluice+sidecar).
target_sidecar_pid() {
    case $1/$2 in
        A/sluice+sidecar) echo "$FAST_SC_PID" ;;
        [BC]/sluice+sidecar) echo "$SLOW_SC_PID" ;;
    esac
}

# ---------------------------------------------------------------- load runs

# Runs the load of SCENARIO against TARGET for DUR; raw output to OUT; returns
# the tool's exit status. Bounded: killed 30 s past its duration. Run in the
# background and waited for, so that a Ctrl-C stops it at once (timeout puts
# itself in its own process group, out of reach of the terminal's SIGINT).
load() {
    local scenario=$1 target=$2 dur=$3 out=$4 port host limit pid rc=0
    port=$(target_port "$scenario" "$target")
    host=$(target_host "$scenario" "$target")
    limit=$(($(seconds "$dur") + 30))
    case $scenario in
        A | C) timeout -k 5 "$limit" wrk -t2 -c64 -d"$dur" --latency \
            -H "Host: $host" "http://127.0.0.1:$port/" >"$out" 2>&1 & ;;
        B) timeout -k 5 "$limit" hey -z "$dur" -c 5 -m POST -D "$BODY" \
            -host "$host" "http://127.0.0.1:$port/" >"$out" 2>&1 & ;;
    esac
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    unset 'PIDS[${#PIDS[@]}-1]' # finished: no longer ours to kill
    return "$rc"
}

# wrk --latency output -> "req/s p50_ms p99_ms requests errors", where errors
# counts non-2xx/3xx responses and socket errors.
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v * 0.001
            if (v ~ /ms$/) return v * 1
            if (v ~ /m$/) return v * 60000
            if (v ~ /s$/) return v * 1000
            return v * 1
        }
        BEGIN { rps = "NA"; p50 = "NA"; p99 = "NA"; n = 0; bad = 0 }
        /^ *50% / { p50 = ms($2) }
        /^ *99% / { p99 = ms($2) }
        / requests in / { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad += $NF }
        /Socket errors:/ { bad += $4 + $6 + $8 + $10 }
        END { print rps, p50, p99, n, bad }
    ' "$1"
}

# hey output -> the same five fields. requests = responses of any status;
# errors = non-200 responses plus transport errors.
parse_hey() {
    awk '
        BEGIN { rps = "NA"; p50 = "NA"; p99 = "NA"; n = 0; bad = 0; section = "" }
        /Requests\/sec:/ { rps = $2 }
        /^ *50% in / { p50 = $3 * 1000 }
        /^ *99% in / { p99 = $3 * 1000 }
        /^Status code distribution:/ { section = "status"; next }
        /^Error distribution:/ { section = "error"; next }
        /^[A-Za-z]/ { section = "" }
        section != "" && /^ *\[[0-9]+\]/ {
            k = $1; gsub(/[][]/, "", k)
            if (section == "status") { n += $2; if (k != "200") bad += $2 }
            else bad += k
        }
        END { print rps, p50, p99, n, bad }
    ' "$1"
}

# Microseconds of CPU per request: TICKS clock ticks over N requests.
us_per_req() {
    awk -v d="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }'
}

# scenario target round rps p50 p99 cpu_us rss errors other% sidecar_cpu_us sidecar_rss pod_cpu_us
RESULTS="$TMP/results.tsv"
: >"$RESULTS"

# One measured run: load, CPU delta of the target's processes, of the sidecar
# in the path and of the pod (the scenario's upstream), peak RSS.
measure() {
    local scenario=$1 target=$2 round=$3 out pids before after sc sc_before sc_after
    local pod pod_before pod_after pod_cpu="-"
    local rps p50 p99 n bad cpu="-" rss="-" sc_cpu="-" sc_rss="-" sc_text="" rc=0
    local other m_busy0 m_all0 m_busy1 m_all1 own0 own1
    out="$TMP/run-$scenario-$target-$round.txt"
    pids=$(target_cpu_pids "$target")
    sc=$(target_sidecar_pid "$scenario" "$target")
    pod=$(scenario_pod_pid "$scenario")
    # shellcheck disable=SC2086 # pids is a space-separated list
    [[ -n $pids ]] && before=$(cpu_ticks $pids)
    [[ -n $sc ]] && sc_before=$(cpu_ticks "$sc")
    pod_before=$(cpu_ticks "$pod")
    read -r m_busy0 m_all0 < <(machine_ticks)
    own0=$(own_ticks)
    load "$scenario" "$target" "$DURATION" "$out" || rc=$?
    own1=$(own_ticks)
    read -r m_busy1 m_all1 < <(machine_ticks)
    # shellcheck disable=SC2086
    [[ -n $pids ]] && after=$(cpu_ticks $pids)
    [[ -n $sc ]] && sc_after=$(cpu_ticks "$sc")
    pod_after=$(cpu_ticks "$pod")
    # CPU used by anything else on the machine during the run (another build,
    # say), as a share of all cores: a high value means a disturbed run.
    other=$(awk -v b=$((m_busy1 - m_busy0 - (own1 - own0))) -v a=$((m_all1 - m_all0)) \
        'BEGIN { v = (a > 0) ? 100 * b / a : 0; if (v < 0) v = 0; printf "%.0f", v }')
    ((rc == 0)) || log "warning: $scenario/$target round $round: load tool exited $rc (see output below)"
    if [[ $(scenario_tool "$scenario") == wrk ]]; then
        read -r rps p50 p99 n bad < <(parse_wrk "$out")
    else
        read -r rps p50 p99 n bad < <(parse_hey "$out")
    fi
    if [[ -n $pids ]] && ((n > 0)); then
        cpu=$(us_per_req $((after - before)) "$n")
    fi
    ((n > 0)) && pod_cpu=$(us_per_req $((pod_after - pod_before)) "$n")
    # shellcheck disable=SC2046 # a space-separated list of pids
    [[ $target != direct ]] && rss=$(peak_rss_mib $(target_rss_pids "$target"))
    if [[ -n $sc ]]; then
        ((n > 0)) && sc_cpu=$(us_per_req $((sc_after - sc_before)) "$n")
        sc_rss=$(peak_rss_mib "$sc")
        sc_text=$(printf '  sidecar CPU %6s µs/req  RSS %5s MiB' "$sc_cpu" "$sc_rss")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$scenario" "$target" "$round" "$rps" "$p50" "$p99" "$cpu" "$rss" "$bad" "$other" "$sc_cpu" "$sc_rss" "$pod_cpu" >>"$RESULTS"
    printf '  %s round %d/%d  %-14s  %9s req/s  p50 %7s ms  p99 %7s ms  CPU %6s µs/req  pod CPU %6s µs/req  RSS %5s MiB  requests %7s  errors %s  other CPU %s%%%s\n' \
        "$scenario" "$round" "$ROUNDS" "$target" "$rps" "$p50" "$p99" "$cpu" "$pod_cpu" "$rss" "$n" "$bad" "$other" "$sc_text"
    ((other < 15)) || log "warning: other processes used ${other}% of the machine during this run; its numbers are suspect"
    if ((rc != 0 || bad > 0)) || [[ $rps == NA ]]; then
        sed 's/^/      | /' "$out" | head -n 40
    fi
}

# Connection pools, page cache, CPU frequency: warm every path up once,
# unmeasured, before the rounds of a scenario.
warm_up() {
    local scenario=$1 target
    ((WARMUP_SECS > 0)) || return 0
    for target in "${TARGETS[@]}"; do
        load "$scenario" "$target" "$WARMUP" "$TMP/warmup-$scenario-$target.txt" || true
    done
}

SCENARIO_TITLE_A="A: wrk -t2 -c64 GET, 0 ms upstream"
SCENARIO_TITLE_B="B: hey -c 5 POST JSON, ${SLOW_DELAY_MS} ms upstream"
SCENARIO_TITLE_C="C: wrk -t2 -c64 GET, ${SLOW_DELAY_MS} ms upstream"

# Data-port workers running in the sluice process PID: worker 0 on the main
# thread, the others on threads named sluice-worker-N. (A plain thread count
# would also include tokio's blocking-pool threads, which come and go.)
sluice_workers_running() {
    local named
    named=$(cat "/proc/$1/task/"*/comm 2>/dev/null | grep -c '^sluice-worker' || true)
    echo $((named + 1))
}

log_env() {
    echo "# sluice load test"
    echo
    echo "- machine: $(nproc) cores, $(uname -sr); CLK_TCK=$CLK_TCK"
    echo "- DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP SCENARIOS=\"${SCENARIO_LIST[*]}\"; order in odd rounds: ${TARGETS[*]}; even rounds: the reverse"
    echo "- WORKERS=$WORKERS: sluice gateway connections.workers $(
        if [[ $WORKERS == 1 ]]; then echo 1; else echo "unset (one per core it may use; nproc says $NPROC)"; fi
    ) (workers running: $(sluice_workers_running "$SLUICE_PID"));" \
        "nginx worker_processes $PROXY_WORKERS (worker processes running: ${#NGINX_WORKERS[@]});" \
        "haproxy nbthread $PROXY_WORKERS (OS threads: $(ls "/proc/$HAPROXY_PID/task" | wc -l)); sidecars --workers $SIDECAR_WORKERS each"
    echo "- sluice $("$SLUICE" --version | sed 's/^sluice //'); upstreams :$FAST_PORT (0 ms, pid $FAST_PID), :$SLOW_PORT (${SLOW_DELAY_MS} ms, pid $SLOW_PID);" \
        "sluice :$SLUICE_PORT (pid $SLUICE_PID);" \
        "nginx :$NGINX_PORT (master $NGINX_PID, workers ${NGINX_WORKERS[*]}, $("$NGINX" -v 2>&1 | sed 's/.*: //'));" \
        "hyper :$HYPER_PORT (pid $HYPER_PID, workers $PROXY_WORKERS);" \
        "haproxy :$HAPROXY_PORT (pid $HAPROXY_PID, $("$HAPROXY" -v 2>&1 | head -n1 | awk '{print $3}'))"
    echo "- sidecars :$FAST_SC_PORT -> :$FAST_PORT (pid $FAST_SC_PID), :$SLOW_SC_PORT -> :$SLOW_PORT (pid $SLOW_SC_PID)," \
        "workers running: $(sluice_workers_running "$FAST_SC_PID"), $(sluice_workers_running "$SLOW_SC_PID"); gateway services fastsc, slowsc -> them"
    echo
}
log_env

for scenario in "${SCENARIO_LIST[@]}"; do
    title_var="SCENARIO_TITLE_$scenario"
    echo "${!title_var}"
    warm_up "$scenario"
    for round in $(seq "$ROUNDS"); do
        # ABBA: every other round runs the targets backwards.
        order=("${TARGETS[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((i = ${#TARGETS[@]} - 1; i >= 0; i--)); do order+=("${TARGETS[$i]}"); done
        fi
        for target in "${order[@]}"; do
            measure "$scenario" "$target" "$round"
        done
    done
    echo
done

# ---------------------------------------------------------------- summary

# Medians over rounds per (scenario, target); peak RSS as of the last round
# (VmHWM only grows, so a later scenario's row includes the earlier ones'
# peaks; the 0 ms sidecar serves A only, the 50 ms one B and C); errors summed
# over rounds. Then, per scenario, the sidecar hop's cost.
echo "## Results (median of $ROUNDS rounds of $DURATION each)"
echo
awk -F'\t' -v scenarios="${SCENARIO_LIST[*]}" -v ta="$SCENARIO_TITLE_A" -v tb="$SCENARIO_TITLE_B" -v tc="$SCENARIO_TITLE_C" '
    function median(list,    v, k, i, j, t) {
        k = split(list, v, " ")
        if (k == 0) return "NA"
        for (i = 2; i <= k; i++) {          # insertion sort, k is tiny
            t = v[i] + 0
            for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]
            v[j + 1] = t
        }
        return (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
    }
    function add(key, val) { if (val != "NA" && val != "-") L[key] = L[key] " " val }
    {
        key = $1 SUBSEP $2
        add(key SUBSEP "rps", $4); add(key SUBSEP "p50", $5); add(key SUBSEP "p99", $6)
        add(key SUBSEP "cpu", $7); add(key SUBSEP "sccpu", $11); add(key SUBSEP "podcpu", $13)
        rss[key] = $8; err[key] += $9; scrss[key] = $12
        if ($10 + 0 > other[key] + 0) other[key] = $10
    }
    function fmt(v, spec) { return (v == "NA" || v == "") ? "–" : sprintf(spec, v) }
    # a - b with a sign, or "NA" when either is missing.
    function diff(a, b) { return (a == "NA" || b == "NA") ? "NA" : sprintf("%+.2f", a - b) }
    # a / b, or "NA" when either is missing or b is 0.
    function ratio(a, b) { return (a == "NA" || b == "NA" || b + 0 == 0) ? "NA" : a / b }
    END {
        title["A"] = ta; title["B"] = tb; title["C"] = tc
        print "| scenario | target | req/s | p50 (ms) | p99 (ms) | CPU µs/req | CPU / nginx | sidecar CPU µs/req | pod CPU µs/req | pod CPU / behind nginx | peak RSS (MiB) | sidecar peak RSS (MiB) | +p50 vs direct (ms) | errors | other CPU % (max) |"
        print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        ns = split(scenarios, S, " "); nt = split("direct sluice sluice+sidecar hyper nginx haproxy", T, " ")
        for (s = 1; s <= ns; s++) {
            base = median(L[S[s] SUBSEP "direct" SUBSEP "p50"])
            ncpu = median(L[S[s] SUBSEP "nginx" SUBSEP "cpu"])
            npod = median(L[S[s] SUBSEP "nginx" SUBSEP "podcpu"])
            for (t = 1; t <= nt; t++) {
                key = S[s] SUBSEP T[t]
                p50 = median(L[key SUBSEP "p50"])
                delta = (T[t] == "direct" || p50 == "NA" || base == "NA") ? "" : sprintf("%+.2f", p50 - base)
                sc = (T[t] == "sluice+sidecar")
                cpu = median(L[key SUBSEP "cpu"])
                pod = median(L[key SUBSEP "podcpu"])
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |\n", title[S[s]], T[t],
                    fmt(median(L[key SUBSEP "rps"]), "%.0f"), fmt(p50, "%.2f"),
                    fmt(median(L[key SUBSEP "p99"]), "%.2f"), fmt(cpu, "%.1f"), fmt(ratio(cpu, ncpu), "%.2f×"),
                    (sc ? fmt(median(L[key SUBSEP "sccpu"]), "%.1f") : ""),
                    fmt(pod, "%.1f"), fmt(ratio(pod, npod), "%.2f×"),
                    (rss[key] == "-" ? "–" : rss[key]),
                    (sc ? (scrss[key] == "-" ? "–" : scrss[key]) : ""),
                    (delta == "" ? "–" : delta), err[key], other[key]
            }
        }
        # The sidecar hop: sluice+sidecar over plain sluice (medians), and the
        # sidecar process: own CPU per request, nginx CPU per request as a yardstick.
        print ""
        for (s = 1; s <= ns; s++) {
            k0 = S[s] SUBSEP "sluice"; k1 = S[s] SUBSEP "sluice+sidecar"; kn = S[s] SUBSEP "nginx"
            printf "sidecar hop (%s): %s ms p50, %s ms p99, %s µs CPU/req (nginx: %s µs/req)\n", S[s],
                diff(median(L[k1 SUBSEP "p50"]), median(L[k0 SUBSEP "p50"])),
                diff(median(L[k1 SUBSEP "p99"]), median(L[k0 SUBSEP "p99"])),
                fmt(median(L[k1 SUBSEP "sccpu"]), "%.1f"), fmt(median(L[kn SUBSEP "cpu"]), "%.1f")
        }
        # What hyper alone costs, and what sluice adds on top of it.
        print ""
        for (s = 1; s <= ns; s++) {
            ks = S[s] SUBSEP "sluice"; kh = S[s] SUBSEP "hyper"; kn = S[s] SUBSEP "nginx"
            cs = median(L[ks SUBSEP "cpu"]); ch = median(L[kh SUBSEP "cpu"]); cn = median(L[kn SUBSEP "cpu"])
            printf "hyper floor (%s): bare hyper %s µs/req (%s nginx), sluice %s µs/req (%s the floor, %s µs/req its own)\n", S[s],
                fmt(ch, "%.1f"), fmt(ratio(ch, cn), "%.2f×"), fmt(cs, "%.1f"), fmt(ratio(cs, ch), "%.2f×"),
                ((cs == "NA" || ch == "NA") ? "–" : sprintf("%+.1f", cs - ch))
        }
    }
' "$RESULTS"
echo
echo "CPU µs/req: the proxy's utime+stime per completed request (nginx: master + all workers; haproxy: its one process, all threads; sluice+sidecar: the gateway alone)."
echo "CPU / nginx: that figure over nginx's in the same scenario (the goal for sluice is at most 0.8×)."
echo "sidecar CPU µs/req, sidecar peak RSS: the sidecar in the path (A: the one before the 0 ms upstream, B and C: before the ${SLOW_DELAY_MS} ms one)."
echo "pod CPU µs/req: the scenario's upstream (A: the 0 ms one, B and C: the ${SLOW_DELAY_MS} ms one), utime+stime per completed request while this target fed it;" \
    "it also answers the sidecar's readiness probe once a second. pod CPU / behind nginx: that over the same figure in the nginx rows;" \
    "a busier pod spends less per request (more requests per wake-up), so where req/s differ (A) the ratio partly follows req/s; in B and C all targets run at about the same rate."
echo "sidecar hop: sluice+sidecar minus sluice (medians); the sidecar also probes its upstream's readiness once a second, counted in its CPU."
echo "Peak RSS: VmHWM since start (nginx: summed over its ${#NGINX_WORKERS[@]} worker(s), master excluded)." \
    "errors: non-2xx responses + socket/transport errors, all rounds."
echo "other CPU: the most CPU (share of all cores) that processes outside this benchmark took during any round; above ~15% the medians are suspect."
echo "CPU µs/req is counted in ${CLK_TCK} Hz ticks: ± one tick per run and process, which matters for scenario B's few hundred requests per run."

# Anything the proxies logged at warn or above is worth a look.
for f in "$TMP/sluice.log" "$TMP/hyper.log" "$TMP/sidecar-fast.log" "$TMP/sidecar-slow.log" "$NGINX_DIR/error.log" "$TMP/haproxy.log" \
    "$TMP/upstream-fast.log" "$TMP/upstream-slow.log"; do
    if [[ -s $f ]]; then
        echo
        echo "$(basename "$f"): $(wc -l <"$f") line(s) logged, first 5:"
        head -n 5 "$f" | sed 's/^/    /'
    fi
done
