#!/usr/bin/env bash
# storm.sh - does a handshake storm stall established connections? (issue 4; docs/benchmarks.md,
# "Handshake storm"). examples/echo_server with one worker, pinned with its task threads to CPU 0,
# against bench/storm (build/bench/storm) pinned to CPU 1, on loopback. For each server mode,
# --delegate-handshakes off, on and auto: a baseline (the steady client alone) and a storm (the
# steady client while F connections do full RSA-2048 handshakes back to back: RSA makes the
# server's side of a handshake expensive, so the storm is real). Rounds rotate the modes (each
# goes first in turn) with a fresh server per run; the table gives medians and [min-max] over
# the rounds.
#
# usage: bench/storm.sh [--rounds N] [--duration S] [--warmup S] [--flood F] [--rate R]
#                       [--conns M] [--flood-nice N] [--modes "off on auto"]
#   defaults: 3 rounds, 10 s measured after 2 s of warm-up, F=128 (one worker is saturated, at
#   ~100% CPU, from F=16 on), 200 requests/s on 20 connections (100 ms apart on each), flood thread at nice 0.
#   The steady client runs under SCHED_FIFO where permitted (root or CAP_SYS_NICE; otherwise it
#   says so and runs normally): it shares CPU 1 with the flood, and its own scheduling delay must
#   not count as the server's latency.
#   BUILD selects the build directory (default build). About (warmup + duration + 2) s per run,
#   2 runs per mode and round: 3.5 minutes with the defaults.
# Exit status: 0 when every run was clean (no lost request, no error, nothing resumed), else 1.
set -u
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
ROUNDS=3 DURATION=10 WARMUP=2 FLOOD=128 RATE=200 CONNS=20 FLOOD_NICE=0 MODES="off on auto"
usage() {
    echo "usage: $0 [--rounds N] [--duration S] [--warmup S] [--flood F] [--rate R]" \
        "[--conns M] [--flood-nice N] [--modes \"off on auto\"]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case "$1" in
    --rounds) ROUNDS=$2 ;;
    --duration) DURATION=$2 ;;
    --warmup) WARMUP=$2 ;;
    --flood) FLOOD=$2 ;;
    --rate) RATE=$2 ;;
    --conns) CONNS=$2 ;;
    --flood-nice) FLOOD_NICE=$2 ;;
    --modes) MODES=$2 ;;
    *) usage ;;
    esac
    shift 2
done

SERVER=$BUILD/examples/echo_server
GEN=$BUILD/bench/storm
for b in "$SERVER" "$GEN"; do
    [ -x "$b" ] || { echo "storm.sh: $b is missing (make build-tests)" >&2; exit 2; }
done

# Pinning is the point (server and task threads share CPU 0; the load has CPU 1), but a machine
# with one CPU or without taskset still runs, unpinned, and says so.
PIN_SERVER=() PIN_GEN=() PINNED="server on CPU 0, generator on CPU 1"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 0) PIN_GEN=(taskset -c 1)
else
    PINNED="NOT pinned (taskset missing or fewer than 2 CPUs): figures are not comparable"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tlsloop-storm.XXXXXX")
SERVER_PID=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/key.pem" -out "$TMP/cert.pem" \
        -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost >/dev/null 2>&1; then
    echo "storm.sh: openssl could not make an RSA-2048 certificate" >&2
    exit 2
fi

# One run: a fresh server in MODE, the generator with FLOOD_N flood connections. Appends the
# generator's result line, prefixed with the mode and the load, to $TMP/results.
run_one() {
    local mode=$1 load=$2 flood_n=$3 out="$TMP/server.out" err="$TMP/server.err"
    : >"$out"
    "${PIN_SERVER[@]}" "$SERVER" --quiet --workers 1 --listen 127.0.0.1:0 --cert "$TMP/cert.pem" \
        --key "$TMP/key.pem" --delegate-handshakes "$mode" >"$out" 2>"$err" &
    SERVER_PID=$!
    local port=''
    for _ in $(seq 100); do
        port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$out")
        [ -n "$port" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "storm.sh: the server did not start: $(head -c 500 "$err")" >&2
        return 1
    fi
    # Bounded: warm-up, window, drain (5 s at most), connecting (15 s at most), and slack.
    local limit rc line
    limit=$(awk -v w="$WARMUP" -v d="$DURATION" 'BEGIN { printf "%d", w + d + 30 }')
    line=$(timeout -k 5 "$limit" "${PIN_GEN[@]}" "$GEN" --port "$port" --flood "$flood_n" \
        --conns "$CONNS" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
        --flood-nice "$FLOOD_NICE" --server-pid "$SERVER_PID" --steady-fifo 2>"$TMP/gen.err")
    rc=$?
    kill -TERM "$SERVER_PID" 2>/dev/null
    # The server drains (deadline 10 s by default); do not wait longer than that.
    for _ in $(seq 120); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
    # The server logs failed handshakes at info level: those of the flood connections aborted when
    # the generator stops are expected; warnings and errors are not.
    if grep -q '\[\(warn\|error\)\]' "$err"; then
        echo "storm.sh: $mode/$load: the server logged:" >&2
        grep '\[\(warn\|error\)\]' "$err" | head -5 >&2
    fi
    [ -s "$TMP/gen.err" ] && sed "s/^/storm.sh: $mode\/$load: /" "$TMP/gen.err" | head -8 >&2
    if [ -z "$line" ]; then
        echo "storm.sh: $mode/$load: no result (exit status $rc)" >&2
        return 1
    fi
    echo "mode=$mode load=$load rc=$rc $line" | tee -a "$TMP/results"
}

echo "storm: echo_server --workers 1 (RSA-2048, TLS 1.3), $PINNED"
echo "storm: $ROUNDS rounds x {$MODES} x {baseline, storm}; flood=$FLOOD, rate=$RATE/s on" \
    "$CONNS connections, ${DURATION}s measured after ${WARMUP}s warm-up, flood nice $FLOOD_NICE"
failed=0
for r in $(seq "$ROUNDS"); do
    # The modes rotate: each goes first in turn.
    read -r -a m <<<"$MODES"
    k=$(((r - 1) % ${#m[@]}))
    order="${m[*]:k} ${m[*]:0:k}"
    for mode in $order; do
        run_one "$mode" baseline 0 || failed=1
        run_one "$mode" storm "$FLOOD" || failed=1
    done
done

[ -s "$TMP/results" ] || { echo "storm.sh: no results" >&2; exit 1; }
MODES="$MODES" python3 - "$TMP/results" <<'EOF' || failed=1
import os, statistics, sys
MODES = os.environ["MODES"].split()

rows = []
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
    rows.append(kv)

def col(sel, key):
    return [float(r[key]) for r in sel if key in r]

def fmt(vals, digits):
    if not vals:
        return "-"
    m = statistics.median(vals)
    if len(vals) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{min(vals):.{digits}f}-{max(vals):.{digits}f}]"

cols = [("p50 ms", "p50_ms", 3), ("p99 ms", "p99_ms", 2), ("p99.9 ms", "p999_ms", 2),
        ("max ms", "max_ms", 1), ("uncorr. p99 ms", "uncorr_p99_ms", 2),
        ("flood hs/s", "flood_hs_per_s", 0), ("server us/hs", "server_us_per_hs", 0),
        ("server CPU %", "server_cpu_pct", 0), ("client wake p99 ms", "wake_p99_ms", 2),
        ("others CPU %", "others_cpu_pct", 0)]
print()
print("| mode | load | runs | " + " | ".join(c[0] for c in cols) + " |")
print("|---" * (len(cols) + 3) + "|")
bad = False
for load in ("baseline", "storm"):
    for mode in MODES:
        sel = [r for r in rows if r["mode"] == mode and r["load"] == load]
        if not sel:
            continue
        cells = [fmt(col(sel, k), d) for _, k, d in cols]
        print(f"| {mode} | {load} | {len(sel)} | " + " | ".join(cells) + " |")
print()
for mode in MODES:
    sel = [r for r in rows if r["mode"] == mode]
    lost = sum(int(r.get("lost", 0)) for r in sel)
    errs = sum(int(r.get("flood_errors", 0)) + int(r.get("steady_errors", 0)) for r in sel)
    resumed = sum(int(r.get("resumed", 0)) for r in sel)
    nonzero = sum(1 for r in sel if r.get("rc") != "0")
    print(f"delegate-handshakes {mode}: lost requests {lost}, errors {errs}, resumed {resumed}, "
          f"runs not clean {nonzero}")
    bad |= bool(lost or errs or resumed or nonzero)
storm = {m: col([r for r in rows if r["mode"] == m and r["load"] == "storm"], "p99_ms")
         for m in MODES}
# A stall longer than a steady connection's interval (100 ms by default) is what a median of
# short rounds can hide: count the runs that had one.
for m in MODES:
    sel = [r for r in rows if r["mode"] == m and r["load"] == "storm"]
    stalls = [float(r["max_ms"]) for r in sel if float(r.get("max_ms", 0)) > 100]
    if stalls:
        print(f"delegate-handshakes {m}: {len(stalls)} of {len(sel)} storm runs stalled "
              f"established connections for over 100 ms (max {max(stalls):.0f} ms)")
p99s = {m: statistics.median(v) for m, v in storm.items() if v}
if p99s:
    print("p99 during the storm (median of runs): " +
          ", ".join(f"{m} {v:.2f} ms" for m, v in p99s.items()) +
          f"; lowest: delegate-handshakes {min(p99s, key=p99s.get)}")
sys.exit(1 if bad else 0)
EOF
exit $failed
