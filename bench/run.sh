#!/usr/bin/env bash
# run.sh - what `make bench` runs: the in-process engine benchmark (engine against raw OpenSSL),
# then server RSS per idle TLS connection with 5,000 connections, then a short handshake storm
# (bench/storm.sh: p99 of established connections during a full-handshake flood, delegation off
# and on; one round of 5 s runs, about 35 s). BENCH_ARGS go to bench_engine (e.g. --quick);
# IDLE_CONNS sets the connection count; STORM_ARGS replace the storm's arguments (STORM_ARGS=" "
# for the documented 3-round run, about 2.5 minutes); STORM=0 skips the storm.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
rc=0
echo "=== bench_engine ${BENCH_ARGS:-}"
"$BUILD/bench/bench_engine" ${BENCH_ARGS:-} || rc=1
echo
echo "=== idle_memory ${IDLE_CONNS:-5000}"
python3 bench/idle_memory.py "${IDLE_CONNS:-5000}" --build "$BUILD" || rc=1
if [ "${STORM:-1}" != 0 ]; then
    storm_args=${STORM_ARGS-"--rounds 1 --duration 5 --warmup 1"}
    echo
    echo "=== storm $storm_args"
    # shellcheck disable=SC2086 # the arguments are words on purpose
    BUILD="$BUILD" bash bench/storm.sh $storm_args || rc=1
fi
exit $rc
