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

Runs from the repository root; TLSLOOP_BIN is the tlsloop program (build/tlsloop by default).
Ends with "N passed, N failed".
"""
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
        expect(r, 8, "no complete response within 1000 ms")
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
        expect(r, 8, "timed out")
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
                     closed_port_silent_port_and_dns, fail_redirects_and_usage]
            only = sys.argv[1:]
            for t in tests:
                if not only or t.__name__ in only:
                    t(srv)
        finally:
            srv.stop()
    return summary()


if __name__ == "__main__":
    sys.exit(main())
