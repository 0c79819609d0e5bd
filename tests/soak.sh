#!/usr/bin/env bash
# soak.sh - the long, heavy versions of the tests (make soak): every unit test with SOAK=1 (counts
# multiplied by SOAK_SCALE, default 50), normal and ASan builds; the example servers holding
# 10,000 TLS connections from a separate client process; tlsloop serve sending 1 GiB to a slow
# reader; tlsloop proxy moving 1 GiB each way past slow readers; three instances behind HAProxy
# with 1,000 reconnects and 20 s of load through an upgrade and a restart, and with one memcached
# for all, 1,000 TLS 1.3 and 1,000 TLS 1.2 session-ID reconnects through two key rotations and a
# store killed mid-run (test_scale_out.py);
# then every fuzz target for
# SOAK_FUZZ_SECONDS (default 600) each; with TESTSSL=1, testssl.sh against tlsloop serve. Ends
# with one "N passed, N failed" line.
set -u
cd "$(dirname "$0")/.."
export SOAK=1 SOAK_SCALE=${SOAK_SCALE:-50}
passed=0 failed=0
# Add a run's closing line to the totals; a run with no closing line, or that exited non-zero
# while reporting no failure, counts one failure more.
add() {
    local line p f
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
    if [ -z "$line" ]; then
        failed=$((failed + 1))
        return
    fi
    p=${line%% passed*}
    f=${line#* passed, }
    f=${f%% failed*}
    [ "$2" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    passed=$((passed + p))
    failed=$((failed + f))
}
for build in build build-asan; do
    if [ "$build" = build-asan ]; then
        make -s BUILD=build-asan SAN=1 build-tests >/dev/null || { failed=$((failed + 1)); continue; }
    else
        make -s build-tests >/dev/null || { failed=$((failed + 1)); continue; }
    fi
    for t in "$build"/tests/*/test_*; do
        echo "--- [soak $build] $t"
        log=$(mktemp)
        timeout 3600 "$t" >"$log" 2>&1
        rc=$?
        tail -n 20 "$log"
        add "$log" "$rc"
        rm -f "$log"
    done
done
# 10,000 idle TLS connections held by a client in its own process (python), then closed.
echo "--- [soak] tests/e2e/test_examples.py with 10,000 connections"
log=$(mktemp)
IDLE_CONNS=10000 TLSLOOP_BUILD=build timeout 1800 prlimit --nofile=20000 python3 tests/e2e/test_examples.py >"$log" 2>&1
rc=$?
tail -n 20 "$log"
add "$log" "$rc"
rm -f "$log"
# tlsloop serve: a 1 GiB file to a slow reader with the server's memory bounded (in
# test_serve_ops.py; the rest of its e2e tests at full size beside it).
for t in tests/e2e/test_serve_*.py; do
    echo "--- [soak] $t"
    log=$(mktemp)
    TLSLOOP_BIN=build/tlsloop timeout 1800 python3 "$t" >"$log" 2>&1
    rc=$?
    tail -n 30 "$log"
    add "$log" "$rc"
    rm -f "$log"
done
# Three instances behind HAProxy: 1,000 reconnects resumed across instances, 20 s of keep-alive and
# handshake load while one is upgraded by SIGUSR2 and one restarted on its activated sockets;
# then the same three with a shared session store, two key rotations and the store killed.
echo "--- [soak] tests/e2e/test_scale_out.py"
log=$(mktemp)
TLSLOOP_BIN=build/tlsloop timeout 1800 python3 tests/e2e/test_scale_out.py >"$log" 2>&1
rc=$?
tail -n 30 "$log"
add "$log" "$rc"
rm -f "$log"
# tlsloop proxy: 1 GiB each way through it with a slow reader on either side, its memory bounded
# (in test_proxy_stream.py; the rest of its e2e tests beside it).
for t in tests/e2e/test_proxy_*.py; do
    echo "--- [soak] $t"
    log=$(mktemp)
    timeout 3600 python3 "$t" >"$log" 2>&1
    rc=$?
    tail -n 30 "$log"
    add "$log" "$rc"
    rm -f "$log"
done
# Opt-in (TESTSSL=1): testssl.sh, an independent scanner, against tlsloop serve; it fails on
# any finding of severity HIGH or CRITICAL. `bash scripts/deps.sh --soak` installs it.
if [ "${TESTSSL:-0}" = 1 ]; then
    echo "--- [soak] testssl.sh against tlsloop serve"
    if bash tests/testssl.sh; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
fi
if ls fuzz/fuzz_*.c >/dev/null 2>&1; then
    echo "--- [soak] fuzz, ${SOAK_FUZZ_SECONDS:-600} s per target"
    if make -s fuzz FUZZ_SECONDS="${SOAK_FUZZ_SECONDS:-600}"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
