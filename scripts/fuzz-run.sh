#!/usr/bin/env bash
# scripts/fuzz-run.sh - run libFuzzer targets built by `make fuzz-build` (build-fuzz/fuzz_*).
#
#   scripts/fuzz-run.sh SECONDS [TARGET...]          `make fuzz`: fuzz each target SECONDS
#   scripts/fuzz-run.sh --smoke SECONDS [TARGET...]  `make test`: the same on a throw-away corpus
#   scripts/fuzz-run.sh --merge 0 [TARGET...]        `make fuzz-merge`: grow the committed corpus
#
# TARGET is a name like fuzz_http (or http); none means every fuzz/fuzz_*.c. The seeds of target
# fuzz_X are fuzz/corpus/fuzz_X/ (fuzz/corpus/X/ is accepted too); an optional dictionary is
# fuzz/fuzz_X.dict. Fuzzing never writes to the committed corpus: it works on a copy,
# build-fuzz/corpus/fuzz_X/ (kept between `make fuzz` runs, so it keeps what it found) or a
# temporary directory (--smoke). Crashes go to build-fuzz/artifacts/fuzz_X/. --merge adds to
# fuzz/corpus/fuzz_X/ only the inputs of build-fuzz/corpus/fuzz_X/ that reach new coverage.
#
# Exit status 0 when every target ran clean.
set -u
cd "$(dirname "$0")/.." || exit 1
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}

mode=fuzz
case ${1:-} in
--smoke) mode=smoke; shift ;;
--merge) mode=merge; shift ;;
esac
if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [--smoke|--merge] SECONDS [TARGET...]" >&2
    exit 2
fi
secs=$1
shift

targets=()
if [[ $# -gt 0 ]]; then
    for t in "$@"; do
        [[ $t == fuzz_* ]] || t=fuzz_$t
        targets+=("$t")
    done
else
    for src in fuzz/fuzz_*.c; do
        [[ -e $src ]] && targets+=("$(basename "$src" .c)")
    done
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "fuzz: no targets (fuzz/fuzz_*.c)"
    exit 0
fi

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ulimit -c 0 2>/dev/null

seeds_of() { # target -> committed corpus directory (may not exist)
    if [[ -d fuzz/corpus/$1 || ! -d fuzz/corpus/${1#fuzz_} ]]; then
        echo "fuzz/corpus/$1"
    else
        echo "fuzz/corpus/${1#fuzz_}"
    fi
}

failed=()
for t in "${targets[@]}"; do
    bin=$FUZZ_BUILD/$t
    if [[ ! -x $bin ]]; then
        echo "fuzz: $bin is not built (make fuzz-build)" >&2
        failed+=("$t")
        continue
    fi
    seeds=$(seeds_of "$t")
    if [[ $mode == merge ]]; then
        work=$FUZZ_BUILD/corpus/$t
        mkdir -p "$seeds" "$work"
        before=$(find "$seeds" -type f | wc -l)
        if ! "$bin" -merge=1 "$seeds" "$work"; then
            failed+=("$t")
        fi
        echo "fuzz: $t: $seeds has $(find "$seeds" -type f | wc -l) inputs (was $before)"
        continue
    fi

    if [[ $mode == smoke ]]; then
        work=$(mktemp -d "${TMPDIR:-/tmp}/tlsloop-fuzz-$t.XXXXXX")
    else
        work=$FUZZ_BUILD/corpus/$t
        mkdir -p "$work"
    fi
    if [[ -d $seeds ]]; then
        cp -n -r "$seeds"/. "$work"/ 2>/dev/null || true
    fi
    artifacts=$FUZZ_BUILD/artifacts/$t
    mkdir -p "$artifacts"
    opts=(-max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$artifacts/")
    [[ ! -f fuzz/$t.dict ]] || opts+=(-dict="fuzz/$t.dict")
    echo "fuzz: $t for ${secs}s on $work ($(find "$work" -type f | wc -l) inputs)"
    "$bin" "${opts[@]}" "$work"
    rc=$?
    if [[ $mode == smoke ]]; then
        rm -rf "$work"
    fi
    if [[ $rc -ne 0 ]]; then
        echo "fuzz: $t FAILED (exit status $rc); inputs in $artifacts/:"
        ls -l "$artifacts" 2>/dev/null | tail -n +2
        echo "fuzz: reproduce with: $bin $artifacts/<file>"
        failed+=("$t")
    else
        echo "fuzz: $t ok"
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: failed: ${failed[*]}"
    exit 1
fi
exit 0
