#!/usr/bin/env bash
# tests/testssl.sh - testssl.sh (an independent TLS scanner, Debian package testssl.sh) against
# `tlsloop serve` on an ephemeral loopback port. Fails on any finding of severity HIGH or
# CRITICAL but the three a local CA and the client's suite order give (EXPECTED below); prints the findings of MEDIUM and above. Opt-in from tests/soak.sh (TESTSSL=1), never
# in `make test` (a scan takes minutes). Install the scanner with `bash scripts/deps.sh --soak`.
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${TLSLOOP_BIN:-build/tlsloop}
SCANNER=$(command -v testssl || command -v testssl.sh || true)
if [ -z "$SCANNER" ]; then
    echo "testssl.sh is not installed: bash scripts/deps.sh --soak"
    echo "0 passed, 1 failed"
    exit 1
fi
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$BIN" serve --listen 127.0.0.1:0 --state-dir "$tmp/state" --root "$tmp" --alpn http/1.1 \
    --log "$tmp/serve.log" >"$tmp/out" 2>&1 &
pid=$!
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's|.*listening on https://localhost:\([0-9]*\)/.*|\1|p' "$tmp/out" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "tlsloop serve did not start:"; cat "$tmp/out"
    echo "0 passed, 1 failed"
    exit 1
fi
timeout 1200 "$SCANNER" --quiet --warnings off --nodns min --color 0 --severity MEDIUM \
    --jsonfile "$tmp/scan.json" "127.0.0.1:$port" >"$tmp/scan.txt" 2>&1
python3 - "$tmp/scan.json" <<'PY'
import json, sys
found = json.load(open(sys.argv[1]))
# Expected of a loopback server with the generated local CA: testssl.sh does not trust that CA
# and it has no CRL or OCSP; and every default suite is AEAD with forward secrecy, so tlsloop
# leaves the order to the client (as Mozilla's intermediate profile does).
EXPECTED = {"cert_chain_of_trust", "cert_revocation", "cipher_order"}
bad = [f for f in found if f.get("severity") in ("HIGH", "CRITICAL") and f["id"] not in EXPECTED]
for f in found:
    if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL"):
        print(f"  {f['severity']:8} {f['id']}: {f.get('finding', '')}")
print(f"  {len(found)} findings of MEDIUM or above, {len(bad)} HIGH or CRITICAL not expected")
sys.exit(1 if bad else 0)
PY
rc=$?
if [ "$rc" -eq 0 ]; then echo "1 passed, 0 failed"; else tail -n 40 "$tmp/scan.txt"; echo "0 passed, 1 failed"; fi
exit "$rc"
