#!/usr/bin/env python3
"""test_proxy_backends.py - `tlsloop proxy`'s backends: one down, failed over and found again;
PROXY v1/v2 headers to them (with the TLS facts: the client certificate's exact UTF-8 CN, flags,
verify); TLS to them, verified and resumed; the metrics page; option errors.
"""
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, run_selected, summary, test  # noqa: E402
from e2e_proxy import (Backend, Proxy, TLSLOOP, ctx_for, echo, echo_roundtrip, setup,  # noqa: E402
                       tls_connect, wait_log)

TMP = None   # setup() names it


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now: connections are refused
    return port


# ---- tests ------------------------------------------------------------------------------------

@test
def backend_down_client_gets_close_notify(cert):
    px = Proxy(cert, closed_port())
    try:
        with tls_connect(px.tls, cert) as s:
            s.sendall(b"anyone there?")
            assert s.recv(100) == b""   # a clean end: close_notify, no truncation error
        wait_log(px, r"no backend answered")
        assert re.search(r"backend 127\.0\.0\.1:\d+: .*(refused|Connection)", px.log_text()), \
            px.log_text()
    finally:
        assert px.stop() == 0


@test
def one_of_two_backends_down(cert):
    be = Backend(echo)
    dead = closed_port()
    px = Proxy(cert, dead, be.port, extra=("--backend-retry", "1h", "--metrics-listen",
                                           "127.0.0.1:0"))
    try:
        for i in range(10):
            with tls_connect(px.tls, cert) as s:
                echo_roundtrip(s, f"request {i}".encode())
        assert be.accepted == 10
        wait_log(px, rf"backend 127\.0\.0\.1:{dead}: .*tried after the others")
        # Passive health: after its failure the dead one is tried after the other, so no later
        # client pays for it (one failure, not five).
        text = metrics_text(px.metrics)[2]
        assert metric(text, "tlsloop_proxy_backend_failures_total") == 1, text
        assert metric(text, f'tlsloop_proxy_backend_up{{backend="127.0.0.1:{dead}"}}') == 0
        assert metric(text, f'tlsloop_proxy_backend_up{{backend="127.0.0.1:{be.port}"}}') == 1
    finally:
        assert px.stop() == 0
        be.close()


@test
def failed_backend_found_again_after_retry(cert):
    live = Backend(echo)
    dead = closed_port()
    px = Proxy(cert, dead, live.port, extra=("--backend-retry", "500ms", "--metrics-listen",
                                             "127.0.0.1:0"))
    back = None
    try:
        for i in range(2):   # round-robin: one of the two clients tries the dead one first
            with tls_connect(px.tls, cert) as s:
                echo_roundtrip(s, b"first")
        back = Backend(echo, port=dead)   # it comes up, but is within backend-retry
        t0 = time.monotonic()
        for i in range(4):
            with tls_connect(px.tls, cert) as s:
                echo_roundtrip(s, b"within the retry time")
        if time.monotonic() - t0 < 0.4:   # (a slow machine may have passed the 500 ms)
            assert back.accepted == 0, "a backend that failed was tried first within backend-retry"
        time.sleep(0.6)
        for i in range(4):   # the window is over: round-robin reaches it again
            with tls_connect(px.tls, cert) as s:
                echo_roundtrip(s, b"after it")
        assert back.accepted >= 1
        wait_log(px, rf"backend 127\.0\.0\.1:{dead}: answering again")
        text = metrics_text(px.metrics)[2]
        assert metric(text, f'tlsloop_proxy_backend_up{{backend="127.0.0.1:{dead}"}}') == 1
    finally:
        assert px.stop() == 0
        live.close()
        if back:
            back.close()


def read_exact(c, n):
    buf = b""
    while len(buf) < n:
        d = c.recv(n - len(buf))
        if not d:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += d
    return buf


def parse_pp2(c):
    """Read a PROXY v2 header: (src, sport, dst, dport, {tlv type: value}, {ssl sub-TLVs}, ssl
    client flags)."""
    head = read_exact(c, 16)
    assert head[:12] == b"\r\n\r\n\x00\r\nQUIT\n", head
    assert head[12] == 0x21 and head[13] == 0x11, head   # v2 PROXY, TCP over IPv4
    body = read_exact(c, struct.unpack("!H", head[14:16])[0])
    src, dst = socket.inet_ntoa(body[0:4]), socket.inet_ntoa(body[4:8])
    sport, dport = struct.unpack("!HH", body[8:12])
    tlvs, i = {}, 12
    while i < len(body):
        t, n = body[i], struct.unpack("!H", body[i + 1:i + 3])[0]
        tlvs[t] = body[i + 3:i + 3 + n]
        i += 3 + n
    sub, flags = {}, None
    if 0x20 in tlvs:
        v = tlvs[0x20]
        flags, j = v[0], 5
        while j < len(v):
            t, n = v[j], struct.unpack("!H", v[j + 1:j + 3])[0]
            sub[t] = v[j + 3:j + 3 + n]
            j += 3 + n
    return src, sport, dst, dport, tlvs, sub, flags


def tls_connect_ctx(port, ctx):
    raw = socket.create_connection(("127.0.0.1", port), timeout=20 * SLOW)
    return ctx.wrap_socket(raw, server_hostname="localhost")


@test
def proxy_protocol_v1_and_v2_to_the_backend(cert):
    seen = []
    client = (f"{TMP}/client.pem", f"{TMP}/client.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=client one/O=Test",
                    "-days", "2", "-keyout", client[1], "-out", client[0]], check=True,
                   capture_output=True)

    def v1(c):
        line = b""
        while not line.endswith(b"\r\n"):
            line += read_exact(c, 1)
        seen.append(line.decode())
        echo(c)

    def v2(c):
        seen.append(parse_pp2(c))
        echo(c)
    for version, handler in (("v1", v1), ("v2", v2)):
        seen.clear()
        be = Backend(handler)
        px = Proxy(cert, be.port, extra=("--proxy-protocol", version, "--alpn", "h2,http/1.1",
                                          "--client-ca", client[0], "--client-cert", "optional"))
        try:
            ctx = ctx_for(cert)
            ctx.set_alpn_protocols(["http/1.1"])
            raw = socket.create_connection(("127.0.0.1", px.tls), timeout=20 * SLOW)
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                echo_roundtrip(s, b"after the header")
                me, cipher = s.getsockname(), s.cipher()[0]
                deadline = time.monotonic() + 10 * SLOW
                while not seen and time.monotonic() < deadline:
                    time.sleep(0.01)
            if version == "v1":
                assert seen == [f"PROXY TCP4 127.0.0.1 127.0.0.1 {me[1]} {px.tls}\r\n"], seen
            else:
                src, sport, dst, dport, tlvs, sub, flags = seen[0]
                assert (src, sport, dst, dport) == ("127.0.0.1", me[1], "127.0.0.1", px.tls)
                assert tlvs.get(0x01) == b"http/1.1", tlvs             # ALPN
                assert tlvs.get(0x02) == b"localhost", tlvs            # AUTHORITY (SNI)
                assert flags == 0x01, flags                            # TLS, no client cert
                assert pp2_verify(tlvs) != 0, tlvs                     # nothing verified
                assert sub.get(0x21) == b"TLSv1.3", sub                # version
                assert sub.get(0x23) == cipher.encode(), sub            # cipher
                assert 0x22 not in sub, sub                            # no client CN
            with socket.create_connection(("127.0.0.1", px.plain), timeout=20 * SLOW) as p:
                echo_roundtrip(p, b"plain")   # a plain client gets a header too, without TLS facts
            if version == "v2":   # mTLS: the client certificate's CN goes along
                seen.clear()
                ctx = ctx_for(cert)
                ctx.load_cert_chain(client[0], client[1])
                with tls_connect_ctx(px.tls, ctx) as s:
                    echo_roundtrip(s, b"with a certificate")
                deadline = time.monotonic() + 10 * SLOW
                while not seen and time.monotonic() < deadline:
                    time.sleep(0.01)
                flags, sub = seen[0][6], seen[0][5]
                assert flags == 0x07 and sub.get(0x22) == b"client one", (flags, sub)
        finally:
            assert px.stop() == 0
            be.close()


def pp2_verify(tlvs):
    """The verify field of a PP2_TYPE_SSL TLV: 0 only for a client certificate verified."""
    return struct.unpack("!I", tlvs[0x20][1:5])[0]


@test
def pp2_client_identity_exact_and_resumed(cert):
    """PP2's CN is the certificate's own, as UTF-8: a CN "é" and a CN "C3A9" arrive distinct
    (a printed, escaped subject made both "C3A9"). The flags say whether the certificate came
    on this connection (CERT_CONN) or with the session (CERT_SESS, also when resumed), and
    verify is 0 for a verified one, non-zero without one: full and resumed, TLS 1.3 and 1.2."""
    clients = {}
    for tag, cn in (("e-acute", "é"), ("hex", "C3A9")):
        pem, key = f"{TMP}/pp2-{tag}.pem", f"{TMP}/pp2-{tag}.key"
        subprocess.run(["openssl", "req", "-x509", "-utf8", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={cn}/O=Test",
                        "-days", "2", "-keyout", key, "-out", pem], check=True,
                       capture_output=True)
        clients[cn] = (pem, key)
    cas = f"{TMP}/pp2-cas.pem"
    with open(cas, "w") as f:
        f.write("".join(open(c[0]).read() for c in clients.values()))
    seen = []
    cv = threading.Condition()

    def v2(c):
        got = parse_pp2(c)
        with cv:
            seen.append(got)
            cv.notify_all()
        echo(c)

    def one(ctx, session=None):
        """A connection through the proxy: (PP2 tlvs, sub-TLVs, flags, session, reused)."""
        n = len(seen)
        raw = socket.create_connection(("127.0.0.1", px.tls), timeout=20 * SLOW)
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            echo_roundtrip(s, b"who am I")   # TLS 1.3 tickets have arrived after a round trip
            sess, reused = s.session, s.session_reused
        with cv:
            assert cv.wait_for(lambda: len(seen) > n, 10 * SLOW), "no PROXY header came"
            _, _, _, _, tlvs, sub, flags = seen[n]
        return tlvs, sub, flags, sess, reused

    be = Backend(v2)
    px = Proxy(cert, be.port, extra=("--proxy-protocol", "v2", "--client-ca", cas,
                                      "--client-cert", "optional"))
    try:
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            for cn, pair in clients.items():
                ctx = ctx_for(cert, version)
                ctx.load_cert_chain(*pair)
                tlvs, sub, flags, sess, reused = one(ctx)
                assert not reused
                assert sub.get(0x22) == cn.encode("utf-8"), (version, cn, sub)
                assert flags == 0x07 and pp2_verify(tlvs) == 0, (version, cn, flags, tlvs)
                tlvs, sub, flags, _, reused = one(ctx, sess)   # resumed: no certificate sent
                assert reused, (version, cn, "not resumed")
                assert sub.get(0x22) == cn.encode("utf-8"), (version, cn, sub)
                assert flags == 0x05 and pp2_verify(tlvs) == 0, (version, cn, flags, tlvs)
            tlvs, sub, flags, _, _ = one(ctx_for(cert, version))   # no certificate at all
            assert flags == 0x01 and pp2_verify(tlvs) != 0 and 0x22 not in sub, (flags, tlvs)
    finally:
        assert px.stop() == 0
        be.close()


class TlsBackend(Backend):
    """A Backend whose connections are TLS (our test certificate), for --backend-tls."""

    def __init__(self, handler, cert, version=None):
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cert[0], cert[1])
        if version:
            sctx.minimum_version = sctx.maximum_version = version
        self.reused = []   # per connection: whether it resumed a session

        def wrapped(c):
            c.settimeout(20 * SLOW)
            with sctx.wrap_socket(c, server_side=True) as t:
                self.reused.append(t.session_reused)
                handler(t)
        super().__init__(wrapped)


def tls_echo(t):
    while True:
        d = t.recv(65536)
        if not d:
            break
        t.sendall(d)
    t.unwrap()


@test
def backend_over_tls_verified(cert):
    be = TlsBackend(tls_echo, cert)
    px = Proxy(cert, be.port, extra=("--backend-tls", "--backend-ca", cert[0],
                                     "--backend-name", "localhost"))
    try:
        with tls_connect(px.tls, cert) as s:
            echo_roundtrip(s, os.urandom(200000))
        with socket.create_connection(("127.0.0.1", px.plain), timeout=20 * SLOW) as p:
            echo_roundtrip(p, b"plain in, TLS out")
    finally:
        assert px.stop() == 0
    # A name the backend's certificate does not carry: refused, like a backend that is down.
    px = Proxy(cert, be.port, extra=("--backend-tls", "--backend-ca", cert[0],
                                     "--backend-name", "other.example"))
    try:
        with tls_connect(px.tls, cert) as s:
            s.sendall(b"hello")
            assert s.recv(100) == b""
        wait_log(px, r"backend 127\.0\.0\.1:\d+: .*(verif|name|mismatch)")
        wait_log(px, r"no backend answered")
    finally:
        assert px.stop() == 0
        be.close()


@test
def backend_sessions_resumed(cert):
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        be = TlsBackend(tls_echo, cert, version)
        px = Proxy(cert, be.port, extra=("--backend-tls", "--backend-ca", cert[0],
                                         "--backend-name", "localhost", "--metrics-listen",
                                         "127.0.0.1:0"))
        try:
            n = 8
            for i in range(n):
                with tls_connect(px.tls, cert) as s:
                    echo_roundtrip(s, f"request {i}".encode())
                    s.unwrap()
                deadline = time.monotonic() + 10 * SLOW
                while metric(metrics_text(px.metrics)[2], "tlsloop_proxy_pairs_open") > 0:
                    assert time.monotonic() < deadline, "a pair stayed open"
                    time.sleep(0.02)
            # The first connect of each of the two workers is a full handshake; the rest resume
            # what that worker kept (TLS 1.3: the newest ticket, each offered once).
            assert len(be.reused) == n, be.reused
            print(f"  {version.name}: {sum(be.reused)} of {n} backend connections resumed")
            assert sum(be.reused) >= n - 2, (version, be.reused)
            text = metrics_text(px.metrics)[2]
            assert metric(text, "tlsloop_proxy_backend_resumed_total") == sum(be.reused), text
        finally:
            assert px.stop() == 0
            be.close()


def metrics_text(port, path="/metrics", method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10 * SLOW) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), ""


def metric(text, name):
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    assert m, (name, text[-2000:])
    return float(m.group(1))


@test
def metrics_page_counts_pairs_and_ends(cert):
    be = Backend(echo)
    px = Proxy(cert, be.port, extra=("--metrics-listen", "127.0.0.1:0"))
    try:
        sent = 0
        for i in range(3):
            with tls_connect(px.tls, cert) as s:
                data = f"request {i} ".encode() * 100
                echo_roundtrip(s, data)
                sent += len(data)
                s.unwrap()
        with socket.create_connection(("127.0.0.1", px.plain), timeout=10) as s:
            echo_roundtrip(s, b"plain")
            sent += 5
        deadline = time.monotonic() + 10 * SLOW
        while True:   # the pairs' ends are counted once both legs are closed
            status, ctype, text = metrics_text(px.metrics)
            if metric(text, "tlsloop_proxy_pairs_open") == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), (status, ctype)
        assert metric(text, "tlsloop_proxy_clients_total") == 4, text
        assert metric(text, "tlsloop_proxy_backend_connects_total") == 4
        assert metric(text, "tlsloop_proxy_pairs_open") == 0
        assert metric(text, 'tlsloop_proxy_pairs_ended_total{end="clean"}') == 4
        assert metric(text, 'tlsloop_proxy_bytes_total{direction="to_backend"}') == sent
        assert metric(text, 'tlsloop_proxy_bytes_total{direction="to_client"}') == sent
        assert metric(text, 'tlsloop_handshakes_total{kind="full"}') >= 3
        assert metric(text, "tlsloop_proxy_no_backend_total") == 0
        assert metrics_text(px.metrics, "/other")[0] == 404
        assert metrics_text(px.metrics, method="POST")[0] == 405
        assert metrics_text(px.metrics, method="HEAD")[0] == 200
        assert be.accepted == 4   # the metrics requests never reached the backend
    finally:
        assert px.stop() == 0
        be.close()


@test
def option_errors(cert):
    cases = [
        (["--listen", "0,plain"], "backend"),
        (["--listen", "0,plain", "--backend", "nohost"], "HOST:PORT"),
        (["--listen", "0,plain", "--backend", "127.0.0.1:0"], "port 1 to 65535"),
        (["--listen", "0,plain", "--backend", "no.such.host.invalid:80"], "no.such.host.invalid"),
        (["--backend", "127.0.0.1:80"], "listen"),
        (["--listen", "0", "--backend", "127.0.0.1:80"], "cert"),
        (["--listen", "0,plain", "--backend", "127.0.0.1:80", "--connect-timeout", "soon"],
         "duration"),
        (["--bogus"], "unknown option --bogus"),
        (["--listen", "0,plain", "--backend", "127.0.0.1:80", "--backend-tls", "--backend-ca",
          "/nonexistent.pem"], "backend-ca: /nonexistent.pem"),
        (["--listen", "0,plain", "--backend", "127.0.0.1:80", "--metrics-listen", "1,tls"],
         "metrics-listen 1,tls: expected [ADDR:]PORT, no flags"),
        (["--listen", "0,plain", "--backend", "127.0.0.1:80", "--metrics-listen", "x:y"],
         "metrics-listen x:y: expected"),
    ]
    for args, want in cases:
        r = subprocess.run([TLSLOOP, "proxy", *args], capture_output=True, text=True,
                           timeout=20 * SLOW)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert want in r.stderr, (args, r.stderr)
    r = subprocess.run([TLSLOOP, "proxy", "--listen", "0,plain", "--backend", "127.0.0.1:80",
                        "--check"], capture_output=True, text=True, timeout=20 * SLOW)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r
    r = subprocess.run([TLSLOOP, "proxy", "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--backend HOST:PORT" in r.stdout and "--cert" in r.stdout


def main():
    global TMP
    with tempfile.TemporaryDirectory() as tmp:
        cert = setup(tmp)
        TMP = tmp
        tests = [backend_down_client_gets_close_notify, one_of_two_backends_down,
                 failed_backend_found_again_after_retry, proxy_protocol_v1_and_v2_to_the_backend,
                 pp2_client_identity_exact_and_resumed, backend_over_tls_verified,
                 backend_sessions_resumed, metrics_page_counts_pairs_and_ends, option_errors]
        run_selected(tests, cert)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
