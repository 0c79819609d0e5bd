#!/usr/bin/env python3
"""test_serve.py - `tlsloop serve` (tlsloop/httpd.h) as a user runs it, on ephemeral loopback
ports, driven by clients nobody here wrote: curl, openssl s_client, python's ssl module,
gnutls-cli where installed.

Covers: the embedded default (generated CA and certificate, built-in page); curl over TLS 1.2 and
1.3 verified with the generated CA; s_client; close_notify before EOF on Connection: close;
keep-alive, pipelining and HTTP/1.0's rules; HEAD, ranges, 304s; request bodies read and
discarded (chunked too, 413 above the limit, 100-continue); every rejection (smuggling, folding,
bare CR, NUL, traversal with .., %2e%2e, %00 and symbolic links, 100 KiB of headers, a slowloris
head) with the server still serving others; a 64 MiB file to a slow reader with the server's
memory bounded (1 GiB under SOAK=1); 1,000 concurrent keep-alive clients; drain on SIGTERM during
a download; redirect to HTTPS; metrics; the access log and its reopen; option errors and --check;
a second server on a port in use (exit 98, the first keeps every connection).

Runs from the repository root; TLSLOOP_BIN is the tlsloop program (build/tlsloop by default).
Ends with "N passed, N failed".
"""
import asyncio
import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, summary, test  # noqa: E402

BIN = os.environ.get("TLSLOOP_BIN", "build/tlsloop")
SOAK = os.environ.get("SOAK") == "1"
TMP = None
STATE = None   # the state directory of the generated CA (made by the first server)
CA = None


# ---- the server under test --------------------------------------------------------------------

class Serve:
    """tlsloop serve with these options; the URLs it prints are collected."""

    def __init__(self, *args, listens=None, state=True, env=None, expect=None):
        self.log = f"{TMP}/serve-{time.monotonic_ns()}.log"
        if listens is None:
            listens = ["127.0.0.1:0", "127.0.0.1:0,plain"]
        cmd = [BIN, "serve"] + [a for l in listens for a in ("--listen", l)]
        if state:
            cmd += ["--state-dir", STATE]
        cmd += ["--log", self.log] + list(args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, errors="replace", env=env)
        self.https = self.http = self.metrics = None
        self.out = []
        deadline = time.monotonic() + 20 * SLOW
        want = (len(listens) + ("--metrics-listen" in args)) if expect is None else expect
        while want and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"tlsloop serve did not start: {self.proc.stderr.read()}")
            self.out.append(line)
            m = re.search(r"listening on (https?)://localhost:(\d+)/", line)
            if m:
                if m.group(1) == "https" and not self.https:
                    self.https = int(m.group(2))
                elif m.group(1) == "http" and not self.http:
                    self.http = int(m.group(2))
                want -= 1
            m = re.search(r"metrics on http://[^ ]+:(\d+)/", line)
            if m:
                self.metrics = int(m.group(1))
                want -= 1
        threading.Thread(target=self._drain_stdout, daemon=True).start()
        self.wait_log(r"listening on")

    def _drain_stdout(self):
        for line in self.proc.stdout:
            self.out.append(line)

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10):
        end = time.monotonic() + timeout * SLOW
        while time.monotonic() < end:
            if re.search(pattern, self.log_text()):
                return
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}:\n{self.log_text()[-2000:]}")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tlsloop serve did not exit after SIGTERM")
        if rc != 0:
            print(f"  tlsloop serve ended with {rc}; stderr:\n{self.proc.stderr.read()[-4000:]}")
            print(f"  its log:\n{self.log_text()[-2000:]}")
        return rc


def ctx(version=None):
    c = ssl.create_default_context(cafile=CA)
    if version:
        c.minimum_version = c.maximum_version = version
    return c


def tls_sock(port, version=None, timeout=10):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    try:
        return ctx(version).wrap_socket(raw, server_hostname="localhost",
                                        suppress_ragged_eofs=False)
    except Exception:
        raw.close()
        raise


def plain_sock(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)


class Reader:
    """Responses read off a stream socket: status, headers, body (Content-Length framed)."""

    def __init__(self, s):
        self.s = s
        self.buf = b""
        self.eof = False

    def _more(self):
        chunk = self.s.recv(65536)
        if not chunk:
            self.eof = True
            raise EOFError("connection closed")
        self.buf += chunk

    def response(self, head_only=False):
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for l in lines[1:]:
            k, v = l.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = 0 if head_only or status in (100, 304) else int(headers.get("content-length", 0))
        while len(self.buf) < n:
            self._more()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed(self):
        """True when the peer ends the stream (cleanly) with nothing more to read."""
        try:
            while True:
                self._more()
        except EOFError:
            return self.buf == b""


def request(port, raw, tls=True):
    """Send raw bytes on a new connection, return (status, headers, body, closed after)."""
    s = tls_sock(port) if tls else plain_sock(port)
    with s:
        s.sendall(raw)
        r = Reader(s)
        st, h, b = r.response(head_only=raw.startswith(b"HEAD "))
        closed = h.get("connection") == "close" and r.closed()
        return st, h, b, closed


def get(port, path="/", headers="", tls=True):
    return request(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode(), tls)


def curl(*args, timeout=30):
    return subprocess.run(["curl", "-sS", "--cacert", CA, *args], capture_output=True,
                          timeout=timeout * SLOW)


def still_serves(srv):
    st, _, body, _ = get(srv.https, "/index.html")
    assert st == 200 and body == b"hello tlsloop\n", (st, body)


def make_root():
    root = f"{TMP}/www"
    os.makedirs(f"{root}/sub", exist_ok=True)
    with open(f"{root}/index.html", "w") as f:
        f.write("hello tlsloop\n")
    with open(f"{root}/sub/index.html", "w") as f:
        f.write("sub index\n")
    with open(f"{root}/style.css", "w") as f:
        f.write("body{}\n")
    with open(f"{root}/data.bin", "wb") as f:
        f.write(bytes(range(256)) * 1024)   # 256 KiB: streamed, not cached
    os.makedirs(f"{root}/noindex", exist_ok=True)
    os.makedirs(f"{root}/a b", exist_ok=True)
    with open(f"{TMP}/secret.txt", "w") as f:
        f.write("secret\n")
    os.symlink(f"{TMP}/secret.txt", f"{root}/abs-link")
    os.symlink("../secret.txt", f"{root}/rel-link")
    os.symlink("index.html", f"{root}/inside-link")
    for name in (".git/config", ".env", "a/.hidden/x", ".well-known/security.txt",
                 ".config/app.json", "sub/.htaccess"):
        os.makedirs(os.path.dirname(f"{root}/{name}"), exist_ok=True)
        with open(f"{root}/{name}", "w") as f:
            f.write(f"contents of {name}\n")
    return root


# ---- tests ------------------------------------------------------------------------------------

@test
def embedded_default_makes_its_ca_and_serves_the_builtin_page(root):
    global STATE, CA
    STATE = f"{TMP}/state"
    srv = Serve()
    try:
        CA = f"{STATE}/ca.pem"
        out = "".join(srv.out)
        assert f"{STATE}/localhost.pem" in out and f"curl --cacert {CA}" in out, out
        assert os.stat(f"{STATE}/localhost.key").st_mode & 0o077 == 0
        r = curl(f"https://localhost:{srv.https}/")
        assert r.returncode == 0 and b"tlsloop serve" in r.stdout and b"Counters" in r.stdout, r
        r = curl(f"https://127.0.0.1:{srv.https}/")   # the IP is in the certificate too
        assert r.returncode == 0, r.stderr
        st, _, body, _ = get(srv.http, "/", tls=False)
        assert st == 200 and b"plain HTTP" in body
    finally:
        assert srv.stop() == 0
    # A second start keeps the CA and the certificate.
    before = open(f"{STATE}/localhost.pem").read()
    srv = Serve()
    try:
        assert open(f"{STATE}/localhost.pem").read() == before
        assert "made a certificate" not in "".join(srv.out)
    finally:
        assert srv.stop() == 0


def cert_text(path):
    return subprocess.run(["openssl", "x509", "-in", path, "-noout", "-text"], capture_output=True,
                          text=True, timeout=30, check=True).stdout


def leaf_days(path):
    r = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-startdate", "-enddate"],
                       capture_output=True, text=True, timeout=30, check=True).stdout
    import email.utils
    t = [email.utils.parsedate_to_datetime(l.split("=", 1)[1].replace("GMT", "+0000"))
         for l in r.split("\n") if "=" in l]
    return (t[1] - t[0]).total_seconds() / 86400


def openssl_leaf(state, days, ca="ca.pem", ca_key="ca.key"):
    """A localhost leaf issued by the CA in state, valid days (negative: already expired)."""
    sh = lambda *a: subprocess.run(a, capture_output=True, timeout=30, check=True, cwd=state)
    sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "localhost.key", "-out", "leaf.csr", "-subj", "/CN=localhost")
    sh("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", ca, "-CAkey", ca_key,
       "-days", str(days), "-out", "localhost.pem")


@test
def generated_ca_is_name_constrained_and_old_ones_are_replaced(root):
    """The local CA vouches for localhost and loopback only (critical nameConstraints), its leaf
    lives 90 days at most; a CA from before (no constraints, a leaf of a year) is replaced on
    start, and an expired leaf is renewed under the CA kept."""
    state = f"{TMP}/old-state"
    os.makedirs(state)
    sh = lambda *a: subprocess.run(a, capture_output=True, timeout=30, check=True, cwd=state)
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650", "-subj", "/CN=tlsloop local CA",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    openssl_leaf(state, 365)
    old_ca = open(f"{state}/ca.pem").read()

    def check():
        r = subprocess.run([BIN, "serve", "--check", "--state-dir", state, "--listen",
                            "127.0.0.1:0"], capture_output=True, text=True, timeout=30 * SLOW)
        assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr
        return r.stdout
    out = check()
    assert "made a new local CA (it was not limited to localhost and loopback)" in out, out
    assert open(f"{state}/ca.pem").read() != old_ca
    text = cert_text(f"{state}/ca.pem")
    assert re.search(r"X509v3 Name Constraints: critical\s+Permitted:\s+DNS:localhost\s+"
                     r"IP:127\.0\.0\.0/255\.0\.0\.0\s+IP:0:0:0:0:0:0:0:1/FFFF:FFFF", text), text
    assert "renewed a certificate for localhost" in out, out
    assert leaf_days(f"{state}/localhost.pem") <= 90
    # The leaf verifies under the new CA (it was issued again, not kept).
    v = subprocess.run(["openssl", "verify", "-CAfile", f"{state}/ca.pem",
                        f"{state}/localhost.pem"],
                       capture_output=True, text=True, timeout=30)
    assert v.returncode == 0, v.stdout + v.stderr
    # Kept as it is on the next start.
    new_ca, leaf = open(f"{state}/ca.pem").read(), open(f"{state}/localhost.pem").read()
    out = check()
    assert "made" not in out and "renewed" not in out, out
    assert open(f"{state}/localhost.pem").read() == leaf
    # An expired leaf is renewed; the CA stays.
    openssl_leaf(state, -1)
    out = check()
    assert "renewed a certificate" in out and "local CA" not in out, out
    assert open(f"{state}/ca.pem").read() == new_ca
    assert leaf_days(f"{state}/localhost.pem") <= 90


@test
def no_options_at_all_listens_on_8443_and_8080(root):
    for port in (8443, 8080):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                print(f"  (port {port} is taken here: skipped)")
                return
    env = dict(os.environ, XDG_STATE_HOME=f"{TMP}/xdg")
    p = subprocess.Popen([BIN, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        lines = [p.stdout.readline() for _ in range(5)]
        text = "".join(lines)
        assert "https://localhost:8443/" in text and "http://localhost:8080/" in text, text
        ca = f"{TMP}/xdg/tlsloop/ca.pem"
        r = subprocess.run(["curl", "-sS", "--cacert", ca, "https://localhost:8443/"],
                           capture_output=True, timeout=20 * SLOW)
        assert r.returncode == 0 and b"tlsloop serve" in r.stdout, r
    finally:
        p.terminate()
        assert p.wait(20 * SLOW) == 0


@test
def curl_tls12_and_tls13_verified(root):
    srv = Serve("--root", root)
    try:
        for flags, want in ((["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"),
                            (["--tlsv1.3"], "TLSv1.3")):
            r = curl(*flags, "-v", "-w", "%{http_code} %{ssl_verify_result}",
                     f"https://localhost:{srv.https}/index.html")
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"hello tlsloop\n200 0", r.stdout
            assert want.encode() in r.stderr, r.stderr[-800:]
        # And the server's certificate is refused without the CA.
        r = subprocess.run(["curl", "-sS", f"https://localhost:{srv.https}/"],
                           capture_output=True, timeout=20 * SLOW,
                           env=dict(os.environ, CURL_CA_BUNDLE="/nonexistent"))
        assert r.returncode != 0
    finally:
        assert srv.stop() == 0


@test
def openssl_s_client_and_gnutls_cli(root):
    srv = Serve("--root", root)
    try:
        req = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.https}",
                            "-servername", "localhost", "-CAfile", CA, "-verify_return_error",
                            "-ign_eof", "-quiet"], input=req, capture_output=True,
                           timeout=20 * SLOW)
        assert r.returncode == 0, r.stderr[-500:]
        assert r.stdout.startswith(b"HTTP/1.1 200 OK") and r.stdout.endswith(b"hello tlsloop\n")
        if shutil.which("gnutls-cli"):
            r = subprocess.run(["gnutls-cli", "--x509cafile", CA, "--port", str(srv.https),
                                "localhost"], input=req, capture_output=True, timeout=20 * SLOW)
            assert b"HTTP/1.1 200 OK" in r.stdout and b"hello tlsloop" in r.stdout, r.stdout[-500:]
        else:
            print("  (gnutls-cli not installed: that half skipped)")
    finally:
        assert srv.stop() == 0


@test
def close_notify_before_eof_on_connection_close(root):
    srv = Serve("--root", root, "--metrics-listen", "127.0.0.1:0")
    try:
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with tls_sock(srv.https, version) as s:
                s.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)   # SSLEOFError here if the end had no close_notify
                    if not chunk:
                        break
                    data += chunk
                assert data.endswith(b"hello tlsloop\n") and b"Connection: close" in data
        # The clients asked for the end, so the server closed without waiting for their
        # close_notify (no lingering drain): both connections ended "local", yet every byte and
        # a close_notify arrived above.
        _, _, body, _ = get(srv.metrics, "/metrics", tls=False)
        m = re.search(r'^tlsloop_connections_closed_total\{end="local"\} (\d+)', body.decode(), re.M)
        assert m and int(m.group(1)) == 2, body.decode()
    finally:
        assert srv.stop() == 0


@test
def keep_alive_pipelining_and_http10(root):
    srv = Serve("--root", root)
    try:
        with tls_sock(srv.https) as s:
            r = Reader(s)
            # Three requests in one write, answered in order on the same connection.
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n"
                      b"HEAD /style.css HTTP/1.1\r\nHost: l\r\n\r\n"
                      b"GET /sub/ HTTP/1.1\r\nHost: l\r\n\r\n")
            st1, h1, b1 = r.response()
            st2, h2, b2 = r.response(head_only=True)
            st3, h3, b3 = r.response()
            assert (st1, b1) == (200, b"hello tlsloop\n")
            assert st2 == 200 and h2["content-length"] == "7" and h2["content-type"].startswith("text/css")
            assert (st3, b3) == (200, b"sub index\n")
            assert "connection" not in h1
            for i in range(50):   # and it stays open
                s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n")
                assert r.response()[0] == 200
        # Streamed files one after another on one connection (an answer the socket takes whole
        # must not leave reading paused), plain and TLS, then pipelined.
        data = open(f"{root}/data.bin", "rb").read()
        for s in (plain_sock(srv.http), tls_sock(srv.https)):
            with s:
                r = Reader(s)
                for i in range(5):
                    s.sendall(b"GET /data.bin HTTP/1.1\r\nHost: l\r\n\r\n")
                    st, _, b = r.response()
                    assert st == 200 and b == data, (i, st, len(b))
                s.sendall(b"GET /data.bin HTTP/1.1\r\nHost: l\r\n\r\n" * 3)
                assert all(r.response()[2] == data for _ in range(3))
        # 200 pipelined requests in one burst: nothing lost, nothing out of order.
        with tls_sock(srv.https) as s:
            r = Reader(s)
            s.sendall(b"".join(f"GET /index.html?n={i} HTTP/1.1\r\nHost: l\r\n\r\n".encode()
                               for i in range(200)))
            assert all(r.response()[0] == 200 for _ in range(200))
        # HTTP/1.0: closes unless asked to keep alive.
        st, h, b, closed = request(srv.https, b"GET /index.html HTTP/1.0\r\n\r\n")
        assert st == 200 and closed, (h, closed)
        with tls_sock(srv.https) as s:
            r = Reader(s)
            s.sendall(b"GET /index.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            st, h, b = r.response()
            assert st == 200 and h.get("connection") == "keep-alive"
            s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            st, h, b = r.response()
            assert st == 200 and h.get("connection") == "close" and r.closed()
        # A client that sends its request and shuts its side still gets the answer.
        with plain_sock(srv.http) as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            r = Reader(s)
            st, _, b = r.response()
            assert st == 200 and b == b"hello tlsloop\n" and r.closed()
        # Headers every answer has.
        st, h, _, _ = get(srv.https, "/index.html")
        assert h["server"].startswith("tlsloop/") and re.match(
            r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", h["date"]), h
    finally:
        assert srv.stop() == 0


@test
def head_ranges_and_conditionals(root):
    srv = Serve("--root", root)
    try:
        data = open(f"{root}/data.bin", "rb").read()
        st, h, b, _ = request(srv.https, b"HEAD /data.bin HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
        assert st == 200 and h["content-length"] == str(len(data)) and h["accept-ranges"] == "bytes"
        etag, lm = h["etag"], h["last-modified"]
        cases = [("bytes=0-99", 206, data[0:100], f"bytes 0-99/{len(data)}"),
                 ("bytes=1000-", 206, data[1000:], f"bytes 1000-{len(data) - 1}/{len(data)}"),
                 ("bytes=-10", 206, data[-10:], None),
                 ("bytes=100-2000000", 206, data[100:], None),
                 (f"bytes={len(data)}-", 416, None, f"bytes */{len(data)}"),
                 ("bytes=0-1,5-6", 200, data, None),     # several ranges: the whole file
                 ("lines=1-2", 200, data, None)]
        for rng, want, body, cr in cases:
            st, h, b, _ = get(srv.https, "/data.bin", f"Range: {rng}\r\n")
            assert st == want, (rng, st)
            if body is not None:
                assert b == body, rng
            if cr:
                assert h["content-range"] == cr, (rng, h)
        st, _, b, _ = get(srv.https, "/data.bin", f"Range: bytes=0-9\r\nIf-Range: {etag}\r\n")
        assert st == 206 and b == data[:10]
        st, _, b, _ = get(srv.https, "/data.bin", "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n")
        assert st == 200 and b == data
        st, h, b, _ = get(srv.https, "/data.bin", f"If-None-Match: \"x\", {etag}\r\n")
        assert st == 304 and b == b"" and h["etag"] == etag and "content-length" not in h
        st, _, _, _ = get(srv.https, "/data.bin", f"If-Modified-Since: {lm}\r\n")
        assert st == 304
        st, _, _, _ = get(srv.https, "/data.bin", "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n")
        assert st == 200
        st, _, _, _ = get(srv.https, "/data.bin", f"If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n")
        assert st == 200   # If-None-Match wins over If-Modified-Since
        # A small cached file changes on disk: the next answers follow within about a second.
        p = f"{root}/style.css"
        st, h, b, _ = get(srv.https, "/style.css")
        assert b == b"body{}\n"
        def settles(check):
            """Within 5 s, ten answers in a row (on either worker) pass the check."""
            end, run = time.monotonic() + 5 * SLOW, 0
            while time.monotonic() < end and run < 10:
                run = run + 1 if check(get(srv.https, "/style.css")) else 0
                time.sleep(0.05 if run else 0.2)
            return run == 10
        with open(p, "w") as f:
            f.write("body{color:red}\n")
        assert settles(lambda a: a[2] == b"body{color:red}\n")
        os.unlink(p)
        assert settles(lambda a: a[0] == 404)
        with open(p, "w") as f:
            f.write("body{}\n")
    finally:
        assert srv.stop() == 0


@test
def paths_and_the_root(root):
    srv = Serve("--root", root)
    try:
        cases = [("/", 200), ("/sub", 301), ("/sub/", 200), ("/a%20b", 301), ("/noindex/", 403), ("/nope", 404),
                 ("/inside-link", 200), ("/abs-link", 403), ("/rel-link", 403),
                 ("/../secret.txt", 400), ("/%2e%2e/secret.txt", 400), ("/sub/%2E%2e/%2e%2e/secret.txt", 400),
                 ("/sub/../index.html", 200), ("/index%2ehtml", 200), ("/a%00b", 400), ("/%zz", 400),
                 ("//sub//index.html", 200), ("http://localhost/index.html", 200), ("*", 400)]
        for path, want in cases:
            st, h, b, _ = get(srv.https, path)
            assert st == want, (path, st, b[:80])
            if want == 301:   # to the same path with a slash, escaped again for the header
                assert h["location"] == path + "/", h
        still_serves(srv)
    finally:
        assert srv.stop() == 0


@test
def dotfiles_are_not_served(root):
    """A repository, secrets and editor state are refused (404) however the dot is written;
    /.well-known/ is served, and allow-dotfiles names the others a site means to publish."""
    refused = ["/.git/config", "/.git/", "/.git", "/.env", "/a/.hidden/x", "/%2egit/config",
               "/%2Eenv", "/sub/%2ehtaccess", "/a/%2Ehidden/x", "/sub/../.env", "//.env",
               "/.config/app.json", "http://localhost/.env"]
    srv = Serve("--root", root)
    try:
        for path in refused:
            st, _, b, _ = get(srv.https, path)
            assert st == 404 and b"contents of" not in b, (path, st, b[:80])
        st, _, b, _ = get(srv.https, "/.well-known/security.txt")
        assert st == 200 and b"contents of .well-known" in b, (st, b)
        still_serves(srv)
    finally:
        assert srv.stop() == 0
    srv = Serve("--root", root, "--allow-dotfiles", ".config,.htaccess")
    try:
        for path, want in [("/.config/app.json", 200), ("/%2econfig/app.json", 200),
                           ("/sub/.htaccess", 200), ("/.env", 404), ("/.git/config", 404),
                           ("/.well-known/security.txt", 200)]:
            st, _, b, _ = get(srv.https, path)
            assert st == want, (path, st, b[:80])
    finally:
        assert srv.stop() == 0
    r = subprocess.run([BIN, "serve", "--allow-dotfiles", "git"], capture_output=True, text=True,
                       timeout=30 * SLOW)
    assert r.returncode == 2 and "allow-dotfiles git: expected names that start with a dot" \
        in r.stderr, r.stderr


@test
def rejections_close_only_that_connection(root):
    srv = Serve("--root", root, "--max-body", "64k")
    try:
        bad = [
            (b"POST / HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
            (b"POST / HTTP/1.1\r\nHost: l\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
            (b"POST / HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: l\r\nX-A: a\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: l\rX: y\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: l\r\nX: a\x00b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHo st: l\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : l\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: l\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nHost: l\r\nExpect: tea\r\n\r\n", 417),
            (b"POST / HTTP/1.1\r\nHost: l\r\nContent-Length: 70000\r\n\r\n", 413),
            (b"GET / HTTP/1.1\r\nHost: l\r\n" + b"X-Big: " + b"a" * 100 * 1024 + b"\r\n\r\n", 431),
            (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: l\r\n\r\n", 414),
        ]
        for raw, want in bad:
            st, h, b, closed = request(srv.https, raw)
            assert st == want and closed, (raw[:60], st, h)
            assert b.startswith(b"<!doctype html>"), b
        # A chunked body over the limit is refused while it arrives.
        s = tls_sock(srv.https)
        with s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(20):
                s.sendall(b"1000\r\n" + b"x" * 4096 + b"\r\n")
            r = Reader(s)
            st, h, b = r.response()
            assert st == 413 and r.closed()
        # Request smuggling through pipelining: the second "request" inside a body never runs.
        with tls_sock(srv.https) as s:
            r = Reader(s)
            s.sendall(b"POST /index.html HTTP/1.1\r\nHost: l\r\nContent-Length: 33\r\n\r\n"
                      b"GET /secret HTTP/1.1\r\nHost: l\r\n\r\n"
                      b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n")
            st1, h1, _ = r.response()
            st2, _, b2 = r.response()
            assert st1 == 405 and h1["allow"] == "GET, HEAD" and st2 == 200 and b2 == b"hello tlsloop\n"
        still_serves(srv)
    finally:
        assert srv.stop() == 0


@test
def bodies_read_and_discarded(root):
    srv = Serve("--root", root, "--max-body", "1m")
    try:
        with tls_sock(srv.https) as s:
            r = Reader(s)
            # A chunked body in pieces, then the next request on the same connection.
            s.sendall(b"POST /index.html HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            time.sleep(0.1)
            s.sendall(b"lo\r\n0\r\nTrailer: x\r\n\r\n")
            st, h, _ = r.response()
            assert st == 405 and "connection" not in h
            body = b"x" * 300000
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\nContent-Length: %d\r\n\r\n" % len(body))
            s.sendall(body)
            st, _, b = r.response()
            assert st == 200 and b == b"hello tlsloop\n"
            # Expect: 100-continue: the interim answer, then the final one after the body.
            s.sendall(b"PUT /x HTTP/1.1\r\nHost: l\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            st, _, _ = r.response()
            assert st == 100
            s.sendall(b"data")
            st, _, _ = r.response()
            assert st == 405
    finally:
        assert srv.stop() == 0


@test
def slowloris_head_gets_408_and_others_are_served(root):
    srv = Serve("--root", root, "--header-timeout", "1s")
    try:
        slow = tls_sock(srv.https)
        t0 = time.monotonic()
        slow.sendall(b"GET / HTTP/1.1\r\n")
        r = Reader(slow)
        got = []
        answered = threading.Event()

        def dribble():   # a byte every 100 ms: the deadline counts from the first, not the last
            try:
                for _ in range(40):
                    if answered.is_set():
                        return
                    slow.sendall(b"X")
                    time.sleep(0.1)
            except OSError:
                pass
        t = threading.Thread(target=dribble)
        t.start()
        still_serves(srv)   # meanwhile
        st, h, _ = r.response()
        took = time.monotonic() - t0
        answered.set()
        got.append(st)
        assert st == 408 and h["connection"] == "close", h
        assert 0.8 < took < 4 * SLOW, took
        t.join()
        slow.close()
        # A connection that never sends a byte is closed at the deadline, without an answer.
        with tls_sock(srv.https) as s:
            t0 = time.monotonic()
            assert Reader(s).closed()
            assert 0.8 < time.monotonic() - t0 < 4 * SLOW
        still_serves(srv)
    finally:
        assert srv.stop() == 0


def download(port, path, rate=None, sha=True):
    """GET path over TLS; read at most `rate` bytes/s; returns (status, length, sha256)."""
    with tls_sock(port, timeout=60) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: l\r\n\r\n".encode())
        r = Reader(s)
        while b"\r\n\r\n" not in r.buf:
            r._more()
        head, rest = r.buf.split(b"\r\n\r\n", 1)
        status = int(head.split()[1])
        n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        h = hashlib.sha256(rest)
        got, t0 = len(rest), time.monotonic()
        while got < n:
            chunk = s.recv(min(65536, n - got))
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
            if rate:
                ahead = got / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        return status, got, h.hexdigest()


@test
def big_file_to_a_slow_reader_with_memory_bounded(root):
    size = (1024 if SOAK else 64) * 1024 * 1024
    path = f"{TMP}/big/big.bin"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    block = os.urandom(1024 * 1024)
    want = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
            want.update(block)
    srv = Serve("--root", os.path.dirname(path), "--workers", "1")
    try:
        base = srv.rss_kib()
        peak = [base]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], srv.rss_kib())
                time.sleep(0.05)
        w = threading.Thread(target=watch)
        w.start()
        rate = (200 if SOAK else 24) * 1024 * 1024   # a reader slower than the server
        st, got, sha = download(srv.https, "/big.bin", rate=rate)
        done.set()
        w.join()
        assert st == 200 and got == size and sha == want.hexdigest()
        growth = peak[0] - base
        print(f"  {size >> 20} MiB at {rate >> 20} MiB/s: server RSS {base} -> peak {peak[0]} KiB "
              f"(+{growth} KiB)")
        # The write queue, a chunk and pending records, not the file. Under ASan freed blocks sit
        # in its quarantine for a while, so the churn of pending output shows in RSS there.
        assert growth < (24 if SLOW == 1 else 96) * 1024, growth
    finally:
        assert srv.stop() == 0
        os.unlink(path)


@test
def a_thousand_keep_alive_clients(root):
    n = 1000
    srv = Serve("--root", root)
    try:
        async def client(i, c):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", srv.https, ssl=c, server_hostname="localhost"),
                60 * SLOW)
            ok = 0
            for _ in range(2):
                writer.write(b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60 * SLOW)
                body = await reader.readexactly(14)
                ok += head.startswith(b"HTTP/1.1 200") and body == b"hello tlsloop\n"
            return writer, ok

        async def run():
            c = ctx()
            sem = asyncio.Semaphore(100)   # handshakes in flight at once (the client is python)

            async def one(i):
                async with sem:
                    return await client(i, c)
            got = await asyncio.gather(*(one(i) for i in range(n)))
            # All 1,000 are open at once now: each answers once more, then all close.
            for w, _ in got:
                w.write(b"GET /index.html HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
            ok = sum(k for _, k in got)
            for w, _ in got:
                w.close()
            return ok
        ok = asyncio.run(run())
        assert ok == 2 * n, ok
    finally:
        assert srv.stop() == 0


@test
def sigterm_lets_a_download_finish(root):
    size = 16 * 1024 * 1024
    path = f"{TMP}/drain/file.bin"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    srv = Serve("--root", os.path.dirname(path))
    try:
        idle = tls_sock(srv.https)   # an idle keep-alive connection: closed at once
        res = {}

        def dl():
            res["r"] = download(srv.https, "/file.bin", rate=8 * 1024 * 1024)
        t = threading.Thread(target=dl)
        t.start()
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGTERM)
        assert Reader(idle).closed()
        t.join(60 * SLOW)
        assert res["r"] == (200, size, hashlib.sha256(data).hexdigest())
        assert srv.proc.wait(20 * SLOW) == 0
        idle.close()
    finally:
        srv.stop()


@test
def redirect_metrics_and_access_log(root):
    alog = f"{TMP}/access.log"
    srv = Serve("--root", root, "--redirect-https", "--metrics-listen", "127.0.0.1:0",
                "--access-log", alog)
    try:
        st, h, _, _ = request(srv.http, b"GET /sub/?q=1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n", tls=False)
        assert st == 308 and h["location"] == f"https://localhost:{srv.https}/sub/?q=1", h
        st, h, _, _ = request(srv.http, b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", tls=False)
        assert h["location"] == f"https://[::1]:{srv.https}/", h
        r = curl("-A", "agent \"quoted\"", f"https://localhost:{srv.https}/index.html")
        assert r.returncode == 0
        st, h, body, _ = get(srv.metrics, "/metrics", tls=False)   # not redirected
        text = body.decode()
        assert st == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
        assert re.search(r'^tlsloop_http_requests_total \d+', text, re.M), text[:500]
        assert re.search(r'^tlsloop_handshakes_total\{kind="full"\} [1-9]', text, re.M)
        assert "# TYPE tlsloop_connections_open gauge" in text
        log = open(alog).read()
        assert re.search(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                         r'"GET /index\.html HTTP/1\.1" 200 14 "-" "agent \\x22quoted\\x22" '
                         r'TLSv1\.3 TLS_\w+ new \d+\.\d{3}$', log, re.M), log
        assert re.search(r'"GET /sub/\?q=1 HTTP/1\.1" 308 \d+ "-" "-" - - - ', log), log
        # SIGUSR1 after a rotation: a new file.
        os.rename(alog, alog + ".1")
        srv.proc.send_signal(signal.SIGUSR1)
        srv.wait_log("log reopened")
        get(srv.https, "/index.html")
        # The line is written once the response has left, which can be after the client read it.
        end = time.monotonic() + 5 * SLOW
        while time.monotonic() < end and "GET /index.html" not in open(alog).read():
            time.sleep(0.05)
        assert "GET /index.html" in open(alog).read()
        assert open(alog + ".1").read().count("GET /index.html") == 1   # curl's, none later
    finally:
        assert srv.stop() == 0


@test
def metrics_only_on_their_own_listener(root):
    """/metrics is nowhere by default, never on a public listener, and on metrics-listen's
    listener only that page is served; metrics PATH alone is refused with the fix."""
    srv = Serve("--root", root)
    try:
        for port, tls in ((srv.https, True), (srv.http, False)):
            st, _, body, _ = get(port, "/metrics", tls=tls)
            assert st == 404 and b"tlsloop_" not in body, (port, st, body[:200])
    finally:
        assert srv.stop() == 0
    srv = Serve("--metrics-listen", "127.0.0.1:0", "--metrics", "/m")   # the built-in page
    try:
        assert srv.metrics not in (srv.https, srv.http)
        st, h, body, _ = get(srv.metrics, "/m", tls=False)
        assert st == 200 and b"tlsloop_http_requests_total" in body, (st, body[:200])
        assert h["cache-control"] == "no-store"
        for path in ("/", "/metrics", "/index.html"):   # nothing else lives there
            assert get(srv.metrics, path, tls=False)[0] == 404, path
        st, _, body, _ = request(srv.metrics, b"POST /m HTTP/1.1\r\nHost: l\r\n"
                                 b"Content-Length: 0\r\n\r\n", tls=False)
        assert st == 405
        for port, tls in ((srv.https, True), (srv.http, False)):
            st, _, body, _ = get(port, "/m", tls=tls)
            assert st == 404 and b"tlsloop_" not in body, (port, st)
            assert get(port, "/", tls=tls)[0] == 200   # the built-in page is public
        assert not any("localhost:%d" % srv.metrics in l for l in srv.out if "listening" in l)
    finally:
        assert srv.stop() == 0
    r = subprocess.run([BIN, "serve", "--check", "--state-dir", STATE, "--metrics", "/metrics"],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 2 and "metrics /metrics: metrics are served only on a listener of " \
        "their own; add metrics-listen" in r.stderr, r.stderr
    r = subprocess.run([BIN, "serve", "--check", "--state-dir", STATE, "--metrics-listen",
                        "127.0.0.1:0,proxy"], capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 2 and "metrics-listen 127.0.0.1:0,proxy: expected [ADDR:]PORT" \
        in r.stderr, r.stderr


@test
def options_errors_check_and_config_file(root):
    def run(*args):
        return subprocess.run([BIN, "serve", *args], capture_output=True, text=True,
                              timeout=30 * SLOW)
    r = run("--help")
    assert r.returncode == 0
    for opt in ("--root DIR", "--listen", "--cert FILE", "--access-log", "--metrics",
                "--metrics-listen [ADDR:]PORT", "--allow-dotfiles NAME[,NAME...]",
                "--workers", "--ticket-key-file", "--config FILE", "--header-timeout",
                "--state-dir", "default 10s"):
        assert opt in r.stdout, opt
    cases = [(["--bogus"], "unknown option --bogus"),
             (["stray"], "unknown argument stray"),
             (["--root", f"{TMP}/missing"], f"root {TMP}/missing: No such file"),
             (["--root", f"{root}/index.html"], "not a directory"),
             (["--header-timeout", "soon"], "header-timeout soon: expected a duration"),
             (["--max-header-size", "10"], "max-header-size 10: expected a size"),
             (["--listen", "127.0.0.1:0", "--cert", f"{TMP}/nope.pem", "--key", f"{TMP}/nope.key"],
              "nope.pem"),
             (["--config", f"{TMP}/nope.conf"], "nope.conf"),
             (["--workers"], "--workers needs a value")]
    for args, msg in cases:
        r = run("--state-dir", STATE, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert msg in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    conf = f"{TMP}/serve.conf"
    with open(conf, "w") as f:
        f.write(f"# a whole configuration\nlisten 127.0.0.1:0\nroot {root}\n"
                f"state-dir {STATE}\nmetrics /m\nmetrics-listen 127.0.0.1:0\nworkers 1\n")
    r = run("--config", conf, "--check")
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr
    srv = Serve("--config", conf, listens=[], state=False, expect=2)
    try:
        assert srv.https and srv.metrics
        st, _, body, _ = get(srv.metrics, "/m", tls=False)
        assert st == 200 and b"tlsloop_http_requests_total" in body
        assert get(srv.https, "/m")[0] == 404
        still_serves(srv)
    finally:
        assert srv.stop() == 0


@test
def a_second_server_on_a_port_in_use_exits_98(root):
    """SO_REUSEPORT would let a second process join the port and take part of its connections;
    it must fail instead (exit 98, the address named), and the first keep every connection."""
    srv = Serve("--root", root, "--workers", "2")
    try:
        for listen in (f"127.0.0.1:{srv.https}", f"127.0.0.1:{srv.http},plain", f"*:{srv.http}"):
            try:
                r = subprocess.run([BIN, "serve", "--state-dir", STATE, "--root", root,
                                    "--listen", listen, "--log", f"{TMP}/second.log"],
                                   capture_output=True, text=True, timeout=10 * SLOW)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"a second server on {listen} ran (it shares the port)")
            port = listen.split(":")[1].split(",")[0]
            assert r.returncode == 98, (listen, r.returncode, r.stderr)
            assert re.search(rf"listen {re.escape(listen)}: address already in use: another "
                             rf"process listens on [\d.]+:{port}", r.stderr), r.stderr
        for _ in range(20):   # the first one still has every connection of both ports
            still_serves(srv)
            st, _, body, _ = get(srv.http, "/index.html", tls=False)
            assert st == 200 and body == b"hello tlsloop\n", (st, body)
    finally:
        assert srv.stop() == 0


def main():
    global TMP
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        root = make_root()
        tests = [embedded_default_makes_its_ca_and_serves_the_builtin_page,
                 generated_ca_is_name_constrained_and_old_ones_are_replaced,
                 no_options_at_all_listens_on_8443_and_8080, curl_tls12_and_tls13_verified,
                 openssl_s_client_and_gnutls_cli, close_notify_before_eof_on_connection_close,
                 keep_alive_pipelining_and_http10, head_ranges_and_conditionals,
                 paths_and_the_root, dotfiles_are_not_served, rejections_close_only_that_connection,
                 bodies_read_and_discarded, slowloris_head_gets_408_and_others_are_served,
                 big_file_to_a_slow_reader_with_memory_bounded, a_thousand_keep_alive_clients,
                 sigterm_lets_a_download_finish, redirect_metrics_and_access_log,
                 metrics_only_on_their_own_listener, options_errors_check_and_config_file,
                 a_second_server_on_a_port_in_use_exits_98]
        only = sys.argv[1:]
        for t in tests:
            if not only or t.__name__ in only or t is tests[0]:
                t(root)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
