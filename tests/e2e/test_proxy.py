#!/usr/bin/env python3
"""test_proxy.py - `tlsloop proxy` (tlsloop/proxy.h) between real clients (python's ssl module,
curl, openssl s_client) and backends this script runs on ephemeral loopback ports.

Covers: echo over TLS 1.3, TLS 1.2 and a plain listener; 64 MiB both ways with a slow reader on
either side and the proxy's RSS bounded, and 64 MiB into a slow sink (1 GiB with SOAK=1);
half-close carried both ways (TLS 1.3 and plain); a backend that is down (the client gets
close_notify, the log says why); one of two backends down (every client served); resets carried
as resets, either way; SIGTERM during a transfer (it finishes); PROXY protocol v1 and v2 (with
the TLS facts: the client certificate's exact UTF-8 CN, flags and verify, full and resumed) to the
backend; a backend over TLS, verified (a wrong name is refused), with its
sessions resumed (TLS 1.3 and 1.2); the metrics page; curl and s_client through the proxy to an
HTTP backend; option errors.

Runs from the repository root; TLSLOOP_BUILD names the build directory (build/ by default).
Ends with "N passed, N failed".
"""
import os
import re
import select
import signal
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
from e2e import (SLOW, TcpServer, file_text, rss_kib, run_selected, stop_process,  # noqa: E402
                 summary, test, wait_file_match)

BUILD = os.environ.get("TLSLOOP_BUILD", "build")
TLSLOOP = f"{BUILD}/tlsloop"
BIG = (1 << 30) if os.environ.get("SOAK") == "1" else (64 << 20)
TMP = None


# ---- backends ---------------------------------------------------------------------------------

Backend = TcpServer   # each backend connection runs a handler in its own thread


def echo(c, slow=False):
    """Echo until EOF, then FIN. slow: read 64 KiB at most every millisecond."""
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
        if slow:
            time.sleep(0.001)
    c.shutdown(socket.SHUT_WR)


def answer_after_eof(c):
    """Count what arrives until EOF, then answer with the count: needs half-close."""
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
    c.sendall(f"got {n}\n".encode())
    c.shutdown(socket.SHUT_WR)


def slow_sink(total):
    """A sink: read and drop total bytes, slowly (a millisecond per 64 KiB read), then answer
    with the count."""
    def handler(c):
        n = 0
        while n < total:
            d = c.recv(65536)
            if not d:
                break
            n += len(d)
            time.sleep(0.001)
        c.sendall(f"got {n}\n".encode())
        c.shutdown(socket.SHUT_WR)
    return handler


def reset_after_first_read(c):
    c.recv(100)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def http_hello(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(4096)
        if not d:
            return
        buf += d
    body = b"hello through the proxy\n"
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
              + body)
    c.shutdown(socket.SHUT_WR)
    while c.recv(4096):
        pass


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now: connections are refused
    return port


# ---- the proxy under test -----------------------------------------------------------------------

class Proxy:
    def __init__(self, cert, *backends, extra=()):
        self.log = f"{TMP}/proxy-{time.monotonic_ns()}.log"
        cmd = [TLSLOOP, "proxy", "--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0,plain",
               "--cert", cert[0], "--key", cert[1], "--workers", "2", "--log", self.log,
               "--log-level", os.environ.get("PROXY_LOG_LEVEL", "info"), *extra]
        for b in backends:
            cmd += ["--backend", f"127.0.0.1:{b}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        ports = []
        while len(ports) < (3 if "--metrics-listen" in extra else 2):
            line = self.proc.stdout.readline()
            m = re.match(r"tlsloop proxy: listening on port (\d+)", line)
            if not line:
                raise RuntimeError(f"proxy did not start: {self.proc.stderr.read()}")
            if m:
                ports.append(int(m.group(1)))
        self.tls, self.plain = ports[:2]
        self.metrics = ports[2] if len(ports) > 2 else None
        threading.Thread(target=lambda: self.proc.stdout.read(), daemon=True).start()

    def log_text(self):
        return file_text(self.log)

    def rss_kib(self):
        return rss_kib(self.proc.pid)

    def stop(self, timeout=20):
        return stop_process(self.proc, timeout, "the proxy")


def ctx_for(cert, version=None):
    ctx = ssl.create_default_context(cafile=cert[0])
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def tls_connect(port, cert, version=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=20 * SLOW)
    return ctx_for(cert, version).wrap_socket(raw, server_hostname="localhost")


def echo_roundtrip(s, data):
    got = bytearray()
    s.sendall(data)
    while len(got) < len(data):
        d = s.recv(65536)
        assert d, f"the connection ended after {len(got)} of {len(data)} bytes"
        got += d
    assert bytes(got) == data


def wait_log(px, pattern, timeout=10):
    return wait_file_match(px.log, pattern, timeout)


# ---- tests ------------------------------------------------------------------------------------

@test
def echo_tls13_tls12_and_plain(cert):
    be = Backend(echo)
    px = Proxy(cert, be.port)
    try:
        data = os.urandom(300000)
        for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            with tls_connect(px.tls, cert, v) as s:
                assert s.version() == ("TLSv1.3" if v == ssl.TLSVersion.TLSv1_3 else "TLSv1.2")
                echo_roundtrip(s, data)
        with socket.create_connection(("127.0.0.1", px.plain), timeout=20 * SLOW) as p:
            echo_roundtrip(p, data)
    finally:
        assert px.stop() == 0
        be.close()


def pump_both_ways(s, total, slow_reader, on_progress=None):
    """Send total bytes while reading the echo, in one thread (an SSLSocket must not be read and
    written from two threads at once); returns the bytes read. slow_reader: pause a millisecond
    every 256 KiB read."""
    chunk = os.urandom(1 << 16)
    s.setblocking(False)
    sent = got = reads = 0
    deadline = time.monotonic() + 300 * SLOW
    try:
        while got < total:
            assert time.monotonic() < deadline, f"stuck: sent {sent}, got {got} of {total}"
            want_w = sent < total
            r, w, _ = select.select([s], [s] if want_w else [], [], 5)
            if w or (want_w and s.pending() == 0 and not r):
                try:
                    sent += s.send(chunk[:min(len(chunk), total - sent)])
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    pass
            while True:   # what TLS holds decrypted is not signalled by select
                try:
                    d = s.recv(1 << 16)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    break
                assert d, f"ended after {got} of {total} bytes"
                got += len(d)
                reads += 1
                if on_progress:
                    on_progress(got)
                if slow_reader and reads % 4 == 0:
                    time.sleep(0.001)
                if not s.pending():
                    break
    finally:
        s.setblocking(True)
    return got


@test
def big_both_ways_slow_readers_rss_bounded(cert):
    """BIG bytes through the echo backend, first with a slow client, then with a slow backend:
    backpressure keeps the proxy's memory flat whatever the speeds."""
    for slow_backend in (False, True):
        be = Backend(lambda c: echo(c, slow=slow_backend))
        px = Proxy(cert, be.port)
        try:
            with tls_connect(px.tls, cert) as s:
                echo_roundtrip(s, b"warm")
                base = px.rss_kib()
                peak = [base]
                done = threading.Event()

                def watch():
                    while not done.is_set():
                        try:
                            peak[0] = max(peak[0], px.rss_kib())
                        except OSError:
                            return
                        time.sleep(0.05)
                threading.Thread(target=watch, daemon=True).start()
                assert pump_both_ways(s, BIG, slow_reader=not slow_backend) == BIG
                done.set()
            grew = peak[0] - base
            print(f"  {'slow backend' if slow_backend else 'slow client'}: {BIG >> 20} MiB each "
                  f"way, proxy RSS {base} KiB -> peak {peak[0]} KiB")
            # Unbounded buffering would hold most of BIG. Under ASan freed memory sits in its
            # quarantine, so RSS says nothing about buffering there: the transfer alone is checked.
            if os.environ.get("TLSLOOP_PHASE") != "asan":
                assert grew < 24 * 1024, f"the proxy's RSS grew by {grew} KiB"
        finally:
            assert px.stop() == 0
            be.close()


@test
def upload_to_a_slow_sink_rss_bounded(cert):
    """BIG bytes one way into a sink that reads slowly: the client is held back by
    backpressure (the proxy stops reading it), every byte arrives, the proxy's memory stays flat."""
    be = Backend(slow_sink(BIG))
    px = Proxy(cert, be.port)
    try:
        with tls_connect(px.tls, cert) as s:
            chunk = os.urandom(1 << 16)
            base = px.rss_kib()
            peak = base
            sent = 0
            while sent < BIG:
                n = min(len(chunk), BIG - sent)
                s.sendall(chunk[:n])
                sent += n
                if sent % (4 << 20) == 0:
                    peak = max(peak, px.rss_kib())
            answer = b""
            while not answer.endswith(b"\n"):
                d = s.recv(100)
                assert d, answer
                answer += d
            assert answer == f"got {BIG}\n".encode(), answer
        print(f"  {BIG >> 20} MiB into a slow sink, proxy RSS {base} KiB -> peak {peak} KiB")
        if os.environ.get("TLSLOOP_PHASE") != "asan":
            assert peak - base < 24 * 1024, f"the proxy's RSS grew by {peak - base} KiB"
    finally:
        assert px.stop() == 0
        be.close()


@test
def half_close_carried_tls13_and_plain(cert):
    """The client sends, ends its data (close_notify / FIN), and still gets the backend's answer,
    which the backend sends only after it saw the end: the proxy carried it as a FIN."""
    be = Backend(answer_after_eof)
    px = Proxy(cert, be.port)
    try:
        data = os.urandom(200000)
        # TLS 1.3 over a memory BIO: python's sockets cannot send close_notify and keep reading.
        ctx = ctx_for(cert, ssl.TLSVersion.TLSv1_3)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
        raw = socket.create_connection(("127.0.0.1", px.tls), timeout=20 * SLOW)

        def flush():
            pending = out.read()
            if pending:
                raw.sendall(pending)

        def feed():
            d = raw.recv(65536)
            if d:
                inc.write(d)
            else:
                inc.write_eof()
            return d
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                feed()
        flush()
        obj.write(data)
        flush()
        try:
            obj.unwrap()   # our close_notify; the answer has not come yet
        except ssl.SSLWantReadError:
            pass
        flush()
        answer = b""
        while True:
            try:
                d = obj.read(65536)
                if not d:
                    break
                answer += d
            except ssl.SSLWantReadError:
                if not feed():
                    break
            except ssl.SSLZeroReturnError:
                break
        raw.close()
        assert answer == f"got {len(data)}\n".encode(), answer
        with socket.create_connection(("127.0.0.1", px.plain), timeout=20 * SLOW) as p:
            p.sendall(data)
            p.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                d = p.recv(65536)
                if not d:
                    break
                answer += d
            assert answer == f"got {len(data)}\n".encode(), answer
    finally:
        assert px.stop() == 0
        be.close()


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


@test
def backend_reset_is_carried(cert):
    be = Backend(reset_after_first_read)
    px = Proxy(cert, be.port)
    try:
        raw = socket.create_connection(("127.0.0.1", px.tls), timeout=20 * SLOW)
        with ctx_for(cert).wrap_socket(raw, server_hostname="localhost",
                                       suppress_ragged_eofs=False) as s:
            s.sendall(b"hello")
            try:
                d = s.recv(100)
                raise AssertionError(f"a clean end ({d!r}) where a reset was expected")
            except (ConnectionResetError, ssl.SSLEOFError):
                pass   # python reports the RST under TLS as either; never a clean end
        with socket.create_connection(("127.0.0.1", px.plain), timeout=20 * SLOW) as p:
            p.sendall(b"hello")
            try:
                d = p.recv(100)
                raise AssertionError(f"{d!r} where a reset was expected")
            except ConnectionResetError:
                pass
    finally:
        assert px.stop() == 0
        be.close()


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


@test
def client_reset_is_carried(cert):
    outcomes = []

    def record(c):
        try:
            while c.recv(65536):
                pass
            outcomes.append("eof")
        except ConnectionResetError:
            outcomes.append("reset")
    be = Backend(record)
    px = Proxy(cert, be.port)
    try:
        s = tls_connect(px.tls, cert)
        s.sendall(b"hello")
        deadline = time.monotonic() + 10 * SLOW
        while be.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()   # an RST
        while not outcomes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert outcomes == ["reset"], outcomes
    finally:
        assert px.stop() == 0
        be.close()


@test
def sigterm_during_a_transfer_lets_it_finish(cert):
    be = Backend(lambda c: echo(c, slow=True))
    px = Proxy(cert, be.port)
    try:
        with tls_connect(px.tls, cert) as s:
            total = 16 << 20
            signalled = []

            def midway(got):
                if got > total // 4 and not signalled:
                    signalled.append(got)
                    px.proc.send_signal(signal.SIGTERM)
            assert pump_both_ways(s, total, slow_reader=False, on_progress=midway) == total
            assert signalled
        assert px.proc.wait(30 * SLOW) == 0
        assert "SIGTERM" in px.log_text()
    finally:
        px.stop()
        be.close()


@test
def curl_and_s_client_through_the_proxy(cert):
    be = Backend(http_hello)
    px = Proxy(cert, be.port)
    try:
        r = subprocess.run(["curl", "-sS", "--cacert", cert[0], f"https://localhost:{px.tls}/"],
                           capture_output=True, text=True, timeout=20 * SLOW)
        assert r.returncode == 0 and r.stdout == "hello through the proxy\n", (r.stdout, r.stderr)
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{px.tls}",
                            "-servername", "localhost", "-CAfile", cert[0],
                            "-verify_return_error", "-ign_eof", "-quiet"],
                           input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True,
                           timeout=20 * SLOW)
        assert b"hello through the proxy" in r.stdout, (r.stdout, r.stderr[-500:])
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
        TMP = tmp
        cert = (f"{tmp}/cert.pem", f"{tmp}/key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2",
                        "-keyout", cert[1], "-out", cert[0]], check=True, capture_output=True)
        tests = [echo_tls13_tls12_and_plain, big_both_ways_slow_readers_rss_bounded,
                 upload_to_a_slow_sink_rss_bounded,
                 half_close_carried_tls13_and_plain, backend_down_client_gets_close_notify,
                 one_of_two_backends_down, failed_backend_found_again_after_retry,
                 backend_reset_is_carried, client_reset_is_carried,
                 proxy_protocol_v1_and_v2_to_the_backend, pp2_client_identity_exact_and_resumed,
                 backend_over_tls_verified,
                 backend_sessions_resumed,
                 sigterm_during_a_transfer_lets_it_finish, curl_and_s_client_through_the_proxy,
                 metrics_page_counts_pairs_and_ends, option_errors]
        run_selected(tests, cert)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
