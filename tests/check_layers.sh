#!/usr/bin/env bash
# check_layers.sh - the dependency rule of docs/design.md, checked on the sources' #includes.
# Each module's .c files (src/<module>*.c) may include only the public headers of the modules
# below it, its own private headers, src/tli.h, OpenSSL and libc.
set -u
cd "$(dirname "$0")/.."

# module: the tlsloop headers (and private headers) it may include
declare -A allowed=(
    [status]="api status"
    [buf]="api buf"
    [certgen]="api certgen"
    [proxyproto]="api proxyproto"
    [limits]="api limits tli.h"
    [log]="api log"
    [tls_ctx]="api status buf tls_ctx tli.h tls_ctx_int.h"
    [engine]="api status buf tls_ctx engine tli.h engine_int.h"
    [loop]="api loop tli.h loop_int.h"
    [conn]="api status buf tls_ctx engine loop conn tli.h conn_int.h"
    [server]="api status buf tls_ctx engine loop conn limits proxyproto log server tli.h server_int.h"
    [http]="api http"
    [client]="api status buf tls_ctx engine loop conn http client tli.h client_int.h"
    [proxy]="api status buf tls_ctx engine loop conn limits proxyproto log server http proxy tli.h proxy_int.h"
    [httpd]="api status buf tls_ctx engine loop conn limits proxyproto log server http httpd tli.h httpd_int.h"
)

passed=0 failed=0
for src in src/*.c; do
    base=$(basename "$src" .c)
    module=""
    for m in "${!allowed[@]}"; do
        if [[ "$base" == "$m" || "$base" == "$m"_* ]] && [ ${#m} -gt ${#module} ]; then
            module=$m
        fi
    done
    if [ -z "$module" ]; then
        echo "check_layers: $src belongs to no known module (add it to tests/check_layers.sh)"
        failed=$((failed + 1))
        continue
    fi
    bad=""
    while IFS= read -r inc; do
        name=${inc#tlsloop/}
        name=${name%.h}
        [[ "$inc" == tlsloop/* ]] || name=$inc
        [[ " ${allowed[$module]} " == *" $name "* ]] || bad+=" $inc"
    done < <(sed -n 's/^#include [<"]\(tlsloop\/[a-z_]*\.h\|[a-z_]*\.h\)[>"].*/\1/p' "$src" |
             grep -E '^tlsloop/|^(tli|[a-z_]+_int)\.h$')
    if [ -n "$bad" ]; then
        echo "check_layers: $src (module $module) includes$bad, against the dependency rule"
        failed=$((failed + 1))
    else
        passed=$((passed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
