#!/usr/bin/env bash
# run.sh - what `make bench` runs: the in-process engine benchmark (engine against raw OpenSSL),
# then server RSS per idle TLS connection with 5,000 connections. BENCH_ARGS go to bench_engine
# (e.g. --quick); IDLE_CONNS sets the connection count.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
rc=0
echo "=== bench_engine ${BENCH_ARGS:-}"
"$BUILD/bench/bench_engine" ${BENCH_ARGS:-} || rc=1
echo
echo "=== idle_memory ${IDLE_CONNS:-5000}"
python3 bench/idle_memory.py "${IDLE_CONNS:-5000}" --build "$BUILD" || rc=1
exit $rc
