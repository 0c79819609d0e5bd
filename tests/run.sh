#!/usr/bin/env bash
# tests/run.sh - tlsloop's whole test suite; `make test` runs it after building build/.
#
# Phases (TEST_PHASES, default "normal normal-uring asan asan-uring fuzz checks"), one after
# another, never in parallel:
#   normal        build/: every tests/unit/<layer>/test_*.c binary, every tests/e2e/*.sh|*.py,
#                 every example (each loop on the default backend: epoll)
#   normal-uring  build/ again with TLSLOOP_IO=uring (every loop made with the default runs on
#                 io_uring): the unit tests of the layers in URING_UNIT (loop conn server http
#                 httpd proxy client), the e2e scripts matching URING_E2E (test_serve_*
#                 test_server_* test_proxy_* test_get test_get_h2 test_ocsp test_examples
#                 test_scale_out test_session_store), every example. Left to the epoll pass: the
#                 TLS engine and util units (no I/O), test_tls_conformance,
#                 test_http_conformance and test_bench (the same server code paths, and the time
#                 budget), test_io_backend and test_chromium (they choose the backend with
#                 --io themselves, in every phase). Where io_uring is refused
#                 the phase says so and runs on epoll. Its programs run URING_JOBS (3) at a
#                 time, the e2e scripts (the longest) first, each reported when it ends: most
#                 of their time is spent waiting on deadlines (their times do not grow side by
#                 side), and two passes one program at a time took `make test` past 10 minutes
#                 (680 s against 338 s).
#   asan          the normal phase, built again into build-asan/ with ASan+UBSan (make SAN=1
#                 BUILD=build-asan)
#   asan-uring    the normal-uring phase on build-asan/
#   fuzz          each fuzz/fuzz_*.c target (build-fuzz/) for a few seconds over its seed corpus
#   checks        every tests/check_*.sh (symbols, install) against build/
# Output and failures carry the phase's name: "[normal-uring] tests/e2e/test_get.py: 1 failed".
#
# Counting: a unit test binary and a check script print "N passed, N failed" as their last such
# line; those numbers are added. A binary that exits non-zero after a line with 0 failed (a leak
# found at exit, say) adds 1 failed; one that dies, times out, or prints no such line counts as
# 1 failed. An e2e script counts like a unit test when it prints the line, else as 1 test by its exit
# status. An example and a fuzz target count as 1 test: passed when it exits 0. The last line is the
# sum: "N passed, N failed". The exit status is 1 when anything failed.
#
# Every program runs from the repository root under `timeout`, with stdin from /dev/null and these
# in its environment: TLSLOOP_PHASE (normal|asan, also in the -uring phases), TLSLOOP_BUILD (its
# build directory), TLSLOOP_BIN (absolute path of that build's tlsloop program), TLSLOOP_ROOT (the
# repository), and TLSLOOP_IO=uring in the -uring phases.
#
# Knobs (environment): TEST_PHASES, URING_UNIT, URING_E2E, URING_JOBS (3), BUILD, ASAN_BUILD,
# FUZZ_BUILD, UNIT_TIMEOUT (300), E2E_TIMEOUT (300), EXAMPLE_TIMEOUT (60), CHECK_TIMEOUT (600),
# FUZZ_SMOKE_SECONDS (20 per target), FUZZ_SMOKE_BUDGET (150 s for all targets together), MAKE,
# E2E_JOBS (3: the normal and asan phases run three programs at a time, as the -uring phases run
# URING_JOBS: the e2e scripts first, LONG_E2E's before the others, then the unit tests beside
# them), FUZZ_JOBS (2 fuzz targets at a time).
# A TLSLOOP_IO of the caller's is not passed on: the normal and asan phases run on epoll.
set -u
cd "$(dirname "$0")/.." || exit 1
unset TLSLOOP_IO # the -uring phases set it
ROOT=$PWD

MAKE=${MAKE:-make}
BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
PHASES=${TEST_PHASES:-normal normal-uring asan asan-uring fuzz checks}
URING_UNIT=${URING_UNIT:-loop conn server http httpd proxy client}
URING_E2E=${URING_E2E:-test_serve_* test_server_* test_proxy_* test_get test_get_h2 test_ocsp test_examples test_scale_out test_session_store}
URING_JOBS=${URING_JOBS:-3}
E2E_JOBS=${E2E_JOBS:-3}
# The e2e scripts that take longest (most of it waiting on deadlines), started first in a phase.
LONG_E2E=${LONG_E2E:-test_ocsp test_acme test_session_store test_chromium test_scale_out test_serve_h2 test_server_tls}
FUZZ_JOBS=${FUZZ_JOBS:-2}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
E2E_TIMEOUT=${E2E_TIMEOUT:-300}
EXAMPLE_TIMEOUT=${EXAMPLE_TIMEOUT:-60}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-600}
FUZZ_SMOKE_SECONDS=${FUZZ_SMOKE_SECONDS:-20}
FUZZ_SMOKE_BUDGET=${FUZZ_SMOKE_BUDGET:-150}
# Lines of a program's output shown when it passed (all of it, up to 2000 lines, when it failed).
SHOW_LINES=${SHOW_LINES:-60}
export MAKE BUILD FUZZ_BUILD

ulimit -c 0 2>/dev/null # abort_on_error must not fill the disk with cores

# A sub-make builds in parallel; under `make -jN` it shares the jobserver instead.
JOBS=()
if [[ " ${MAKEFLAGS:-} " != *jobserver* && " ${MAKEFLAGS:-} " != *" -j"* ]]; then
    JOBS=(-j"$(nproc 2>/dev/null || echo 2)")
fi
submake() { "$MAKE" --no-print-directory "${JOBS[@]}" "$@"; }

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/tlsloop-tests.XXXXXX")
trap 'rm -rf "$LOGDIR"' EXIT

total_pass=0
total_fail=0
failures=()
START=$SECONDS
CLOSING_RE='^([A-Za-z_-]+: )?[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?[[:space:]]*$'

record() { # phase name passed failed [why]
    total_pass=$((total_pass + $3))
    total_fail=$((total_fail + $4))
    if [[ $4 -gt 0 ]]; then
        failures+=("[$1] $2: $4 failed${5:+ ($5)}")
    fi
}

show_log() { # log passed?
    local n
    n=$(wc -l <"$1")
    local max=$SHOW_LINES
    [[ $2 == 1 ]] || max=2000
    if [[ $n -le $max ]]; then
        sed 's/^/    /' "$1"
    else
        echo "    ... ($((n - max)) earlier lines not shown)"
        tail -n "$max" "$1" | sed 's/^/    /'
    fi
}

# run_one PHASE KIND TIMEOUT LABEL CMD...
# KIND: unit (needs the closing line), script (closing line optional), single (exit status only).
# With PAR above 1 (the -uring phases) up to PAR programs run at once; each one's output and
# verdict are printed whole when it ends (run_drain waits for the rest).
JOB_N=0
JOB_PIDS=()
JOB_ARGS=()
run_one() {
    local phase=$1 kind=$2 limit=$3 label=$4
    shift 4
    local id=$((JOB_N++)) shown=0
    if [[ ${PAR:-1} -le 1 ]]; then
        echo "--- [$phase] $label" # now, so a hang shows which program hangs
        shown=1
    fi
    # (the subshell keeps bash's "Aborted"-style job notices out of the output)
    (
        t0=$(date +%s)
        timeout -k 10 "$limit" "$@" </dev/null >"$LOGDIR/job$id.log" 2>&1
        echo "$? $(($(date +%s) - t0))" >"$LOGDIR/job$id.rc"
    ) 2>/dev/null &
    JOB_PIDS+=($!)
    JOB_ARGS+=("$phase $kind $limit $id $shown $label")
    while [[ ${#JOB_PIDS[@]} -ge ${PAR:-1} ]]; do
        run_finish_one
    done
}

run_drain() {
    while [[ ${#JOB_PIDS[@]} -gt 0 ]]; do
        run_finish_one
    done
}

# Wait for the first of the running programs to end (the only one, when one at a time), report it.
run_finish_one() {
    local phase kind limit id shown label pid i=0
    if [[ ${#JOB_PIDS[@]} -gt 1 ]]; then
        wait -n -p pid "${JOB_PIDS[@]}" 2>/dev/null
        while [[ ${JOB_PIDS[i]} != "$pid" ]]; do
            i=$((i + 1))
        done
    else
        wait "${JOB_PIDS[0]}" 2>/dev/null
    fi
    read -r phase kind limit id shown label <<<"${JOB_ARGS[i]}"
    JOB_PIDS=("${JOB_PIDS[@]:0:i}" "${JOB_PIDS[@]:i+1}")
    JOB_ARGS=("${JOB_ARGS[@]:0:i}" "${JOB_ARGS[@]:i+1}")
    local log=$LOGDIR/job$id.log rc=1 secs=0
    [[ -s $LOGDIR/job$id.rc ]] && read -r rc secs <"$LOGDIR/job$id.rc"
    [[ $shown == 1 ]] || echo "--- [$phase] $label"
    local why="" p=0 f=0 line=""
    if [[ $kind != single ]]; then
        line=$(grep -E "$CLOSING_RE" "$log" | tail -n 1)
    fi
    if [[ -n $line ]]; then
        p=$(sed -E 's/^([A-Za-z_-]+: )?([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
        f=$(sed -E 's/^([A-Za-z_-]+: )?([0-9]+) passed, ([0-9]+) failed.*/\3/' <<<"$line")
        if [[ $rc -ne 0 && $f -eq 0 ]]; then
            f=1
        fi
    elif [[ $kind == unit ]]; then
        f=1
        [[ $rc -ne 0 ]] || why="exited 0 without the closing 'N passed, N failed' line"
    elif [[ $rc -eq 0 ]]; then
        p=1
    else
        f=1
    fi
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        why="timed out after ${limit}s"
    elif [[ $rc -gt 128 ]]; then
        why="killed by signal $((rc - 128))"
    elif [[ $rc -ne 0 && -z $why ]]; then
        why="exit status $rc"
    fi
    show_log "$log" $((f == 0))
    if [[ $f -eq 0 ]]; then
        echo "    => ok: $p passed, 0 failed (${secs}s)"
    else
        echo "    => FAIL: $p passed, $f failed${why:+, $why} (${secs}s)"
    fi
    rm -f "$log" "$LOGDIR/job$id.rc"
    record "$phase" "$label" "$p" "$f" "$why"
}

# The suite of one build directory: unit tests, e2e scripts, examples. With uring, only those
# of URING_UNIT's layers and URING_E2E's scripts, and with TLSLOOP_IO=uring in the environment.
run_suite() { # label builddir [uring]
    local label=$1 dir=$2 uring=${3:-} src name layer
    local BUILD=$dir # for scripts that read BUILD
    export BUILD TLSLOOP_PHASE=${label%-uring} TLSLOOP_BUILD=$dir TLSLOOP_BIN=$ROOT/$dir/tlsloop TLSLOOP_ROOT=$ROOT
    local PAR=$E2E_JOBS
    if [[ -n $uring ]]; then
        export TLSLOOP_IO=uring
        PAR=$URING_JOBS
        uring_note
    fi
    local e2e=() long=() pat
    for src in tests/e2e/*.sh tests/e2e/*.py; do
        [[ -e $src ]] || continue
        name=$(basename "$src")
        name=${name%.*}
        if [[ -n $uring ]]; then
            local want=0
            for pat in $URING_E2E; do
                # shellcheck disable=SC2053 # a glob on purpose
                [[ $name == $pat ]] && want=1 && break
            done
            [[ $want == 1 ]] || continue
        fi
        # The longest scripts start first, so that none of them is left running alone at the end.
        if [[ " $LONG_E2E " == *" $name "* ]]; then
            long+=("$src")
        else
            e2e+=("$src")
        fi
    done
    run_e2e "$label" "${long[@]}" "${e2e[@]}"
    run_units "$label" "$dir" "$uring" # side by side with the e2e scripts still running
    for src in examples/*.c; do
        [[ -e $src ]] || continue
        # A server example runs until stopped; an e2e script drives it with real clients.
        # (its header comment may wrap the words: the lines are joined before the search)
        head -c 4000 "$src" | tr -s '\n*' '  ' | grep -q 'Tested by  *tests/e2e/' && continue
        name=$(basename "$src" .c)
        run_one "$label" single "$EXAMPLE_TIMEOUT" "$dir/examples/$name" "$dir/examples/$name"
    done
    run_drain
    unset TLSLOOP_PHASE TLSLOOP_BUILD TLSLOOP_BIN TLSLOOP_IO
}

run_units() { # label builddir uring
    local label=$1 dir=$2 uring=$3 src name layer
    for src in tests/unit/*/test_*.c; do
        [[ -e $src ]] || continue
        name=${src#tests/unit/}
        name=${name%.c}
        layer=${name%%/*}
        [[ -z $uring || " $URING_UNIT " == *" $layer "* ]] || continue
        run_one "$label" unit "$UNIT_TIMEOUT" "$dir/tests/$name" "$dir/tests/$name"
    done
}

# io_uring refused on this machine (io_uring_disabled, a seccomp filter): the uring phases run
# on epoll, and say so rather than pass as if they had tested io_uring.
uring_note() {
    if ! python3 -c 'import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True); libc.syscall.restype = ctypes.c_long
fd = libc.syscall(ctypes.c_long(425), ctypes.c_long(2), ctypes.create_string_buffer(120))
sys.exit(1) if fd < 0 else os.close(fd)' 2>/dev/null; then
        echo "    NOTE: io_uring is refused on this machine: TLSLOOP_IO=uring falls back to epoll,"
        echo "    so this phase repeats the epoll tests (tests/e2e/test_io_backend.py checks that)"
    fi
}

run_e2e() { # label scripts...
    local label=$1 src
    shift
    for src in "$@"; do
        case $src in
        *.sh) run_one "$label" script "$E2E_TIMEOUT" "$src" bash "$src" ;;
        *.py) run_one "$label" script "$E2E_TIMEOUT" "$src" python3 "$src" ;;
        esac
    done
}

build_phase() { # phase make-args...
    local phase=$1
    shift
    echo "=== [$phase] build: make $*"
    if ! submake "$@" >"$LOGDIR/build.log" 2>&1; then
        show_log "$LOGDIR/build.log" 0
        echo "    => FAIL: build failed; phase $phase skipped"
        record "$phase" "build (make $*)" 0 1 "build failed"
        return 1
    fi
    grep -v '^  [A-Z]* ' "$LOGDIR/build.log" | sed 's/^/    /' # warnings and notes, if any
    return 0
}

phase_normal() {
    echo "=== [normal] $BUILD/"
    build_phase normal BUILD="$BUILD" build-tests || return
    run_suite normal "$BUILD"
}

phase_normal_uring() {
    echo "=== [normal-uring] $BUILD/ with TLSLOOP_IO=uring"
    build_phase normal-uring BUILD="$BUILD" build-tests || return
    run_suite normal-uring "$BUILD" uring
}

phase_asan() { # [uring]
    local label=asan${1:+-uring}
    echo "=== [$label] $ASAN_BUILD/ (ASan + UBSan)${1:+ with TLSLOOP_IO=uring}"
    build_phase "$label" BUILD="$ASAN_BUILD" SAN=1 build-tests || return
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    run_suite "$label" "$ASAN_BUILD" "${1:-}"
    unset ASAN_OPTIONS UBSAN_OPTIONS
}

phase_fuzz() {
    local targets=() src
    for src in fuzz/fuzz_*.c; do
        [[ -e $src ]] && targets+=("$(basename "$src" .c)")
    done
    echo "=== [fuzz] ${#targets[@]} target(s)"
    [[ ${#targets[@]} -gt 0 ]] || return
    build_phase fuzz FUZZ_BUILD="$FUZZ_BUILD" fuzz-build || return
    # Share the budget, at least 5 s and at most FUZZ_SMOKE_SECONDS a target.
    local secs=$((FUZZ_SMOKE_BUDGET / ${#targets[@]}))
    [[ $secs -le $FUZZ_SMOKE_SECONDS ]] || secs=$FUZZ_SMOKE_SECONDS
    [[ $secs -ge 5 ]] || secs=5
    local t PAR=$FUZZ_JOBS
    for t in "${targets[@]}"; do
        run_one fuzz single $((secs + 120)) "$FUZZ_BUILD/$t (${secs}s)" \
            bash scripts/fuzz-run.sh --smoke "$secs" "$t"
    done
    run_drain
}

phase_checks() {
    echo "=== [checks] against $BUILD/"
    local src
    for src in tests/check_*.sh; do
        [[ -e $src ]] || continue
        run_one checks unit "$CHECK_TIMEOUT" "$src" bash "$src"
    done
}

for phase in $PHASES; do
    t0=$SECONDS
    case $phase in
    normal) phase_normal ;;
    normal-uring) phase_normal_uring ;;
    asan) phase_asan ;;
    asan-uring) phase_asan uring ;;
    fuzz) phase_fuzz ;;
    checks) phase_checks ;;
    *)
        echo "tests/run.sh: unknown phase '$phase' (normal normal-uring asan asan-uring fuzz checks)"
        record "$phase" "unknown phase" 0 1
        ;;
    esac
    echo "=== [$phase] done in $((SECONDS - t0))s"
done

echo
echo "=== summary ($((SECONDS - START))s)"
if [[ ${#failures[@]} -gt 0 ]]; then
    echo "failed:"
    printf '  %s\n' "${failures[@]}"
fi
echo "$total_pass passed, $total_fail failed"
[[ $total_fail -eq 0 ]]
