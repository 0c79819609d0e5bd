#!/usr/bin/env python3
"""test_get.py - `tlsloop get` (tlsloop/client.h) against `tlsloop serve` and against peers
nobody here wrote: openssl s_server (-www, and plain, where it waits) and small python servers
that misbehave on purpose.

Covers: a verified fetch (-v facts, -I, -o); wrong host name, expired and self-signed
certificates refused with exit 5 and the reason; --insecure; --repeat 5 resuming 4 of 5 over TLS
1.2 and 1.3, checked against the server's own counters; a body until close with close_notify;
shutdown with a read pending against s_server (close_notify both ways, no error on either side);
a server that closes without close_notify, and one that sends less than its Content-Length
(truncated, exit 9); a closed port (4) and a port that accepts but never answers (8, in time);
DNS failure (3); --fail (7); -L and its bound (10); usage errors (2).

Redirects against small python servers that record what they got: the -H headers (Authorization,
Cookie, any other) are not sent to another origin (another port), unless --location-trusted; an
https server redirecting to http is refused (11) unless --allow-downgrade-redirect; relative
Location forms (path, ./.., //host, ?query) resolved as RFC 3986 says; POST after 303/302 becomes
GET, after 307 stays POST; --max-redirs counted. --timeout is one deadline (28): a server that
accepts and never answers, over TLS and plain, and a redirect chain whose first hop is slow, all
end within the timeout and a small margin. A complete response whose TLS connection ends without
close_notify: exit 0, one warning; with -v the facts of the close; the same with close_notify
(python's ssl unwrap): no warning.

Runs from the repository root; TLSLOOP_BIN is the tlsloop program (build/tlsloop by default).
Ends with "N passed, N failed".
"""
import concurrent.futures
import os
import re
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
TMP = None


def get(*args, timeout=30):
    return subprocess.run([BIN, "get", *args], capture_output=True, timeout=timeout * SLOW)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs():
    """A CA, a leaf for localhost, an expired leaf, and a self-signed one."""
    d = TMP
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "30", "-subj", "/CN=get test CA", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, days_args in (("leaf", ["-days", "30"]),
                            ("expired", ["-not_before", "20200101000000Z", "-not_after",
                                         "20200102000000Z"])):
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", "/CN=localhost", "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr")
        try:
            openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey",
                    f"{d}/ca.key", "-CAcreateserial", "-extfile", f"{d}/ext", *days_args,
                    "-out", f"{d}/{name}.pem")
        except subprocess.CalledProcessError:
            # OpenSSL 3.0's x509 has no -not_before: sign with a start date in the past via ca.
            make_expired_with_ca(d, name)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "30", "-subj", "/CN=localhost", "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", f"{d}/self.key",
            "-out", f"{d}/self.pem")


def make_expired_with_ca(d, name):
    db = f"{d}/ca-db"
    os.makedirs(db, exist_ok=True)
    open(f"{db}/index.txt", "w").close()
    with open(f"{db}/serial", "w") as f:
        f.write("1000\n")
    with open(f"{db}/ca.conf", "w") as f:
        f.write(f"[ca]\ndefault_ca = x\n[x]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\n"
                f"serial = {db}/serial\npolicy = p\ndefault_md = sha256\n"
                "[p]\ncommonName = supplied\n[e]\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("ca", "-batch", "-config", f"{db}/ca.conf", "-cert", f"{d}/ca.pem", "-keyfile",
            f"{d}/ca.key", "-in", f"{d}/{name}.csr", "-out", f"{d}/{name}.pem", "-notext",
            "-extensions", "e", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z")


class Serve:
    def __init__(self, *args):
        self.proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--listen",
                                      "127.0.0.1:0,plain", "--cert", f"{TMP}/leaf.pem", "--key",
                                      f"{TMP}/leaf.key", "--root", f"{TMP}/www",
                                      "--metrics-listen", "127.0.0.1:0",
                                      "--log", f"{TMP}/serve.log", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ports = []
        while len(ports) < 3:   # https, http, then the metrics listener
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(self.proc.stderr.read())
            m = re.search(r"(?:listening|metrics) on https?://[^ ]+:(\d+)/", line)
            if m:
                ports.append(int(m.group(1)))
        self.https, self.http, self.metrics_port = ports

    def metric(self, name):
        r = get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        m = re.search(rf"^{re.escape(name)} (\d+)", r.stdout.decode(), re.M)
        return int(m.group(1))

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(20 * SLOW) == 0


class SServer:
    """openssl s_server on a free port, its output collected."""

    def __init__(self, cert, key, *args):
        self.port = free_port()
        self.proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}",
                                      "-cert", cert, "-key", key, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        # Ready when it says ACCEPT (no probe connection: s_server would log it as an error).
        self.early = b""
        while b"ACCEPT" not in self.early:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"s_server did not start: {self.early!r}")
            self.early += line

    def stop(self, wait=0):
        """Its output; with wait, give it that long to exit by itself (-naccept) and flush."""
        try:
            out = self.proc.communicate(timeout=wait * SLOW)[0] if wait else None
        except subprocess.TimeoutExpired:
            out = None
        if out is None:
            self.proc.kill()
            out = self.proc.communicate()[0]
        out = self.early + out
        return out.decode(errors="replace")


def expect(r, code, msg=None):
    err = r.stderr.decode(errors="replace")
    assert r.returncode == code, (r.returncode, code, err[-600:])
    if msg:
        assert re.search(msg, err), (msg, err[-600:])
    lines = [l for l in err.splitlines() if l.startswith("tlsloop get:")]
    if code not in (0,):
        assert len(lines) == 1, err   # one line names the cause


# ---- tests ------------------------------------------------------------------------------------

@test
def verified_fetch_verbose_head_and_output(srv):
    r = get("--cacert", f"{TMP}/ca.pem", f"https://localhost:{srv.https}/index.html")
    expect(r, 0)
    assert r.stdout == b"hello get\n"
    r = get("-v", "--cacert", f"{TMP}/ca.pem", f"https://127.0.0.1:{srv.https}/index.html")
    expect(r, 0)
    err = r.stderr.decode()
    for want in ("* TLS: TLSv1.3", "ALPN http/1.1", "new session", "certificate: subject CN=localhost",
                 "issuer CN=get test CA", "verification: ok", "> GET /index.html HTTP/1.1",
                 "< HTTP/1.1 200 OK", "< Content-Length: 10", "connection closed: clean"):
        assert want in err, (want, err)
    r = get("-I", f"http://127.0.0.1:{srv.http}/index.html")
    expect(r, 0)
    assert r.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 10\r\n" in r.stdout
    out = f"{TMP}/big.out"
    r = get("-o", out, "--cacert", f"{TMP}/ca.pem", f"https://localhost:{srv.https}/big.bin")
    expect(r, 0)
    assert open(out, "rb").read() == open(f"{TMP}/www/big.bin", "rb").read()


@test
def verification_failures(srv):
    r = get("--cacert", f"{TMP}/ca.pem", "--resolve", f"wrong.test:{srv.https}:127.0.0.1",
            f"https://wrong.test:{srv.https}/")
    expect(r, 5, "certificate verify failed: hostname mismatch")
    r = get(f"https://localhost:{srv.https}/")   # the system store does not know our CA
    expect(r, 5, "certificate verify failed: unable to get local issuer certificate")
    exp = SServer(f"{TMP}/expired.pem", f"{TMP}/expired.key", "-www")
    try:
        r = get("--cacert", f"{TMP}/ca.pem", f"https://localhost:{exp.port}/")
        expect(r, 5, "certificate verify failed: certificate has expired")
    finally:
        exp.stop()
    selfs = SServer(f"{TMP}/self.pem", f"{TMP}/self.key", "-www")
    try:
        r = get("--cacert", f"{TMP}/ca.pem", f"https://localhost:{selfs.port}/")
        expect(r, 5, "certificate verify failed: self[- ]signed certificate")
        r = get("-k", f"https://localhost:{selfs.port}/")   # loudly, but it works
        expect(r, 0)
        assert b"WARNING: --insecure" in r.stderr and b"s_server" in r.stdout
    finally:
        selfs.stop()


@test
def repeat_resumes_four_of_five(srv):
    for flag in ("--tlsv1.2", "--tlsv1.3"):
        full0 = srv.metric('tlsloop_handshakes_total{kind="full"}')
        res0 = srv.metric('tlsloop_handshakes_total{kind="resumed"}')
        r = get(flag, "--repeat", "5", "--cacert", f"{TMP}/ca.pem",
                f"https://localhost:{srv.https}/index.html")
        expect(r, 0)
        assert b"5 fetches, 4 resumed" in r.stderr, r.stderr
        assert r.stdout == b"hello get\n"   # the body once
        full = srv.metric('tlsloop_handshakes_total{kind="full"}') - full0
        res = srv.metric('tlsloop_handshakes_total{kind="resumed"}') - res0
        assert (full, res) == (1, 4), (flag, full, res)


@test
def s_server_www_body_until_close(srv):
    s = SServer(f"{TMP}/leaf.pem", f"{TMP}/leaf.key", "-www")
    try:
        r = get("-v", "--cacert", f"{TMP}/ca.pem", f"https://localhost:{s.port}/")
        expect(r, 0)
        assert b"s_server" in r.stdout and b"connection closed: clean" in r.stderr, r.stderr
    finally:
        s.stop()


@test
def shutdown_with_a_read_pending_against_s_server(srv):
    """s_server without -www never answers: the read stays pending until --timeout, then the
    shutdown sends close_notify and s_server answers with its own; neither side reports an
    error."""
    s = SServer(f"{TMP}/leaf.pem", f"{TMP}/leaf.key", "-naccept", "1")
    try:
        t0 = time.monotonic()
        r = get("-v", "--timeout", "1s", "--cacert", f"{TMP}/ca.pem", f"https://localhost:{s.port}/")
        took = time.monotonic() - t0
        expect(r, 28, "timed out after 1000 ms .--timeout. waiting for the response")
        assert took < 5 * SLOW, took
        assert b"connection closed: clean" in r.stderr, r.stderr
    finally:
        out = s.stop(wait=10)   # it exits after its one connection, output flushed
    assert "GET / HTTP/1.1" in out, out             # it got the request
    assert "DONE" in out and "shutting down SSL" in out, out   # and our close_notify
    assert not re.search(r"error|bad record mac|short read", out, re.I), out


def misbehaving_server(answer, tls=True):
    """A one-connection TLS server: reads the request, sends `answer`, then closes the TCP
    connection without close_notify."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{TMP}/leaf.pem", f"{TMP}/leaf.key")

    def serve():
        try:
            c, _ = lsock.accept()
            s = ctx.wrap_socket(c, server_side=True) if tls else c
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(4096)
            s.sendall(answer)
            time.sleep(0.1)
            # Close the TCP connection under TLS: no close_notify.
            if tls:
                raw = socket.socket(fileno=s.detach())
                raw.close()
            else:
                s.close()
        except OSError:
            pass
        finally:
            lsock.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return port, t


@test
def truncations_are_errors(srv):
    port, t = misbehaving_server(b"HTTP/1.1 200 OK\r\n\r\nhalf a body")
    r = get("--cacert", f"{TMP}/ca.pem", f"https://localhost:{port}/")
    t.join(10)
    expect(r, 9, "truncated: the connection ended without close_notify")
    assert r.stdout == b"half a body"   # what came is written, and the exit says it is not all
    port, t = misbehaving_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    r = get("--cacert", f"{TMP}/ca.pem", f"https://localhost:{port}/")
    t.join(10)
    expect(r, 9, "after 10 of 100 bytes")
    port, t = misbehaving_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                                 tls=False)
    r = get(f"http://127.0.0.1:{port}/")
    t.join(10)
    expect(r, 9, "unsafe response framing")
    port, t = misbehaving_server(b"SSH-2.0-not-http\r\n", tls=False)
    r = get(f"http://127.0.0.1:{port}/")
    t.join(10)
    expect(r, 9, "malformed response")


@test
def closed_port_silent_port_and_dns(srv):
    port = free_port()
    t0 = time.monotonic()
    r = get("--timeout", "2s", f"https://127.0.0.1:{port}/")
    expect(r, 4, f"connect to 127.0.0.1:{port}: Connection refused")
    assert time.monotonic() - t0 < 2 * SLOW
    # A listener that never accepts: the kernel completes TCP, nobody ever answers the TLS.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        t0 = time.monotonic()
        r = get("--timeout", "1s", f"https://127.0.0.1:{silent.getsockname()[1]}/")
        took = time.monotonic() - t0
        expect(r, 28, "timed out")
        assert 0.8 < took < 4 * SLOW, took
    finally:
        silent.close()
    r = get("http://does-not-exist.invalid/")
    expect(r, 3, "cannot resolve does-not-exist.invalid")


@test
def fail_redirects_and_usage(srv):
    r = get("-f", f"http://127.0.0.1:{srv.http}/nope")
    expect(r, 7, "the server answered 404")
    assert r.stdout == b""
    r = get(f"http://127.0.0.1:{srv.http}/nope")   # without --fail: the body, and success
    expect(r, 0)
    assert b"404 Not Found" in r.stdout
    r = get(f"http://127.0.0.1:{srv.http}/sub")    # no -L: the redirect itself
    expect(r, 0)
    assert b"301 Moved Permanently" in r.stdout
    r = get("-L", f"http://127.0.0.1:{srv.http}/sub")
    expect(r, 0)
    assert r.stdout == b"sub index\n"
    r = get("-L", "--max-redirs", "0", f"http://127.0.0.1:{srv.http}/sub")
    expect(r, 10, "more than 0 redirects")
    for args, msg in ((["ftp://x/"], "not an http:// or https:// URL"), ([], "no URL"),
                      (["--bogus", "http://x/"], "unknown option --bogus"),
                      (["http://x:99999/"], "bad port"), (["--timeout", "soon", "http://x/"], "--timeout"),
                      (["--resolve", "nonsense", "http://x/"], "--resolve nonsense"),
                      (["--cacert", f"{TMP}/missing.pem", "https://x/"], "missing.pem"),
                      (["http://a/", "http://b/"], "one URL at a time")):
        r = get(*args)
        expect(r, 2, re.escape(msg))
    r = get("--help")
    expect(r, 0)
    assert b"Exit status:" in r.stdout and b"--insecure" in r.stdout


# ---- small servers that record what they got ------------------------------------------------

class Recorder:
    """A loopback HTTP/1.1 server (TLS with the test's leaf certificate when tls) on a port of its
    own: each connection's request is recorded (method, target, headers with lower-case names)
    and answered by answer(req) -> (bytes, how), how being "unwrap" (close_notify, then close),
    "raw" (close the TCP connection under TLS: no close_notify), "close" or "hold" (never
    answer; kept open until stop). Threads end at stop or after 20 s."""

    def __init__(self, answer, tls=False):
        self.answer, self.tls, self.reqs, self.held = answer, tls, [], []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.ctx = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(f"{TMP}/leaf.pem", f"{TMP}/leaf.key")
        self.stopping = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def origin(self):
        return f"{'https' if self.tls else 'http'}://localhost:{self.port}"

    def loop(self):
        end = time.monotonic() + 20 * SLOW
        while not self.stopping and time.monotonic() < end:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                continue
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        try:
            c.settimeout(10 * SLOW)
            s = self.ctx.wrap_socket(c, server_side=True) if self.ctx else c
            buf = b""
            while b"\r\n\r\n" not in buf:
                got = s.recv(4096)
                if not got:
                    return
                buf += got
            lines = buf.split(b"\r\n\r\n")[0].decode().split("\r\n")
            method, target, _ = lines[0].split(" ")
            headers = {}
            for l in lines[1:]:
                k, v = l.split(":", 1)
                headers[k.strip().lower()] = v.strip()
            req = {"method": method, "target": target, "headers": headers}
            self.reqs.append(req)
            data, how = self.answer(req)
            if how == "hold":
                self.held.append(s)
                return
            s.sendall(data)
            if how == "unwrap":
                s.unwrap().close()
            elif how == "raw" and self.ctx:
                socket.socket(fileno=s.detach()).close()
            else:
                s.close()
        except (OSError, ValueError):
            pass

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.lsock.close()
        for s in self.held:
            s.close()


def ok(body=b"ok\n", how="close"):
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            + body, how)


def redirect(status, location, how="close"):
    return (f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode(), how)


SECRETS = ["-H", "Authorization: Bearer s3cret", "-H", "Cookie: session=abc", "-H",
           "X-Api-Key: k3y"]


@test
def redirect_to_another_origin_drops_the_headers(srv):
    b = Recorder(lambda req: ok(b"at b\n"))
    # Another port is another origin; "//host:port/path" takes the scheme of the request.
    a = Recorder(lambda req: redirect(302, f"//127.0.0.1:{b.port}/landing")
                 if req["target"] == "/start" else ok())
    try:
        r = get("-v", "-L", *SECRETS, f"http://127.0.0.1:{a.port}/start")
        expect(r, 0)
        assert r.stdout == b"at b\n"
        got = b.reqs[-1]
        assert got["target"] == "/landing", got
        for h in ("authorization", "cookie", "x-api-key"):
            assert h not in got["headers"], got
        assert "user-agent" in got["headers"], got           # ours still go
        assert a.reqs[0]["headers"]["authorization"] == "Bearer s3cret", a.reqs
        assert b"the -H headers are not sent there" in r.stderr, r.stderr
        # --location-trusted: the user says the other host may have them.
        r = get("--location-trusted", *SECRETS, f"http://127.0.0.1:{a.port}/start")
        expect(r, 0)
        got = b.reqs[-1]
        assert got["headers"].get("authorization") == "Bearer s3cret", got
        assert got["headers"].get("cookie") == "session=abc", got
        # The same origin (relative forms): they go, and the forms resolve as RFC 3986 says.
        hops = {"/d/start": "next?x=1", "/d/next?x=1": "../e/./f", "/e/f": "?page=2",
                "/e/f?page=2": "/g"}
        c = Recorder(lambda req: redirect(301, hops[req["target"]]) if req["target"] in hops
                     else ok(b"at g\n"))
        try:
            r = get("-L", *SECRETS, f"http://127.0.0.1:{c.port}/d/start")
            expect(r, 0)
            assert r.stdout == b"at g\n"
            assert [q["target"] for q in c.reqs] == ["/d/start", "/d/next?x=1", "/e/f",
                                                    "/e/f?page=2", "/g"], c.reqs
            assert all(q["headers"].get("authorization") == "Bearer s3cret" for q in c.reqs)
        finally:
            c.stop()
    finally:
        a.stop()
        b.stop()


@test
def https_to_http_redirect_is_refused(srv):
    plain = Recorder(lambda req: ok(b"plain\n"))
    tls = Recorder(lambda req: redirect(302, f"http://localhost:{plain.port}/"), tls=True)
    try:
        args = ["--cacert", f"{TMP}/ca.pem", "-L", f"{tls.origin()}/"]
        r = get(*args)
        expect(r, 11, r"refusing to follow a redirect from https://localhost:\d+ to "
                      r"http://localhost:\d+/.*--allow-downgrade-redirect")
        assert plain.reqs == [] and r.stdout == b""
        r = get("--allow-downgrade-redirect", *args)
        expect(r, 0)
        assert r.stdout == b"plain\n" and len(plain.reqs) == 1
    finally:
        tls.stop()
        plain.stop()


@test
def redirect_methods_and_count(srv):
    def answer(req):
        t = req["target"]
        if t.startswith("/s"):
            return redirect(int(t[2:]), "/after")
        if t == "/loop":
            return redirect(302, "/loop")
        if t == "/long":
            return redirect(302, "/" + "x" * 5000)
        return ok(req["method"].encode())
    a = Recorder(answer)
    try:
        for status, want in ((303, b"GET"), (302, b"GET"), (301, b"GET"), (307, b"POST"),
                             (308, b"POST")):
            r = get("-L", "-X", "POST", f"http://127.0.0.1:{a.port}/s{status}")
            expect(r, 0)
            assert r.stdout == want, (status, r.stdout)
        r = get("-L", "-X", "PUT", f"http://127.0.0.1:{a.port}/s301")   # only POST changes
        assert r.stdout == b"PUT", r.stdout
        n = len(a.reqs)
        r = get("-L", "--max-redirs", "3", f"http://127.0.0.1:{a.port}/loop")
        expect(r, 10, r"more than 3 redirects \(--max-redirs\)")
        assert len(a.reqs) - n == 4, a.reqs[n:]   # the first request and 3 redirects
        r = get("-L", f"http://127.0.0.1:{a.port}/long")   # not cut to a wrong URL, not ignored
        expect(r, 9, "a redirect whose Location is longer than 4095 bytes")
    finally:
        a.stop()


@test
def timeout_is_one_deadline(srv):
    silent = Recorder(lambda req: (b"", "hold"))                # answers nothing, ever
    # A TCP listener whose TLS handshake never starts: accepted by the kernel, never read.
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)

    def slow(req):
        time.sleep(1.2)
        return redirect(302, f"http://127.0.0.1:{silent.port}/")
    first = Recorder(slow)
    def timed(url):
        t0 = time.monotonic()
        r = get("--cacert", f"{TMP}/ca.pem", "-L", "--timeout", "2", url)
        return r, time.monotonic() - t0
    cases = ((f"https://127.0.0.1:{mute.getsockname()[1]}/", "TLS handshake"),
             (f"http://127.0.0.1:{silent.port}/", "waiting for the response"),
             (f"http://127.0.0.1:{first.port}/", "waiting for the response"))
    try:
        with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:   # 2 s, not 6
            results = list(pool.map(timed, [url for url, _ in cases]))
        for (url, what), (r, took) in zip(cases, results):
            expect(r, 28, f"timed out after 2000 ms .--timeout.*{what}")
            assert 1.8 < took < 3 * SLOW, (url, took)
    finally:
        first.stop()
        silent.stop()
        mute.close()


@test
def complete_response_without_close_notify_warns(srv):
    body = b"complete\n"
    raw = Recorder(lambda req: ok(body, "raw"), tls=True)
    clean = Recorder(lambda req: ok(body, "unwrap"), tls=True)
    try:
        r = get("--cacert", f"{TMP}/ca.pem", f"{raw.origin()}/")
        expect(r, 0)
        assert r.stdout == body
        warn = [l for l in r.stderr.decode().splitlines() if l.startswith("tlsloop get:")]
        assert len(warn) == 1 and "without the server's close_notify" in warn[0], r.stderr
        r = get("-v", "--cacert", f"{TMP}/ca.pem", f"{raw.origin()}/")
        expect(r, 0)
        err = r.stderr.decode()
        assert re.search(r"\* close: .*the server's close_notify: not received.*"
                         r"\d+ bytes received, \d+ sent", err), err
        # With close_notify: no warning, and -v says the server closed first, cleanly.
        r = get("-v", "--cacert", f"{TMP}/ca.pem", f"{clean.origin()}/")
        expect(r, 0)
        err = r.stderr.decode()
        assert r.stdout == body and "warning" not in err, err
        assert re.search(r"\* close: the server closed first; the server's close_notify: "
                         r"received; \d+ bytes received", err), err
    finally:
        raw.stop()
        clean.stop()


def main():
    global TMP
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        make_certs()
        os.makedirs(f"{tmp}/www/sub")
        with open(f"{tmp}/www/index.html", "w") as f:
            f.write("hello get\n")
        with open(f"{tmp}/www/sub/index.html", "w") as f:
            f.write("sub index\n")
        with open(f"{tmp}/www/big.bin", "wb") as f:
            f.write(os.urandom(3 * 1024 * 1024 + 17))
        srv = Serve()
        try:
            tests = [verified_fetch_verbose_head_and_output, verification_failures,
                     repeat_resumes_four_of_five, s_server_www_body_until_close,
                     shutdown_with_a_read_pending_against_s_server, truncations_are_errors,
                     closed_port_silent_port_and_dns, fail_redirects_and_usage,
                     redirect_to_another_origin_drops_the_headers,
                     https_to_http_redirect_is_refused, redirect_methods_and_count,
                     timeout_is_one_deadline, complete_response_without_close_notify_warns]
            only = sys.argv[1:]
            for t in tests:
                if not only or t.__name__ in only:
                    t(srv)
        finally:
            srv.stop()
    return summary()


if __name__ == "__main__":
    sys.exit(main())
