#!/usr/bin/env bash
# bench/profile.sh - where a keep-alive request's server CPU goes, on either I/O backend: the
# server's system calls per request (strace -c) and its CPU split between kernel and user space,
# by DSO and by symbol (perf record), under W3's load (wrk -t1 -c50, 13-byte file, one worker).
#
# Usage: bench/profile.sh [--io epoll|uring] [--plain] [--seconds N]
#   --plain: W7 (plain HTTP) instead of W3 (HTTPS).
# Environment: BUILD (build). The server runs on CPU 1, wrk on CPU 0. Prints two tables; the
# perf data stays in the temporary folder with KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
IO=epoll
PLAIN=0
SECONDS_=5
while [[ $# -gt 0 ]]; do
    case $1 in
        --io) IO=$2; shift 2 ;;
        --plain) PLAIN=1; shift ;;
        --seconds) SECONDS_=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "profile.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done
BIN=$BUILD/tlsloop
for t in perf strace wrk taskset; do
    command -v $t >/dev/null || { echo "profile.sh: $t is not installed (scripts/deps.sh --bench)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "profile.sh: $BIN is missing (make)" >&2; exit 1; }

OUT=$(mktemp -d "${TMPDIR:-/tmp}/tlsloop-profile.XXXXXX")
SRV=
cleanup() {
    [[ -n $SRV ]] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null
    [[ ${KEEP:-0} == 1 ]] && echo "kept: $OUT" || rm -rf "$OUT"
}
trap cleanup EXIT

mkdir -p "$OUT/www"
printf 'hello, world\n' > "$OUT/www/index.html"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTPS=$(port); HTTP=$(port); METRICS=$(port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout "$OUT/localhost.key" -out "$OUT/localhost.pem" -days 2 2>/dev/null
taskset -c 1 "$BIN" serve --workers 1 --task-threads 1 --io "$IO" \
    --listen "127.0.0.1:$HTTPS" --listen "127.0.0.1:$HTTP,plain" \
    --cert "$OUT/localhost.pem" --key "$OUT/localhost.key" --root "$OUT/www" \
    --metrics-listen "127.0.0.1:$METRICS" --log "$OUT/server.log" &
SRV=$!
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$HTTP/" && break
    sleep 0.1
done
URL="https://127.0.0.1:$HTTPS/index.html"
[[ $PLAIN == 1 ]] && URL="http://127.0.0.1:$HTTP/index.html"
load() { taskset -c 0 wrk -t1 -c50 -d"$1"s "$URL" | awk '/requests in/ {print $1}'; }
load 1 >/dev/null   # warm-up: sessions, caches

# System calls per request: strace slows the server, so only the counts are used.
strace -c -f -p "$SRV" -o "$OUT/strace.txt" & ST=$!
sleep 0.5
REQ=$(load "$SECONDS_")
kill -INT $ST; wait $ST 2>/dev/null || true
echo "== $IO, $([[ $PLAIN == 1 ]] && echo 'W7 plain HTTP' || echo 'W3 HTTPS'): system calls per request ($REQ requests under strace)"
awk -v req="$REQ" '$1 ~ /^[0-9.]+$/ && NF >= 5 { n = $4; name = $NF; if (name != "total")
     { printf "  %-18s %8.3f\n", name, n / req; tot += n } } END { printf "  %-18s %8.3f\n", "all", tot / req }' \
    "$OUT/strace.txt" | sort -k2 -nr | head -12

# Where the CPU goes.
perf record -q -g -o "$OUT/perf.data" -p "$SRV" -- sleep "$SECONDS_" >/dev/null 2>&1 & PR=$!
sleep 0.2
REQ=$(load "$SECONDS_")
wait $PR || true
echo "== CPU by DSO ($REQ requests while recording)"
perf report -i "$OUT/perf.data" --no-children --sort dso -g none --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8
echo "== top symbols"
perf report -i "$OUT/perf.data" --no-children --sort dso,sym -g none --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
