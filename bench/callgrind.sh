#!/usr/bin/env bash
# bench/callgrind.sh - instructions per operation of the engine against raw OpenSSL, counted by
# valgrind's callgrind: repeatable to a few parts in 10^4, where CPU time on this shared VM moves by
# a few percent. User space only: the kernel's part of a system call is not counted.
#
# bench/bench_engine/ keeps each path's server code in functions of its own (eng_* and raw_*, never
# inlined; handshakes.c and records.c); their inclusive cost divided by the operations done gives
# the figures. The counters are zeroed after the warm-up (so OpenSSL's one-time work, such as an
# RSA key's blinding and Montgomery setup, is not charged to whichever path runs first). A
# resumption workload also counts its one priming full handshake (1/HANDSHAKES of the total, on
# both paths).
#
# Usage: bench/callgrind.sh [KEY...]    (default: every workload; keys as in bench_engine --help)
# Environment: BUILD (build), HANDSHAKES (200), MIB (16), KEEP=1 keeps the callgrind.out files.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
HANDSHAKES=${HANDSHAKES:-200}
MIB=${MIB:-16}
BIN=$BUILD/bench/bench_engine
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }
[[ -x $BIN ]] || { echo "callgrind.sh: $BIN is missing (make bench-build)" >&2; exit 1; }

KEYS=("$@")
[[ ${#KEYS[@]} -gt 0 ]] || KEYS=(hs_full_rsa hs_full_ecdsa hs_resumed_tls13 hs_resumed_tls12
                                 buf_s2c buf_c2s tp_s2c tp_c2s)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/tlsloop-callgrind.XXXXXX")
[[ ${KEEP:-0} == 1 ]] || trap 'rm -rf "$OUT"' EXIT

printf '%-18s %-14s %16s %16s %12s %8s\n' workload unit engine raw engine-raw ratio
for key in "${KEYS[@]}"; do
    case $key in
        hs_resumed_tls12) ops=$((4 * HANDSHAKES + 1)); unit=Ir/handshake; fns='new|feed|free' ;;
        hs_resumed_*) ops=$((HANDSHAKES + 1)); unit=Ir/handshake; fns='new|feed|free' ;;
        hs_*) ops=$HANDSHAKES; unit=Ir/handshake; fns='new|feed|free' ;;
        buf_s2c) ops=$MIB; unit=Ir/MiB; fns=wrap_recs ;;
        buf_c2s) ops=$MIB; unit=Ir/MiB; fns=unwrap_recs ;;
        tp_s2c) ops=$MIB; unit=Ir/MiB; fns=write_recs ;;
        tp_c2s) ops=$MIB; unit=Ir/MiB; fns=read_recs ;;
        *) echo "callgrind.sh: unknown workload '$key'" >&2; exit 1 ;;
    esac
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$key.out" "$BIN" --rounds 1 \
        --handshakes "$HANDSHAKES" --mib "$MIB" --only "$key" >"$OUT/$key.txt" 2>"$OUT/$key.err" ||
        { cat "$OUT/$key.err" >&2; exit 1; }
    # Inclusive cost of bench/bench_engine/*.c's eng_<fn> and raw_<fn> (any .constprop/.isra suffix),
    # from the function list alone (--auto=no: an annotated source's "=> fn" call lines would count
    # them twice).
    callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$OUT/$key.out" 2>/dev/null |
        awk -v fns="^($fns)$" -v ops="$ops" -v key="$key" -v unit="$unit" '
            /bench_engine\/[a-z_]+\.c:(eng|raw)_/ {
                n = $1; gsub(/,/, "", n)
                f = $0; sub(/.*bench_engine\/[a-z_]+\.c:/, "", f); sub(/[ .].*/, "", f)
                path = substr(f, 1, 3); base = substr(f, 5)
                if (base ~ fns) sum[path] += n
            }
            END {
                e = sum["eng"] / ops; r = sum["raw"] / ops
                printf "%-18s %-14s %16.0f %16.0f %12.0f %8.4f\n", key, unit, e, r, e - r, r ? e / r : 0
            }'
done
[[ ${KEEP:-0} != 1 ]] || echo "callgrind outputs: $OUT"
