#!/usr/bin/env bash
# scripts/deps.sh - make sure the Debian packages that tlsloop's build, tests and fuzzers need are
# installed. Quiet (one line) when they are. As root it installs what is missing with apt-get;
# otherwise it prints the exact command to run and exits 1.
#
# The Makefile runs it through a stamp file (build/.deps-ok): again only after `make clean` or when
# this script changes. TLSLOOP_SKIP_DEPS=1 skips it (non-Debian systems with the tools in place).
set -euo pipefail

# The packages, one per line. Add new requirements here.
PACKAGES=(
    build-essential     # gcc, make, libc headers (gcc + make + libc6-dev also do)
    binutils            # ar, nm (tests/check_symbols.sh)
    pkg-config
    libssl-dev          # OpenSSL 3 headers and libraries
    liburing-dev        # io_uring: the loop's second backend (src/loop/loop_uring.c)
    libuv1-dev          # libuv: examples/uv_echo.c drives the engine from libuv's loop
    libnghttp2-dev      # nghttp2: HTTP/2 framing and HPACK: the server (src/httpd) and the client (src/client)
    nghttp2-client      # nghttp and h2load: HTTP/2 peers in the tests
    python3-h2          # python's h2: crafted HTTP/2 frames in the tests (attacks, limits)
    libjansson-dev      # JSON for the ACME client (src/acme)
    pebble              # Let's Encrypt's ACME test server, started by the ACME tests
    libsystemd-dev      # sd_notify and socket activation (src/server)
    memcached           # a shared TLS session store, started by the scale-out tests
    redis-server        # the other session store, started by the scale-out tests
    haproxy             # the L4 balancer in front of several instances (scale-out tests)
    openssl             # the command-line tool, used by tests as a peer
    python3
    curl
    clang               # fuzzers (libFuzzer); its runtime package is added below
    procps              # ps, pkill -P, pgrep in test scripts
    coreutils           # timeout
    gnutls-bin          # gnutls-cli: a TLS peer from another library (tests/e2e/test_server_tls.py)
    chromium            # a real browser, headless, against tlsloop serve (tests/e2e/test_chromium.py)
    # HTTP/2 servers that the client's tests start (tests/e2e/test_get_h2.py: get --http2 and
    # bench --h2 against both); the --bench list has them too, for make bench
    nginx-light         # nginx, with http_v2
    h2o                 # h2o
)

# `deps.sh --bench`: what `make bench` needs besides (the servers it compares with, the load).
BENCH_PACKAGES=(
    nginx-light         # nginx, the server tlsloop serve is compared with (bench/serve_vs_nginx.py;
                        # also in PACKAGES, for the tests)
    wrk                 # keep-alive, resumption and bulk load
    util-linux          # taskset and prlimit: servers on CPU 0, load on CPU 1, fd limits
    gnuplot-nox         # the chart of bench/perf.py (docs/perf.png)
    haproxy             # bench/proxy_bench.py: tlsloop proxy against HAProxy in TCP mode
    stunnel4            # and against stunnel
    h2o                 # bench/perf.py --also h2o: the third server of the performance issue (also
                        # in PACKAGES)
)
# `deps.sh --soak`: what `make soak`'s opt-in runs need (tests/soak.sh, TESTSSL=1).
SOAK_PACKAGES=(
    testssl.sh          # an independent TLS scanner run against tlsloop serve
)
if [[ ${1:-} == --bench ]]; then
    PACKAGES=("${BENCH_PACKAGES[@]}")
elif [[ ${1:-} == --soak ]]; then
    PACKAGES=("${SOAK_PACKAGES[@]}")
fi

if [[ ${TLSLOOP_SKIP_DEPS:-0} == 1 ]]; then
    echo "deps: skipped (TLSLOOP_SKIP_DEPS=1)"
    exit 0
fi
if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps: not a Debian system (no dpkg-query); make sure gcc, make, pkg-config, OpenSSL 3" \
        "headers, liburing, libuv, nghttp2 (and h2load), python3's h2, openssl, python3, curl," \
        "gnutls-cli, chromium, nginx with http_v2, h2o, clang with libFuzzer and procps are installed" >&2
    exit 0
fi

installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

is_root() { [[ $(id -u) == 0 ]]; }

lists_empty() {
    ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

updated=0
apt_update() {
    if [[ $updated == 0 ]]; then
        echo "deps: apt-get update" >&2
        apt-get update -q >&2
        updated=1
    fi
}

# Install the packages given, as root; or tell the user the command and fail.
install_pkgs() {
    if ! is_root; then
        echo "deps: missing packages: $*" >&2
        echo "deps: run:  sudo apt-get install -y --no-install-recommends $*" >&2
        exit 1
    fi
    echo "deps: installing: $*"
    if lists_empty; then
        apt_update
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
        if [[ $updated == 1 ]]; then
            echo "deps: apt-get install failed" >&2
            exit 1
        fi
        apt_update
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    fi
}

missing=()
for p in "${PACKAGES[@]}"; do
    if [[ $p == build-essential ]] && ! installed build-essential &&
        installed gcc && installed make && installed libc6-dev; then
        continue
    fi
    installed "$p" || missing+=("$p")
done

# Any nginx flavour will do (nginx-core, nginx-full, ...): only the command matters.
if command -v nginx >/dev/null 2>&1 && [[ ${#missing[@]} -gt 0 ]]; then
    missing=("${missing[@]/nginx-light/}")
    read -r -a missing <<<"${missing[*]}"
fi

if [[ ${1:-} == --bench ]]; then
    [[ ${#missing[@]} -eq 0 ]] || install_pkgs "${missing[@]}"
    echo "deps: ok for benchmarks (nginx, wrk, taskset, gnuplot, haproxy, stunnel, h2o)"
    exit 0
fi

if [[ ${1:-} == --soak ]]; then
    [[ ${#missing[@]} -eq 0 ]] || install_pkgs "${missing[@]}"
    echo "deps: ok for soak's opt-in runs (testssl.sh)"
    exit 0
fi

# libFuzzer's runtime comes with the installed clang's major version: libclang-rt-N-dev (LLVM >= 14
# on Debian 12), libclang-common-N-dev on older releases.
clang_major() {
    clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n 1
}
# Prints the package to install for clang $1's libFuzzer, or nothing when it is there.
# Run in a subshell ($(...)): it must not update the package lists itself (see need_lists).
fuzzer_pkg() {
    local major=$1
    if installed "libclang-rt-$major-dev"; then
        return 0
    fi
    if installed "libclang-common-$major-dev" &&
        [[ -n $(find "/usr/lib/llvm-$major/lib/clang" -name 'libclang_rt.fuzzer-*.a' 2>/dev/null |
            head -n 1) ]]; then
        return 0
    fi
    if apt-cache show "libclang-rt-$major-dev" >/dev/null 2>&1 ||
        ! apt-cache show "libclang-common-$major-dev" >/dev/null 2>&1; then
        echo "libclang-rt-$major-dev"
    else
        echo "libclang-common-$major-dev"
    fi
}

# apt-cache knows no package before the first apt-get update: fetch the lists when the runtime is
# missing and they are empty (as root; a user gets the libclang-rt name and the sudo command).
need_lists() {
    if ! installed "libclang-rt-$1-dev" && lists_empty && is_root; then
        apt_update
    fi
}

major=$(clang_major)
if [[ -n $major ]]; then
    need_lists "$major"
    rt=$(fuzzer_pkg "$major")
    [[ -z $rt ]] || missing+=("$rt")
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    install_pkgs "${missing[@]}"
fi

# clang was only just installed: now its version is known.
if [[ -z $major ]]; then
    major=$(clang_major)
    if [[ -z $major ]]; then
        echo "deps: clang is installed but 'clang --version' gives no version" >&2
        exit 1
    fi
    need_lists "$major"
    rt=$(fuzzer_pkg "$major")
    [[ -z $rt ]] || install_pkgs "$rt"
fi

echo "deps: ok (${#PACKAGES[@]} packages + libFuzzer runtime for clang $major)"
