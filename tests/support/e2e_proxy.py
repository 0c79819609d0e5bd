"""tests/support/e2e_proxy.py - what the `tlsloop proxy` e2e scripts (tests/e2e/test_proxy_*.py)
share: Backend (a TCP server run by the script) and echo, its usual handler; Proxy, the program on
ephemeral loopback ports; TLS clients through it (ctx_for, tls_connect, echo_roundtrip).

A script calls setup(tmp) first: TMP is its temporary directory, and it gets the proxy's
certificate for localhost, (pem, key), which clients trust as their CA.
"""
import os
import re
import socket
import ssl
import subprocess
import threading
import time

from e2e import SLOW, TcpServer, file_text, rss_kib, stop_process, wait_file_match

BUILD = os.environ.get("TLSLOOP_BUILD", "build")
TLSLOOP = f"{BUILD}/tlsloop"
TMP = None


def setup(tmp):
    """Name the script's temporary directory; make the certificate, (pem, key)."""
    global TMP
    TMP = tmp
    cert = (f"{tmp}/cert.pem", f"{tmp}/key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2",
                    "-keyout", cert[1], "-out", cert[0]], check=True, capture_output=True)
    return cert


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


# ---- the proxy under test -----------------------------------------------------------------------

class Proxy:
    """tlsloop proxy (two workers) before these backends; wrap: a command to run it under."""

    def __init__(self, cert, *backends, extra=(), wrap=()):
        self.log = f"{TMP}/proxy-{time.monotonic_ns()}.log"
        cmd = [*wrap, TLSLOOP, "proxy", "--listen", "127.0.0.1:0",
               "--listen", "127.0.0.1:0,plain", "--cert", cert[0], "--key", cert[1],
               "--workers", "2", "--log", self.log,
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
