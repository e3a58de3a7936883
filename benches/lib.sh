# Shared by the benchmark scripts (sourced, after SCRIPT is set): messages,
# a temp dir, every started process stopped by PID on exit, CPU ticks of a
# process, and the address a process bound to port 0.
#
#   SCRIPT=llm.sh; TMP_PREFIX=sluice-llm; source "$ROOT/benches/lib.sh"

CLK_TCK=$(getconf CLK_TCK)

log() { printf '%s\n' "$*" >&2; }
die() { log "$SCRIPT: $*"; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TMP_PREFIX.XXXXXX")
PIDS=() # every process the script starts; stopped on exit

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# utime+stime of PID in clock ticks, all its threads (fields 14 and 15; the
# command name may hold spaces, so cut after its closing paren).
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# Resident memory of PID, KiB.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Waits for LOGFILE to hold a line matching PATTERN and prints the value of
# KEY= in it (the address a process bound to port 0), at most 10 s.
bound_addr() {
    local pid=$1 logfile=$2 pattern=$3 key=$4 line
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { cat "$logfile" >&2; die "$pattern: the process exited"; }
        line=$(grep -m1 -- "$pattern" "$logfile" || true)
        if [[ -n $line ]]; then
            sed -E "s/.*$key=([0-9.:]+).*/\\1/" <<<"$line"
            return
        fi
        sleep 0.1
    done
    cat "$logfile" >&2
    die "no '$pattern' line after 10 s"
}

# The median of KEY=value over the lines of RUNS (a file) that hold
# " TARGET " ("-" where none has a value).
median_of() {
    local runs=$1 target=$2 key=$3
    grep " $target " "$runs" | sed -E "s/.* $key=([^ ]+).*/\\1/" | grep -v '^-$' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
total_errors() { grep " $2 " "$1" | sed -E 's/.* errors=([0-9]+).*/\1/' | awk '{ s += $1 } END { print s + 0 }'; }
