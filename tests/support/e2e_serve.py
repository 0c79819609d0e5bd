"""tests/support/e2e_serve.py - what the `tlsloop serve` e2e scripts (tests/e2e/test_serve_*.py)
share: Serve, the program on ephemeral loopback ports; sockets to it; Reader, responses off a
stream; request, get and curl; make_root, the document root they serve.

A script calls setup(tmp) first: TMP is its temporary directory, STATE the state directory of the
generated CA (made by the first server), CA that CA's certificate.
"""
import os
import re
import socket
import ssl
import subprocess
import threading
import time

from e2e import SLOW

BIN = os.environ.get("TLSLOOP_BIN", "build/tlsloop")
TMP = None
STATE = None   # the state directory of the generated CA (made by the first server)
CA = None


def setup(tmp):
    """Name the script's temporary directory; (TMP, STATE, CA)."""
    global TMP, STATE, CA
    TMP, STATE, CA = tmp, f"{tmp}/state", f"{tmp}/state/ca.pem"
    return TMP, STATE, CA


# ---- the server under test --------------------------------------------------------------------

class Serve:
    """tlsloop serve with these options; the URLs it prints are collected. wrap: a command to run
    it under (tests/tools/no_uring, say)."""

    def __init__(self, *args, listens=None, state=True, env=None, expect=None, wrap=()):
        self.log = f"{TMP}/serve-{time.monotonic_ns()}.log"
        if listens is None:
            listens = ["127.0.0.1:0", "127.0.0.1:0,plain"]
        cmd = list(wrap) + [BIN, "serve"] + [a for l in listens for a in ("--listen", l)]
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
