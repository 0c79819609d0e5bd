#!/usr/bin/env python3
"""test_examples.py - the example servers against peers nobody here wrote: python's ssl module and
openssl s_client. Checks the close protocol from both sides (no ragged EOF, the peer's close_notify
answered), truncation and reset as the server reports them, and memory per idle connection.

Runs from the repository root; TLSLOOP_BUILD names the build directory (build/ by default).
Ends with "N passed, N failed".
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
import traceback

BUILD = os.environ.get("TLSLOOP_BUILD", "build")
results = {"passed": 0, "failed": 0}


class Server:
    """An example server started on a free port; its stdout lines are collected."""

    def __init__(self, name, cert, key):
        # echo_server runs on the server API and takes its options; https_hello is bare.
        args = (["--listen", "127.0.0.1:0", "--cert", cert, "--key", key]
                if name == "echo_server" else ["0", cert, key])
        self.proc = subprocess.Popen([f"{BUILD}/examples/{name}"] + args,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # The log shares the pipe: info lines (such as OCSP's) may come before the address.
        first, m = "", None
        for _ in range(20):
            line = self.proc.stdout.readline()
            first += line
            m = re.match(r"listening on (?:127\.0\.0\.1:|port )(\d+)", line)
            if m or not line:
                break
        if not m:
            self.proc.kill()
            raise RuntimeError(f"{name} did not start: {first!r}")
        self.port = int(m.group(1))
        self.lines = []
        self.cv = threading.Condition()
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self):
        for line in self.proc.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()

    def wait_line(self, pattern, timeout=10):
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

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
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


def connect(port, ctx, suppress_ragged_eofs=True):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost",
                           suppress_ragged_eofs=suppress_ragged_eofs)


@test
def echo_and_clean_close(srv, cafile):
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        s = connect(srv.port, client_ctx(cafile, version))
        s.sendall(b"hello from python")
        got = b""
        while len(got) < 17:
            got += s.recv(100)
        assert got == b"hello from python", got
        n = srv.wait_line(r"^(\d+): hello from python").split(":")[0]
        s.unwrap()  # sends close_notify and returns only when the server answered with its own
        s.close()
        srv.wait_line(rf"^{n}: closed \(clean\)")
        srv.lines.clear()


@test
def eof_without_close_notify_is_truncation(srv, cafile):
    s = connect(srv.port, client_ctx(cafile))
    s.sendall(b"cut")
    n = srv.wait_line(r"^(\d+): cut").split(":")[0]
    s.recv(10)
    socket.socket(fileno=s.detach()).close()  # the TCP connection ends without close_notify
    srv.wait_line(rf"^{n}: closed \(truncated\)")
    srv.lines.clear()


@test
def reset_is_reported(srv, cafile):
    s = connect(srv.port, client_ctx(cafile))
    s.sendall(b"rst")
    n = srv.wait_line(r"^(\d+): rst").split(":")[0]
    s.recv(10)
    raw = socket.socket(fileno=s.detach())
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()
    srv.wait_line(rf"^{n}: closed \(reset\)")
    srv.lines.clear()


@test
def s_client_echo(srv, cafile):
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}",
                          "-servername", "localhost", "-CAfile", cafile, "-verify_return_error",
                          "-quiet", "-no_ign_eof"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdin.write("ping from s_client\n")
    p.stdin.flush()
    n = srv.wait_line(r"^(\d+): ping from s_client").split(":")[0]
    time.sleep(0.3)  # the echo is on its way back; then end s_client's input
    out, err = p.communicate(timeout=20)
    assert "ping from s_client" in out, (out, err)
    line = srv.wait_line(rf"^{n}: closed")
    assert "tls-error" not in line and "reset" not in line, line


@test
def hello_python_no_ragged_eof(hello, cafile):
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        s = connect(hello.port, client_ctx(cafile, version), suppress_ragged_eofs=False)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)  # raises SSLEOFError if the server skipped close_notify
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"hello, world!\n"), data
        s.close()


@test
def hello_s_client_sees_close_notify(hello, cafile):
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{hello.port}",
                        "-servername", "localhost", "-CAfile", cafile, "-verify_return_error",
                        "-quiet", "-ign_eof"],
                       input="GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", capture_output=True,
                       text=True, timeout=20)
    assert "hello, world!" in p.stdout, (p.stdout, p.stderr)
    assert "unexpected eof" not in p.stderr.lower(), p.stderr
    assert p.returncode == 0, (p.returncode, p.stderr)


@test
def idle_connections_memory(srv, cafile):
    """Memory per idle TLS connection, the client in its own process (this one)."""
    n = int(os.environ.get("IDLE_CONNS", "300"))
    ctx = client_ctx(cafile)
    before = srv.rss_kib()
    conns = []
    for i in range(n):
        s = connect(srv.port, ctx)
        s.sendall(b"x")
        s.recv(1)
        conns.append(s)
    time.sleep(0.3)
    after = srv.rss_kib()
    per = (after - before) * 1024 / n
    print(f"  {n} idle TLS connections: server RSS {before} -> {after} KiB, "
          f"{per:.0f} bytes per connection")
    if os.environ.get("TLSLOOP_PHASE") != "asan":  # ASan's shadow memory makes RSS meaningless
        assert per < 64 * 1024, per
    srv.lines.clear()
    for s in conns:
        s.close()
    # Every connection ends (truncated: python closes without close_notify) and frees itself.
    end = time.monotonic() + 30
    while sum(" closed (" in line for line in srv.lines) < n and time.monotonic() < end:
        time.sleep(0.05)
    assert sum(" closed (" in line for line in srv.lines) == n


def main():
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        srv = Server("echo_server", cert, key)
        hello = Server("https_hello", cert, key)
        try:
            echo_and_clean_close(srv, cert)
            eof_without_close_notify_is_truncation(srv, cert)
            reset_is_reported(srv, cert)
            s_client_echo(srv, cert)
            hello_python_no_ragged_eof(hello, cert)
            hello_s_client_sees_close_notify(hello, cert)
            idle_connections_memory(srv, cert)
        finally:
            srv.stop()
            hello.stop()
            if srv.proc.returncode != 0:
                print(f"FAIL echo_server exited with {srv.proc.returncode}")
                results["failed"] += 1
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
