#!/usr/bin/env bash
# run.sh - what `make bench` runs, in order:
#   1. bench_engine: the engine against raw OpenSSL in-process (server CPU per handshake, per MiB)
#   2. bench_http: the HTTP/1.1 request parser (CPU per request head)
#   3. idle_memory: server RSS per idle TLS connection with 5,000 connections
#   4. perf: tlsloop serve against nginx on every workload of the performance issue (W1 full and
#      W2 resumed handshakes, W3/W7 keep-alive over TLS and plain HTTP, W4 bulk, W5 memory per
#      idle connection, W6 p99 under a handshake flood) and the in-process limit, one worker each
#      on CPU 0, load on CPU 1; the table and docs/perf.png go into docs/benchmarks.md; about 13
#      minutes with the default 5 rounds of 6 s (scripts/deps.sh --bench installs nginx, wrk);
#      NGINX_ARGS="--also h2o,haproxy" adds h2o and HAProxy to the same rounds (about 25 minutes)
#   5. bench_validate: tlsloop bench against wrk (keep-alive requests/s within 10%), its handshake
#      counts against the servers' own (tlsloop's /metrics, nginx's $ssl_session_reused),
#      what one generator thread can drive, and bench --h2 against h2load on h2o and nginx
#      (counts at the servers' access logs, requests/s within 10%; about 3.5 minutes)
#   6. proxy_bench: tlsloop proxy against HAProxy and stunnel (handshakes/s, keep-alive requests/s,
#      MB/s, p99, and the proxy's CPU per operation; about 5 minutes)
#   7. zerocopy: MSG_ZEROCOPY against send() for 64 KiB sends over loopback TCP (CPU per MiB of
#      sender and receiver; a few seconds)
#   8. storm: p99 of established connections during a full-handshake flood (bench/storm.sh; one
#      round of 5 s runs, about 35 s)
#   9. h2_bench: HTTP/2 serving against nginx and h2o with h2load (-c 50 -m 10 small file, the same
#      over HTTP/1.1, a 16 MiB download; about 2 minutes); H2=0 skips it, H2_ARGS replace its
#      arguments
# Knobs: BENCH_ARGS go to bench_engine (e.g. --quick); IDLE_CONNS sets the connection count;
# NGINX_ARGS replace perf's arguments (e.g. "--quick"), NGINX=0 skips
# it and bench_validate; VALIDATE=0 skips bench_validate alone; PROXY=0 skips proxy_bench,
# PROXY_ARGS replace its arguments; STORM_ARGS replace the storm's
# arguments (STORM_ARGS=" " for the documented 3-round run, about 2.5 minutes), STORM=0 skips it.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
rc=0
echo "=== bench_engine ${BENCH_ARGS:-}"
"$BUILD/bench/bench_engine" ${BENCH_ARGS:-} || rc=1
echo
echo "=== bench_http"
"$BUILD/bench/bench_http" || rc=1
echo
echo "=== idle_memory ${IDLE_CONNS:-5000}"
python3 bench/idle_memory.py "${IDLE_CONNS:-5000}" --build "$BUILD" || rc=1
if [ "${NGINX:-1}" != 0 ]; then
    echo
    echo "=== perf ${NGINX_ARGS:-}"
    if bash scripts/deps.sh --bench; then
        # shellcheck disable=SC2086 # the arguments are words on purpose
        python3 bench/perf.py --build "$BUILD" --write-docs ${NGINX_ARGS:-} || rc=1
    else
        echo "perf: skipped (nginx and wrk are not installed; see above)"
        rc=1
    fi
fi
if [ "${NGINX:-1}" != 0 ] && [ "${VALIDATE:-1}" != 0 ]; then
    echo
    echo "=== bench_validate"
    python3 bench/bench_validate.py --build "$BUILD" || rc=1
fi
if [ "${PROXY:-1}" != 0 ]; then
    echo
    echo "=== proxy_bench ${PROXY_ARGS:-}"
    # shellcheck disable=SC2086 # the arguments are words on purpose
    python3 bench/proxy_bench.py --build "$BUILD" --write-docs ${PROXY_ARGS:-} || rc=1
fi
echo
echo "=== zerocopy"
taskset -c 0 "$BUILD/bench/zerocopy" 1024 || rc=1
if [ "${STORM:-1}" != 0 ]; then
    storm_args=${STORM_ARGS-"--rounds 1 --duration 5 --warmup 1"}
    echo
    echo "=== storm $storm_args"
    # shellcheck disable=SC2086 # the arguments are words on purpose
    BUILD="$BUILD" bash bench/storm.sh $storm_args || rc=1
fi
if [ "${H2:-1}" != 0 ]; then
    echo
    echo "=== h2_bench ${H2_ARGS:-}"
    # shellcheck disable=SC2086 # the arguments are words on purpose
    python3 bench/h2_bench.py --build "$BUILD" ${H2_ARGS:-} || rc=1
fi
exit $rc
