#!/usr/bin/env bash
# check_layers.sh - the dependency rule of docs/design.md, checked from the folders of src/.
# A file in src/LAYER/ may include the public headers (<tlsloop/*.h>) of its own layer and the
# layers below it, private headers ("LAYER/*.h") of those layers, OpenSSL and libc; never a
# higher layer's. A file in src/ outside a layer folder, and a public header that belongs to no
# layer, fail too.
set -u
cd "$(dirname "$0")/.."

# layer: the layers it may use (itself included)
declare -A below=(
    [util]="util"
    [tls]="util tls"
    [loop]="util loop"
    [conn]="util tls loop conn"
    [server]="util tls loop conn http client server"
    [http]="util http"
    [client]="util tls loop conn http client"
    [httpd]="util tls loop conn server http httpd"
    [proxy]="util tls loop conn server http proxy"
    [acme]="util tls loop conn server http client acme"
)
# public header: its layer
declare -A header_layer=(
    [api]=util [status]=util [buf]=util [log]=util
    [tls_ctx]=tls [engine]=tls [certgen]=tls [ocsp]=tls
    [loop]=loop [conn]=conn
    [server]=server [limits]=server [proxyproto]=server
    [http]=http [client]=client [httpd]=httpd [proxy]=proxy [acme]=acme
)

passed=0 failed=0
for h in include/tlsloop/*.h; do
    n=$(basename "$h" .h)
    if [ -z "${header_layer[$n]:-}" ]; then
        echo "check_layers: $h belongs to no layer (add it to tests/check_layers.sh)"
        failed=$((failed + 1))
    fi
done
for src in src/*.c src/*.h src/*/*.c src/*/*.h; do
    [ -e "$src" ] || continue
    dir=$(dirname "$src")
    layer=${dir#src/}
    if [ "$dir" == src ] || [ -z "${below[$layer]:-}" ]; then
        echo "check_layers: $src is in no layer folder (src/{${!below[*]}})"
        failed=$((failed + 1))
        continue
    fi
    bad=""
    while IFS= read -r inc; do
        if [[ "$inc" == tlsloop/* ]]; then
            n=${inc#tlsloop/}; n=${n%.h}
            l=${header_layer[$n]:-?}
        else
            l=${inc%%/*}
            [[ "$inc" == */* ]] || l="?"
        fi
        [[ " ${below[$layer]} " == *" $l "* ]] || bad+=" $inc"
    done < <(sed -n 's/^#include \(<tlsloop\/[a-z_0-9]*\.h>\|"[a-z_0-9/]*\.h"\).*/\1/p' "$src" | tr -d '<>"' |
             grep -E '^tlsloop/|/|^[a-z_]+_int\.h$|^tli\.h$')
    if [ -n "$bad" ]; then
        echo "check_layers: $src (layer $layer) includes$bad, against the dependency rule"
        failed=$((failed + 1))
    else
        passed=$((passed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
