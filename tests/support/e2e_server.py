"""tests/support/e2e_server.py - what the server-core e2e scripts (tests/e2e/test_server_*.py)
share: certificates made with openssl (make_certs); Server, examples/echo_server on ephemeral
loopback ports; its clients (client_ctx, connect, echo_once, read_line, peer_cn, s_client).

A script calls setup(tmp) first: TMP is its temporary directory, where certificates and logs go.
"""
import os
import re
import socket
import ssl
import subprocess
import threading
import time

from e2e import SLOW

BUILD = os.environ.get("TLSLOOP_BUILD", "build")
ECHO = f"{BUILD}/examples/echo_server"
TMP = None


def setup(tmp):
    """Name the script's temporary directory; returns it."""
    global TMP
    TMP = tmp
    return tmp


def run(*cmd, **kw):
    return subprocess.run(list(cmd), check=True, capture_output=True, **kw)


# ---- certificates -----------------------------------------------------------------------------

def make_ca(name):
    key, pem = f"{TMP}/{name}.key", f"{TMP}/{name}.pem"
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-subj", f"/CN={name}", "-days", "2", "-keyout", key, "-out", pem)
    return pem, key


def make_leaf(name, ca, names, kind="ec", cn=None, days=1):
    key, pem = f"{TMP}/{name}.key", f"{TMP}/{name}.pem"
    alg = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec"
           else ["-newkey", "rsa:2048"])
    san = ",".join(f"IP:{n}" if re.match(r"^[\d.]+$", n) else f"DNS:{n}" for n in names)
    run("openssl", "req", "-x509", "-CA", ca[0], "-CAkey", ca[1], *alg, "-nodes",
        "-subj", f"/CN={cn or names[0]}", "-addext", f"subjectAltName={san}",
        "-addext", "basicConstraints=CA:FALSE", "-days", str(days), "-keyout", key, "-out", pem)
    return pem, key


def make_expired(name, ca):
    """A certificate that expired in 2020 (openssl req cannot backdate; openssl ca can)."""
    key, csr, pem = f"{TMP}/{name}.key", f"{TMP}/{name}.csr", f"{TMP}/{name}.pem"
    d = f"{TMP}/ca-db"
    os.makedirs(d, exist_ok=True)
    open(f"{d}/index.txt", "w").close()
    with open(f"{d}/serial", "w") as f:
        f.write("1000\n")
    with open(f"{d}/ca.conf", "w") as f:
        f.write(f"[ca]\ndefault_ca = x\n[x]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}\n"
                f"serial = {d}/serial\npolicy = p\ndefault_md = sha256\ncopy_extensions = copy\n"
                "[p]\ncommonName = supplied\n")
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={name}.test", "-addext", f"subjectAltName=DNS:{name}.test",
        "-keyout", key, "-out", csr)
    run("openssl", "ca", "-batch", "-config", f"{d}/ca.conf", "-cert", ca[0], "-keyfile", ca[1],
        "-in", csr, "-out", pem, "-notext", "-startdate", "20200101000000Z",
        "-enddate", "20200102000000Z")
    return pem, key


def make_certs(*names):
    """A test CA ("ca") and the named certificates it issued, each a (pem, key) pair: a, b
    (b.test and *.b.test), rsa and ec (both dual.test), localhost, renewed (localhost again, CN
    renewed-localhost), client, expired (in 2020)."""
    ca = make_ca("test-ca")
    makers = {"a": lambda: make_leaf("a", ca, ["a.test"]),
              "b": lambda: make_leaf("b", ca, ["b.test", "*.b.test"]),
              "rsa": lambda: make_leaf("rsa", ca, ["dual.test"], kind="rsa"),
              "ec": lambda: make_leaf("ec", ca, ["dual.test"]),
              "localhost": lambda: make_leaf("localhost", ca, ["localhost", "127.0.0.1"]),
              "renewed": lambda: make_leaf("renewed", ca, ["localhost", "127.0.0.1"],
                                           cn="renewed-localhost"),
              "client": lambda: make_leaf("client", ca, ["client.test"]),
              "expired": lambda: make_expired("expired", ca)}
    c = {"ca": ca}
    for n in names:
        c[n] = makers[n]()
    return c


# ---- the server under test --------------------------------------------------------------------

class Server:
    """echo_server with these options; its ports and stdout lines are collected, its log is a file."""

    def __init__(self, *args, listens=1, log=None, quiet=True, preexec=None):
        self.log = log or f"{TMP}/server-{time.monotonic_ns()}.log"
        cmd = [ECHO] + (["--quiet"] if quiet else []) + ["--log", self.log] + list(args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace", preexec_fn=preexec)
        self.ports = []
        for _ in range(listens):
            line = self.proc.stdout.readline()
            m = re.match(r"listening on port (\d+)", line)
            if not m:
                self.proc.kill()
                raise RuntimeError(f"echo_server did not start: {line!r} {self.proc.stderr.read()}")
            self.ports.append(int(m.group(1)))
        self.port = self.ports[0]
        self.lines = []
        self.cv = threading.Condition()
        threading.Thread(target=self._collect, daemon=True).start()
        self.wait_log(r"listening on")

    def _collect(self):
        for line in self.proc.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10):
        end = time.monotonic() + timeout * SLOW
        while time.monotonic() < end:
            m = re.search(pattern, self.log_text())
            if m:
                return m
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}:\n{self.log_text()[-2000:]}")

    def stats(self, ctx, source=None):
        with connect(self.port, ctx, source=source) as s:
            s.sendall(b"!stats")
            line = read_line(s)
        return {k: int(v) for k, v in (kv.split("=") for kv in line.split())}

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the server did not exit after SIGTERM")
        if rc != 0:   # say how it ended, so a failure in CI can be understood from its log
            how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
            print(f"  echo_server ended with {how}; stderr:\n{self.proc.stderr.read()[-4000:]}")
            print(f"  its log:\n{self.log_text()[-2000:]}")
        return rc


def client_ctx(cafile, version=None, cert=None, ciphers=None):
    ctx = ssl.create_default_context(cafile=cafile)
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def connect(port, ctx, name="localhost", source=None, timeout=10):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW,
                                   source_address=(source, 0) if source else None)
    try:
        return ctx.wrap_socket(raw, server_hostname=name)
    except Exception:
        raw.close()
        raise


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


def echo_once(s, data=b"ping"):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        assert chunk, "connection ended before the echo"
        got += chunk
    assert got == data


def peer_cn(s):
    return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]


def s_client(port, *args, input=b"", timeout=10):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                          input=input, capture_output=True, timeout=timeout * SLOW)
