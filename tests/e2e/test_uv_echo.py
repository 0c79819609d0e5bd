#!/usr/bin/env python3
"""test_uv_echo.py - examples/uv_echo (tl_engine driven from libuv's loop) against python's ssl module
and openssl s_client: echo of several sizes up to 1 MiB, 50 connections at once, close_notify
both ways, truncation, backpressure, the stop on SIGTERM, the options.

Runs from the repository root; TLSLOOP_BUILD names the build directory (build/ by default).
Ends with "N passed, N failed".
"""
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BUILD = os.environ.get("TLSLOOP_BUILD", "build")
UV_ECHO = f"{BUILD}/examples/uv_echo"
results = {"passed": 0, "failed": 0}


class Server:
    """uv_echo on a free loopback port; its stdout lines are collected."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([UV_ECHO, "--listen", "127.0.0.1:0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = self.proc.stdout.readline()
        m = re.match(r"listening on 127\.0\.0\.1:(\d+)$", first.strip())
        if not m:
            self.proc.kill()
            raise RuntimeError(f"uv_echo did not start: {first!r} {self.proc.stdout.read()}")
        self.port = int(m.group(1))
        self.lines = []
        self.cv = threading.Condition()
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self):
        for line in self.proc.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()

    def wait_line(self, pattern, timeout=20):
        """The first line matching pattern, waiting up to timeout seconds."""
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                for line in self.lines:
                    if re.search(pattern, line):
                        return line
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r} in {self.lines[-10:]}")
                self.cv.wait(left)

    def count(self, pattern):
        with self.cv:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def conn_id(self, sock):
        """The server's number for the connection whose client end is sock."""
        port = sock.getsockname()[1]
        return self.wait_line(rf"^\d+: open 127\.0\.0\.1:{port}$").split(":")[0]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test(fn):
    def run(*args):
        try:
            fn(*args)
            print(f"ok   {fn.__name__}")
            results["passed"] += 1
        except Exception:
            print(f"FAIL {fn.__name__}")
            traceback.print_exc()
            results["failed"] += 1
    run.__name__ = fn.__name__
    return run


def client_ctx(cafile, version=None):
    ctx = ssl.create_default_context(cafile=cafile)
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def connect(port, ctx, rcvbuf=None):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(30)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.connect(("127.0.0.1", port))
    # suppress_ragged_eofs=False: an EOF without close_notify raises instead of reading as b"".
    return ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)


class Exchange:
    """Send data and read its echo on one TLS socket, in one thread (an SSL object must not be
    used by two threads at once), non-blocking: sending never waits for reading or back."""

    def __init__(self, s, data):
        self.s, self.data, self.sent, self.got = s, data, 0, bytearray()
        s.setblocking(False)

    def send_some(self):
        """One record's worth; False when the socket cannot take it now."""
        if self.sent >= len(self.data):
            return False
        try:  # a retry after SSLWantWriteError offers the same bytes, as OpenSSL wants
            self.sent += self.s.send(self.data[self.sent:self.sent + 16384])
            return True
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return False

    def recv_some(self):
        try:
            chunk = self.s.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        assert chunk, f"EOF after {len(self.got)} of {len(self.data)} echoed bytes"
        self.got += chunk
        return True

    def finish(self, timeout=60):
        end = time.monotonic() + timeout
        while len(self.got) < len(self.data):
            assert time.monotonic() < end, f"echo: {len(self.got)} of {len(self.data)} bytes"
            moved = self.send_some()
            moved = self.recv_some() or moved
            if not moved:
                select.select([self.s], [self.s] if self.sent < len(self.data) else [], [], 0.2)
        assert bytes(self.got) == self.data, \
            f"echo of {len(self.data)} bytes: got {len(self.got)}, differing"
        self.s.setblocking(True)
        self.s.settimeout(30)


def echo(s, data):
    Exchange(s, data).finish()


@test
def echo_sizes_and_clean_close(srv, cafile):
    """Each size comes back intact on TLS 1.2 and 1.3; the handshake's task ran on libuv's pool;
    our close_notify is answered with the server's (ssl's unwrap returns only then)."""
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        s = connect(srv.port, client_ctx(cafile, version))
        n = srv.conn_id(s)
        for size in (1, 100, 16384, 16385, 100_000, 1 << 20):
            echo(s, os.urandom(size))
        line = srv.wait_line(rf"^{n}: handshake ")
        want = "TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
        assert want in line, line
        tasks = int(re.search(r", (\d+) task\(s\)", line).group(1))
        assert tasks >= 1, line
        s.unwrap()
        s.close()
        total = 1 + 100 + 16384 + 16385 + 100_000 + (1 << 20)
        line = srv.wait_line(rf"^{n}: closed ")
        assert line == f"{n}: closed (clean), {total} bytes echoed", line


@test
def fifty_connections_at_once(srv, cafile):
    ctx = client_ctx(cafile)
    errors, ids = [], []
    lock = threading.Lock()

    def one(i):
        try:
            s = connect(srv.port, ctx)
            with lock:
                ids.append(srv.conn_id(s))
            echo(s, os.urandom(20_000 + 997 * i))
            s.unwrap()
            s.close()
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(f"connection {i}: {e!r}")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    assert len(ids) == 50, len(ids)
    for n in ids:
        line = srv.wait_line(rf"^{n}: closed ")
        assert f"{n}: closed (clean)" in line, line


@test
def s_client_tls12_and_tls13(srv, cafile):
    for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        before = srv.count(r": closed \(clean\)")
        p = subprocess.Popen(["openssl", "s_client", flag, "-connect", f"127.0.0.1:{srv.port}",
                              "-servername", "localhost", "-CAfile", cafile,
                              "-verify_return_error", "-quiet", "-no_ign_eof"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        p.stdin.write(f"ping over {version}\n")
        p.stdin.flush()
        srv.wait_line(rf"handshake {version} ")
        time.sleep(0.3)  # the echo is on its way back; then s_client's EOF sends close_notify
        out, err = p.communicate(timeout=20)
        assert f"ping over {version}" in out, (out, err)
        assert p.returncode == 0, (p.returncode, err)
        end = time.monotonic() + 10
        while srv.count(r": closed \(clean\)") == before and time.monotonic() < end:
            time.sleep(0.05)
        assert srv.count(r": closed \(clean\)") > before, srv.lines[-5:]


@test
def truncation_is_logged_and_others_go_on(srv, cafile):
    ctx = client_ctx(cafile)
    other = connect(srv.port, ctx)
    echo(other, b"before")
    s = connect(srv.port, ctx)
    n = srv.conn_id(s)
    echo(s, b"cut")
    socket.socket(fileno=s.detach()).close()  # the TCP connection ends without close_notify
    line = srv.wait_line(rf"^{n}: closed ")
    assert line.startswith(f"{n}: closed (truncated)"), line
    echo(other, b"after the truncation of another connection")
    s2 = connect(srv.port, ctx)
    echo(s2, b"a new connection")
    for c in (other, s2):
        c.unwrap()
        c.close()


@test
def backpressure_stops_reading(srv, cafile):
    """A client that sends and does not read: past --high-water unsent bytes the server stops
    reading (its TCP window closes on the client), and goes on once the client reads."""
    s = connect(srv.port, client_ctx(cafile), rcvbuf=32768)
    n = srv.conn_id(s)
    x = Exchange(s, os.urandom(16 << 20))
    # Send only, until the socket has taken nothing for a second.
    while x.sent < len(x.data):
        if not x.send_some() and not select.select([], [s], [], 1.0)[1]:
            break
    srv.wait_line(rf"^{n}: paused ")
    assert x.sent < len(x.data), "the whole 16 MiB went in although the server said it paused"
    x.finish()
    srv.wait_line(rf"^{n}: resumed ")
    s.unwrap()
    s.close()
    srv.wait_line(rf"^{n}: closed \(clean\)")


@test
def given_certificate_and_bad_options(tmp):
    cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-days", "1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    srv = Server("--cert", cert, "--key", key)
    try:
        s = connect(srv.port, client_ctx(cert))
        echo(s, b"with --cert and --key")
        s.unwrap()
        s.close()
    finally:
        srv.stop()
    assert srv.proc.returncode == 0, srv.proc.returncode
    for args, want in ((["--cert", cert], "--cert and --key go together"),
                       (["--listen", "nowhere"], "give ADDR:PORT"),
                       (["--high-water", "12"], "from 1024"),
                       (["--cert", f"{tmp}/missing.pem", "--key", key], "missing.pem"),
                       (["--bogus"], "unknown option --bogus")):
        p = subprocess.run([UV_ECHO, *args], capture_output=True, text=True, timeout=20)
        assert p.returncode != 0 and want in p.stderr, (args, p.returncode, p.stderr)


@test
def sigterm_sends_close_notify_and_exits(srv, cafile):
    s = connect(srv.port, client_ctx(cafile))
    n = srv.conn_id(s)
    echo(s, b"idle now")
    srv.proc.terminate()
    assert s.recv(100) == b""  # close_notify (a bare EOF would raise SSLEOFError)
    s.close()
    srv.wait_line(rf"^{n}: closed \(stopped\)")
    assert srv.proc.wait(20) == 0, srv.proc.returncode
    srv.wait_line(r"^stopped after \d+ connection")


def main():
    if not os.access(UV_ECHO, os.X_OK):
        print(f"FAIL {UV_ECHO} is missing: build it with make build-tests")
        print("0 passed, 1 failed")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        cafile = f"{tmp}/uv_echo.pem"
        srv = Server("--save-cert", cafile)  # its own self-signed certificate (certgen)
        try:
            echo_sizes_and_clean_close(srv, cafile)
            fifty_connections_at_once(srv, cafile)
            s_client_tls12_and_tls13(srv, cafile)
            truncation_is_logged_and_others_go_on(srv, cafile)
            backpressure_stops_reading(srv, cafile)
            sigterm_sends_close_notify_and_exits(srv, cafile)
        finally:
            srv.stop()
        given_certificate_and_bad_options(tmp)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
