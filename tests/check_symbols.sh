#!/usr/bin/env bash
# tests/check_symbols.sh - the library exports what it should and nothing else.
#   1. libtlsloop.so exports only tl_* symbols (and its version node TLSLOOP_*).
#   2. every global symbol defined in libtlsloop.a is named tl_* or tli_*.
#   3. every tl_* function or object of libtlsloop.a is exported by the .so (a public name
#      without TL_API would be missing from the shared library).
# Usage: tests/check_symbols.sh [BUILD_DIR]  (default $BUILD, else build). Ends with the closing line.
set -u
cd "$(dirname "$0")/.." || exit 1
dir=${1:-${BUILD:-build}}
so=$dir/libtlsloop.so
ar=$dir/libtlsloop.a
bad=0

fail() {
    echo "check_symbols: $*"
    bad=1
}

if [[ ! -e $so || ! -e $ar ]]; then
    echo "check_symbols: $so or $ar is missing (run make)"
    echo "0 passed, 1 failed"
    exit 1
fi

# nm prints "value type name" (undefined/absolute ones may lack the value); versions as name@@VER.
exported=$(nm -D --defined-only "$so" | awk 'NF >= 2 { print $NF }' | sed 's/@.*//' | sort -u)
if [[ -z $exported ]]; then
    fail "$so exports nothing"
fi
stray=$(grep -v -E '^(tl_|TLSLOOP_)' <<<"$exported")
if [[ -n $stray ]]; then
    fail "$so exports symbols outside tl_*:"
    sed 's/^/    /' <<<"$stray"
fi

globals=$(nm -g --defined-only "$ar" | awk 'NF == 3 { print $3 }' | sort -u)
if [[ -z $globals ]]; then
    fail "$ar defines no global symbol"
fi
stray=$(grep -v -E '^(tl_|tli_)' <<<"$globals")
if [[ -n $stray ]]; then
    fail "$ar defines global symbols outside tl_* and tli_* (make them static, or prefix them):"
    nm -A -g --defined-only "$ar" | awk 'NF == 3' | grep -F -w -f <(echo "$stray") |
        sed 's/^/    /'
fi

hidden=$(comm -23 <(grep -E '^tl_' <<<"$globals") <(grep -E '^tl_' <<<"$exported"))
if [[ -n $hidden ]]; then
    fail "public names not exported by $so (missing TL_API in their declaration?):"
    sed 's/^/    /' <<<"$hidden"
fi

if [[ $bad -eq 0 ]]; then
    echo "check_symbols: $(grep -c . <<<"$exported") exported symbols, all tl_*"
    echo "1 passed, 0 failed"
    exit 0
fi
echo "0 passed, 1 failed"
exit 1
