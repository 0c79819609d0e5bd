#!/usr/bin/env python3
"""test_server.py - the server core (tlsloop/server.h) through examples/echo_server, driven by
clients nobody here wrote: python's ssl module, openssl s_client, gnutls-cli where installed.

Covers: SNI and RSA/ECDSA certificate choice, mTLS, TLS 1.2/1.3 resumption, tickets shared by two
processes through a key file, SIGHUP reload during a transfer, SIGTERM drain, the connection
limit, the handshake cap, the per-source limit, PROXY v1/v2 (only from proxy-from), the
handshake and send-stall deadlines, renegotiation refused, the check mode and the configuration file, the error log.

Runs from the repository root; TLSLOOP_BUILD names the build directory (build/ by default).
Ends with "N passed, N failed".
"""
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, summary, test  # noqa: E402

BUILD = os.environ.get("TLSLOOP_BUILD", "build")
ECHO = f"{BUILD}/examples/echo_server"
TMP = None


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


# ---- the server under test --------------------------------------------------------------------

class Server:
    """echo_server with these options; its ports and stdout lines are collected, its log is a file."""

    def __init__(self, *args, listens=1, log=None, quiet=True):
        self.log = log or f"{TMP}/server-{time.monotonic_ns()}.log"
        cmd = [ECHO] + (["--quiet"] if quiet else []) + ["--log", self.log] + list(args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace")
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


def wait_for(cond, timeout=10, what="condition"):
    end = time.monotonic() + timeout * SLOW
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def waits_until_freed(srv, ctx, free_slot, limit):
    """A new client at the limit is not served, and is served once free_slot() frees a slot."""
    done = []

    def client():
        with connect(srv.port, ctx, timeout=20) as s:
            echo_once(s)
            done.append(True)
    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.7)
    assert not done, f"a client was served above {limit}"
    free_slot()
    t.join(15 * SLOW)
    assert done, f"the waiting client was not served after {limit} freed a slot"


# ---- tests ------------------------------------------------------------------------------------

@test
def sni_picks_the_certificate(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["a"][0], "--key", c["a"][1],
                 "--cert", c["b"][0], "--key", c["b"][1])
    try:
        ctx = client_ctx(c["ca"][0])
        for name, want in [("a.test", "a.test"), ("b.test", "b.test"), ("x.b.test", "b.test")]:
            with connect(srv.port, ctx, name) as s:
                assert peer_cn(s) == want, (name, peer_cn(s))
                echo_once(s)
        # No SNI (an IP address) and an unknown name get the default, which then fails the name
        # check: the client sees which certificate it got.
        raw = ssl.create_default_context(cafile=c["ca"][0])
        raw.check_hostname = False
        with connect(srv.port, raw, None) as s:
            assert peer_cn(s) == "a.test"
        with connect(srv.port, raw, "unknown.test") as s:
            assert peer_cn(s) == "a.test"
    finally:
        assert srv.stop() == 0


@test
def rsa_and_ecdsa_for_the_same_name(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["rsa"][0], "--key", c["rsa"][1],
                 "--cert", c["ec"][0], "--key", c["ec"][1])
    try:
        for ciphers, want in [("ECDHE-RSA-AES128-GCM-SHA256", "rsaEncryption"),
                              ("ECDHE-ECDSA-AES128-GCM-SHA256", "id-ecPublicKey")]:
            r = s_client(srv.port, "-tls1_2", "-cipher", ciphers, "-servername", "dual.test",
                         input=b"Q\n")
            out = r.stdout.decode()
            assert "Cipher is " + ciphers in out, out[-600:]
        # TLS 1.3: the client's signature algorithms decide.
        for sigalgs, want in [("rsa_pss_rsae_sha256", "RSA"), ("ecdsa_secp256r1_sha256", "ECDSA")]:
            r = s_client(srv.port, "-tls1_3", "-sigalgs", sigalgs, "-servername", "dual.test",
                         input=b"Q\n")
            out = r.stdout.decode()
            m = re.search(r"Peer signature type: (\S+)", out)
            assert m and want in m.group(1), out[-800:]
    finally:
        assert srv.stop() == 0


@test
def mtls_accepts_good_refuses_missing(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--client-ca", c["ca"][0])
    try:
        with connect(srv.port, client_ctx(c["ca"][0], cert=c["client"])) as s:
            echo_once(s)
        # Without a certificate: TLS 1.3 clients learn it at their first read.
        failed = False
        try:
            with connect(srv.port, client_ctx(c["ca"][0])) as s:
                s.sendall(b"hello")
                failed = s.recv(10) == b""
        except (ssl.SSLError, ConnectionError):
            failed = True
        assert failed, "a client without a certificate was served"
        srv.wait_log(r"handshake failed from 127\.0\.0\.1:\d+ .*(certificate|verify)")
        # Resumption still works with client certificates (a session id context is set).
        ctx = client_ctx(c["ca"][0], ssl.TLSVersion.TLSv1_2, cert=c["client"])
        with connect(srv.port, ctx) as s:
            echo_once(s)
            sess = s.session
        raw = socket.create_connection(("127.0.0.1", srv.port))
        with ctx.wrap_socket(raw, server_hostname="localhost", session=sess) as s:
            echo_once(s)
            assert s.session_reused
    finally:
        assert srv.stop() == 0


def s_client_session(port, *args):
    """s_client that stays until the echo came back, so TLS 1.3 tickets (sent after the
    handshake) have arrived before it saves the session."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    p.stdin.write(b"hi\n")
    p.stdin.flush()
    time.sleep(0.3 * SLOW)
    try:
        out, _ = p.communicate(timeout=10 * SLOW)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return out.decode(errors="replace")


def resumed_with_s_client(port_a, port_b, version, cafile):
    sess = f"{TMP}/sess-{time.monotonic_ns()}.pem"
    out = s_client_session(port_a, version, "-CAfile", cafile, "-servername", "localhost",
                           "-sess_out", sess)
    assert "Verify return code: 0" in out, out[-500:]
    out = s_client_session(port_b, version, "-CAfile", cafile, "-servername", "localhost",
                           "-sess_in", sess)
    return "Reused, TLSv1" in out


@test
def resumption_tls12_and_tls13(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key", c["localhost"][1])
    try:
        for v in ["-tls1_2", "-tls1_3"]:
            assert resumed_with_s_client(srv.port, srv.port, v, c["ca"][0]), v
        # Session cache (TLS 1.2 session ids) when tickets are off.
        st = srv.stats(client_ctx(c["ca"][0]))
        assert st["resumed"] >= 2 and st["full"] >= 2, st
    finally:
        assert srv.stop() == 0
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--tickets", "off")
    try:
        assert resumed_with_s_client(srv.port, srv.port, "-tls1_2", c["ca"][0])
    finally:
        assert srv.stop() == 0


@test
def ticket_key_file_shared_by_two_processes(c):
    keyfile = f"{TMP}/ticket.key"
    with open(keyfile, "wb") as f:
        f.write(os.urandom(80) + os.urandom(80))
    os.chmod(keyfile, 0o600)
    args = ["--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key", c["localhost"][1],
            "--ticket-key-file", keyfile]
    a, b = Server(*args), Server(*args)
    other = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                   c["localhost"][1])
    try:
        for v in ["-tls1_3", "-tls1_2"]:
            assert resumed_with_s_client(a.port, b.port, v, c["ca"][0]), v
            # A process with its own keys cannot open the ticket: a full handshake.
            assert not resumed_with_s_client(a.port, other.port, v, c["ca"][0]), v
    finally:
        for s in (a, b, other):
            assert s.stop() == 0
    # A bad key file is refused at start with its name in the message.
    with open(keyfile, "wb") as f:
        f.write(os.urandom(79))
    r = subprocess.run([ECHO, "--check", *args], capture_output=True, text=True)
    assert r.returncode == 1 and "ticket.key" in r.stdout, r.stdout


@test
def ticket_key_file_open_to_others_and_private_key_warning(c):
    """A ticket key file its group or others can read is refused at start, at --check and at a
    reload (the running keys stay); a private key everyone can read is served, with a warning."""
    keyfile = f"{TMP}/ticket-perm.key"
    with open(keyfile, "wb") as f:
        f.write(os.urandom(80))
    os.chmod(keyfile, 0o640)
    key = f"{TMP}/open-key.pem"
    shutil.copy(c["localhost"][1], key)
    os.chmod(key, 0o644)
    args = ["--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key", key,
            "--ticket-key-file", keyfile]
    r = subprocess.run([ECHO, "--check", *args], capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 1 and "open to its group (mode 640)" in r.stdout \
        and f"chmod 600 {keyfile}" in r.stdout, r.stdout
    r = subprocess.run([ECHO, *args], capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode != 0 and "open to its group" in r.stdout + r.stderr, r.stdout + r.stderr
    os.chmod(keyfile, 0o600)
    srv = Server(*args)
    try:
        srv.wait_log(r"key .*open-key\.pem: the private key is readable by every user.*chmod 600")
        a = resumed_with_s_client(srv.port, srv.port, "-tls1_3", c["ca"][0])
        assert a
        os.chmod(keyfile, 0o604)
        srv.signal(signal.SIGHUP)
        srv.wait_log(r"reload failed, keeping the running configuration: .*ticket-perm\.key: "
                     r"the ticket key file is open to other users \(mode 604\).*chmod 600")
        assert resumed_with_s_client(srv.port, srv.port, "-tls1_3", c["ca"][0])
    finally:
        assert srv.stop() == 0


@test
def sighup_new_certificate_during_transfer(c):
    cert, key = f"{TMP}/reload.pem", f"{TMP}/reload.key"
    shutil.copy(c["localhost"][0], cert)
    shutil.copy(c["localhost"][1], key)
    srv = Server("--listen", "127.0.0.1:0", "--cert", cert, "--key", key)
    try:
        ctx = client_ctx(c["ca"][0])
        s = connect(srv.port, ctx)
        assert peer_cn(s) == "localhost"
        total, sent, got = 8 << 20, 0, 0
        chunk = os.urandom(64 << 10)
        reloaded = False
        while got < total:
            if sent < total:
                s.sendall(chunk)
                sent += len(chunk)
            got += len(s.recv(1 << 20))
            if not reloaded and got > total // 4:
                shutil.copy(c["renewed"][0], cert)
                shutil.copy(c["renewed"][1], key)
                srv.signal(signal.SIGHUP)
                srv.wait_log(r"reloaded: generation 2")
                reloaded = True
        s.close()
        with connect(srv.port, ctx) as s2:
            assert peer_cn(s2) == "renewed-localhost", peer_cn(s2)
        # A broken file at the next reload keeps what runs, and says why.
        with open(key, "w") as f:
            f.write("not a key\n")
        srv.signal(signal.SIGHUP)
        srv.wait_log(r"reload failed, keeping the running configuration: .*reload\.(key|pem)")
        with connect(srv.port, ctx) as s3:
            assert peer_cn(s3) == "renewed-localhost"
            echo_once(s3)
    finally:
        assert srv.stop() == 0


@test
def sigterm_drains(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--drain-timeout", "3s")
    ctx = client_ctx(c["ca"][0])
    conns = [connect(srv.port, ctx) for _ in range(5)]
    for s in conns:
        echo_once(s)
    # One more is mid-transfer: 2 MiB sent, its echo partly read.
    busy = connect(srv.port, ctx)
    busy.sendall(os.urandom(2 << 20))
    got = len(busy.recv(1 << 16))
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    # Every connection gets close_notify (a clean EOF, not a reset or a ragged end).
    for s in conns:
        s.settimeout(5 * SLOW)
        assert s.recv(100) == b""
        s.close()
    busy.settimeout(5 * SLOW)
    while True:
        chunk = busy.recv(1 << 20)   # an SSLError here would be a ragged end
        if not chunk:
            break
        got += len(chunk)
    assert got <= 2 << 20
    busy.close()
    assert srv.proc.wait(10 * SLOW) == 0
    assert time.monotonic() - t0 < 5 * SLOW
    # A client that never answers close_notify is cut at the drain deadline.
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--drain-timeout", "1s", "--close-timeout", "30s")
    s = connect(srv.port, ctx)
    echo_once(s)
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.proc.wait(10 * SLOW) == 0
    took = time.monotonic() - t0
    assert 0.8 < took < 4 * SLOW, took
    srv.wait_log(r"still open at the drain deadline")
    s.close()


@test
def connection_limit_makes_clients_wait(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--max-conns", "2", "--workers", "2")
    try:
        ctx = client_ctx(c["ca"][0])
        held = [connect(srv.port, ctx) for _ in range(2)]
        for s in held:
            echo_once(s)
        waits_until_freed(srv, ctx, held[0].close, "max-conns")
        held[1].close()
        st = srv.stats(ctx)
        assert st["accept_pauses"] >= 1, st
    finally:
        assert srv.stop() == 0


@test
def handshake_cap_and_per_source_limit(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--max-handshakes", "2", "--workers", "1")
    try:
        ctx = client_ctx(c["ca"][0])
        silent = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(2)]
        time.sleep(0.2)
        waits_until_freed(srv, ctx, silent[0].close, "max-handshakes")
        silent[1].close()
    finally:
        assert srv.stop() == 0
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--max-per-source", "2")
    try:
        ctx = client_ctx(c["ca"][0])
        held = [connect(srv.port, ctx) for _ in range(2)]
        refused = False
        try:
            with connect(srv.port, ctx) as s:
                echo_once(s)
        except (ssl.SSLError, ConnectionError, AssertionError, OSError):
            refused = True
        assert refused, "a third connection from one source was served"
        with connect(srv.port, ctx, source="127.0.0.2") as s:   # another source is fine
            echo_once(s)
        held[0].close()
        wait_for(lambda: srv.stats(ctx, "127.0.0.3")["conns_open"] <= 2, what="close")
        with connect(srv.port, ctx) as s:   # a freed slot is usable again
            echo_once(s)
        st = srv.stats(ctx, "127.0.0.3")
        assert st["refused_source"] == 1, st
        held[1].close()
        srv.wait_log(r"refused 127\.0\.0\.1:\d+ .*max-per-source")
    finally:
        assert srv.stop() == 0


def proxy_v2(src, sport, dst, dport):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body)


@test
def proxy_protocol_gives_the_client_address(c):
    # The TLS listener trusts its own from= list, the plain one the global proxy-from.
    srv = Server("--listen", "127.0.0.1:0,proxy,from=127.0.0.1,from=10.0.0.0/8", "--cert",
                 c["localhost"][0], "--key", c["localhost"][1],
                 "--listen", "127.0.0.1:0,plain,proxy", "--proxy-from", "127.0.0.0/30", listens=2)
    try:
        ctx = client_ctx(c["ca"][0])
        headers = [b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 443\r\n",
                   proxy_v2("198.51.100.4", 5555, "127.0.0.1", 443),
                   b"PROXY TCP6 2001:db8::1 ::1 1234 443\r\n"]
        wants = ["203.0.113.9:40000", "198.51.100.4:5555", "[2001:db8::1]:1234"]
        for hdr, want in zip(headers, wants):
            raw = socket.create_connection(("127.0.0.1", srv.port))
            # Dribble the header in two pieces: it may arrive in any number of segments.
            raw.sendall(hdr[:7])
            time.sleep(0.05)
            raw.sendall(hdr[7:])
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"!peer")
                assert read_line(s).strip() == want
        # The plain listener: the header and the first data in one segment.
        raw = socket.create_connection(("127.0.0.1", srv.ports[1]))
        raw.sendall(headers[0] + b"!peer")
        assert read_line(raw).strip() == wants[0]
        raw.close()
        # A malformed header closes only that connection.
        bad = socket.create_connection(("127.0.0.1", srv.port))
        good = connect_proxied(srv.port, ctx, headers[1])
        bad.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n")
        bad.settimeout(5)
        try:
            assert bad.recv(10) == b""
        except ConnectionResetError:
            pass   # closed with the header unread: the kernel resets
        bad.close()
        echo_once(good)
        good.close()
        srv.wait_log(r"invalid PROXY protocol header")
        st = stats_via_proxy(srv, ctx)
        assert st["proxy_invalid"] >= 1, st
    finally:
        assert srv.stop() == 0


@test
def proxy_header_only_from_trusted_sources(c):
    """A PROXY header says who the client is: from a peer outside proxy-from (or the listener's
    from=) it would be a forged address. Such a peer is closed before it is read, counted and
    logged; trusted peers are served as before; a proxy listener without a list cannot start."""
    srv = Server("--listen", "127.0.0.1:0,proxy,from=127.0.0.1/32", "--cert", c["localhost"][0],
                 "--key", c["localhost"][1], "--listen", "127.0.0.1:0,plain,proxy",
                 "--proxy-from", "::1,127.0.0.3", "--max-per-source", "100", listens=2)
    try:
        ctx = client_ctx(c["ca"][0])
        hdr = b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 443\r\n"
        for port, source in ((srv.ports[0], "127.0.0.2"), (srv.ports[1], "127.0.0.1")):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW,
                                           source_address=(source, 0))
            try:
                raw.sendall(hdr + b"!peer")
                got = raw.recv(100)
            except ConnectionResetError:
                got = b""   # closed with our bytes unread: the kernel resets
            raw.close()
            assert got == b"", (port, source, got)
            srv.wait_log(rf"closed {re.escape(source)}:\d+ on 127\.0\.0\.1:0,.*proxy.*: not a "
                         r"trusted PROXY header source")
        # Trusted: the listener's own from= list, and the global list for the other.
        with connect_proxied(srv.ports[0], ctx, hdr) as s:
            s.sendall(b"!peer")
            assert read_line(s).strip() == "203.0.113.9:40000"
        raw = socket.create_connection(("127.0.0.1", srv.ports[1]), timeout=10 * SLOW,
                                       source_address=("127.0.0.3", 0))
        raw.sendall(hdr + b"!peer")
        assert read_line(raw).strip() == "203.0.113.9:40000"
        raw.close()
        st = stats_via_proxy(srv, ctx)
        assert st["proxy_untrusted"] == 2 and st["proxy_invalid"] == 0, st
    finally:
        assert srv.stop() == 0
    # Without a trusted list, a proxy listener is a configuration error that says what to do.
    r = subprocess.run([ECHO, "--listen", "127.0.0.1:0,plain,proxy"], capture_output=True,
                       text=True, timeout=10 * SLOW)
    assert r.returncode != 0 and "proxy-from CIDR" in r.stderr and "from=" in r.stderr, r


def connect_proxied(port, ctx, hdr):
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(hdr)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def stats_via_proxy(srv, ctx):
    with connect_proxied(srv.port, ctx, b"PROXY UNKNOWN\r\n") as s:
        s.sendall(b"!stats")
        line = read_line(s)
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split())}


@test
def handshake_deadline_drops_partial_client_hello(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--handshake-timeout", "1s")
    try:
        ctx = client_ctx(c["ca"][0])
        partial = socket.create_connection(("127.0.0.1", srv.port))
        partial.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]))   # a start
        t0 = time.monotonic()
        with connect(srv.port, ctx) as s:   # others are served meanwhile
            echo_once(s)
        partial.settimeout(10)
        try:
            assert partial.recv(100) == b""
        except ConnectionResetError:
            pass
        took = time.monotonic() - t0
        assert 0.8 < took < 2.5 * SLOW, took
        srv.wait_log(r"handshake failed from 127\.0\.0\.1:\d+ .*\(timeout\)")
        assert srv.stats(ctx)["failed_timeout"] == 1
    finally:
        assert srv.stop() == 0


@test
def send_stall_deadline_drops_a_peer_that_stops_reading(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--send-timeout", "1s", quiet=False)
    try:
        # Default buffers: a tiny SO_RCVBUF makes the kernel compact and drop segments, and each
        # retransmission it then takes is progress the server rightly sees.
        raw = socket.create_connection(("127.0.0.1", srv.port))
        s = client_ctx(c["ca"][0]).wrap_socket(raw, server_hostname="localhost")
        s.setblocking(False)
        chunk = os.urandom(16384)
        t_end = time.monotonic() + 20 * SLOW
        ended = False
        while time.monotonic() < t_end and not ended:   # send, never read
            try:
                s.send(chunk)
            except (ssl.SSLWantWriteError, BlockingIOError):
                time.sleep(0.02)
            except (ConnectionError, ssl.SSLError, OSError):
                ended = True
            if any("send stalled" in line for line in srv.lines):
                ended = True
        wait_for(lambda: any("closed (" in l for l in srv.lines), 5, "the close line")
        line = next((l for l in srv.lines if "closed (" in l), None)
        assert line and "send stalled" in line, srv.lines[-5:]
        s.close()
    finally:
        assert srv.stop() == 0


@test
def renegotiation_refused(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key", c["localhost"][1])
    try:
        p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}",
                              "-tls1_2", "-CAfile", c["ca"][0]], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(0.5 * SLOW)
        p.stdin.write(b"R\n")
        p.stdin.flush()
        time.sleep(0.5 * SLOW)
        try:
            p.stdin.write(b"after\n")
            p.stdin.flush()
        except BrokenPipeError:
            pass   # s_client already gave up: the server refused
        try:
            out, _ = p.communicate(timeout=5 * SLOW)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        text = out.decode(errors="replace")
        assert "RENEGOTIATING" in text
        # The server answers with a no_renegotiation alert or closes; it never renegotiates.
        assert ("no renegotiation" in text or "alert" in text or "errno" in text
                or "closed" in text.lower()), text[-800:]
        assert "verify return:1" in text
        assert text.count("depth=0") <= 1, "a second handshake took place"
    finally:
        assert srv.stop() == 0


@test
def gnutls_cli_interoperates(c):
    if not shutil.which("gnutls-cli"):
        print("  (gnutls-cli not installed: skipped)")
        return
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key", c["localhost"][1])
    try:
        r = subprocess.run(["gnutls-cli", "--x509cafile", c["ca"][0], "-p", str(srv.port),
                            "localhost"], input=b"hello gnutls\n", capture_output=True,
                           timeout=10 * SLOW)
        assert b"hello gnutls" in r.stdout, r.stdout[-500:] + r.stderr[-500:]
    finally:
        assert srv.stop() == 0


@test
def check_mode_and_config_file(c):
    conf = f"{TMP}/echo.conf"
    with open(conf, "w") as f:
        f.write(f"# the echo server\nlisten 127.0.0.1:0\ncert {c['localhost'][0]}\n"
                f"key {c['localhost'][1]}\nhandshake-timeout 5s\n")
    r = subprocess.run([ECHO, "--check", "--config", conf], capture_output=True, text=True)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr
    with open(conf, "a") as f:
        f.write("idle-timeout forever\n")
    r = subprocess.run([ECHO, "--check", "--config", conf], capture_output=True, text=True)
    assert r.returncode == 2 and f"{conf}:6: idle-timeout forever" in r.stderr, r.stderr
    r = subprocess.run([ECHO, "--check", "--listen", "127.0.0.1:0", "--cert", c["expired"][0],
                        "--key", c["expired"][1]], capture_output=True, text=True)
    assert r.returncode == 1 and "expired" in r.stdout, r.stdout
    r = subprocess.run([ECHO, "--listen", "127.0.0.1:0", "--cert", f"{TMP}/missing.pem",
                        "--key", c["localhost"][1]], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "missing.pem" in r.stderr, r.stderr
    r = subprocess.run([ECHO, "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "--bogus" in r.stderr and "--help" in r.stderr
    # A port in use (by a socket without SO_REUSEPORT) is named.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    r = subprocess.run([ECHO, "--listen", f"127.0.0.1:{port},plain"], capture_output=True,
                       text=True, timeout=10)
    holder.close()
    assert r.returncode == 1 and f"127.0.0.1:{port}" in r.stderr and "in use" in r.stderr, r.stderr


@test
def sigusr1_reopens_the_log(c):
    log = f"{TMP}/rotate.log"
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], log=log)
    try:
        os.rename(log, log + ".1")
        srv.signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(log), what="a new log file")
        srv.wait_log(r"log reopened")
    finally:
        assert srv.stop() == 0


@test
def plain_and_tls_listeners_and_ipv6(c):
    have_v6 = socket.has_ipv6
    args = ["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0,plain",
            "--cert", c["localhost"][0], "--key", c["localhost"][1]]
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        have_v6 = False
    if have_v6:
        args += ["--listen", "[::1]:0"]
    srv = Server(*args, listens=3 if have_v6 else 2)
    try:
        ctx = client_ctx(c["ca"][0])
        with connect(srv.ports[0], ctx) as s:
            echo_once(s)
        with socket.create_connection(("127.0.0.1", srv.ports[1])) as p:
            echo_once(p, b"plain text")
        if have_v6:
            raw = socket.create_connection(("::1", srv.ports[2]))
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"!peer")
                assert read_line(s).startswith("[::1]:")
    finally:
        assert srv.stop() == 0


@test
def handshake_rate_paces_new_handshakes(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--handshake-rate", "10", "--handshake-burst", "2",
                 "--workers", "1")
    try:
        ctx = client_ctx(c["ca"][0])
        t0 = time.monotonic()
        for _ in range(12):   # 2 at once, then 10 at 10/s: about a second, none refused
            with connect(srv.port, ctx) as s:
                echo_once(s)
        took = time.monotonic() - t0
        assert 0.8 < took < 5 * SLOW, took
        st = srv.stats(ctx)
        assert st["accept_pauses"] >= 5 and st["full"] + st["resumed"] >= 12, st
    finally:
        assert srv.stop() == 0


@test
def privileges_dropped_after_binding(c):
    if os.geteuid() != 0:
        print("  (not root: skipped)")
        return
    # Keys readable only by root: loaded before the switch to nobody.
    key = f"{TMP}/root-only.key"
    shutil.copy(c["localhost"][1], key)
    os.chmod(key, 0o600)
    os.chmod(TMP, 0o755)
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key", key,
                 "--user", "nobody", log=f"/tmp/tlsloop-priv-{os.getpid()}.log")
    try:
        with open(f"/proc/{srv.proc.pid}/status") as f:
            uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
        import pwd
        nobody = pwd.getpwnam("nobody").pw_uid
        assert all(int(u) == nobody for u in uids), uids
        with connect(srv.port, client_ctx(c["ca"][0])) as s:
            echo_once(s)
        # A reload cannot read the key any more: the old one stays, and the log says why.
        srv.signal(signal.SIGHUP)
        srv.wait_log(r"reload failed, keeping the running configuration: .*root-only\.key")
        with connect(srv.port, client_ctx(c["ca"][0])) as s:
            echo_once(s)
    finally:
        assert srv.stop() == 0
        os.unlink(srv.log)


def thread_slices(pid):
    """The scheduler's slice of each of a process's threads, from /proc (None: not shown)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/sched") as f:
                m = re.search(r"^se\.slice\s*:\s*(\d+)", f.read(), re.M)
        except OSError:
            continue
        if m:
            out.append(int(m.group(1)))
    return out or None


@test
def loop_threads_ask_for_a_short_slice(c):
    """Each worker's loop thread runs with the configured slice (Linux 6.12+), the others keep the
    kernel's; on an older kernel the server says so in its log and runs on."""
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--workers", "2", "--loop-slice", "300us",
                 "--log-level", "info")
    try:
        ctx = client_ctx(c["ca"][0])
        with connect(srv.port, ctx) as s:   # both loops have started by the time one answers
            echo_once(s)
        slices = thread_slices(srv.proc.pid)
        if slices is None or "loop-slice:" in srv.log_text():
            print(f"  no per-thread slice here: {srv.log_text()[-300:]!r}")
            assert "loop-slice:" in srv.log_text() or slices is None
            return
        wait_for(lambda: thread_slices(srv.proc.pid).count(300000) == 2, what="two 300us loops")
        assert len(thread_slices(srv.proc.pid)) > 2   # main and task threads keep their own
        assert sorted(set(thread_slices(srv.proc.pid)))[-1] != 300000
    finally:
        assert srv.stop() == 0


def main():
    global TMP
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        ca = make_ca("test-ca")
        c = {"ca": ca,
             "a": make_leaf("a", ca, ["a.test"]),
             "b": make_leaf("b", ca, ["b.test", "*.b.test"]),
             "rsa": make_leaf("rsa", ca, ["dual.test"], kind="rsa"),
             "ec": make_leaf("ec", ca, ["dual.test"]),
             "localhost": make_leaf("localhost", ca, ["localhost", "127.0.0.1"]),
             "renewed": make_leaf("renewed", ca, ["localhost", "127.0.0.1"], cn="renewed-localhost"),
             "client": make_leaf("client", ca, ["client.test"]),
             "expired": make_expired("expired", ca)}
        tests = [sni_picks_the_certificate, rsa_and_ecdsa_for_the_same_name,
                 mtls_accepts_good_refuses_missing, resumption_tls12_and_tls13,
                 ticket_key_file_shared_by_two_processes,
                 ticket_key_file_open_to_others_and_private_key_warning,
                 sighup_new_certificate_during_transfer,
                 sigterm_drains, connection_limit_makes_clients_wait,
                 handshake_cap_and_per_source_limit, proxy_protocol_gives_the_client_address,
                 proxy_header_only_from_trusted_sources,
                 handshake_deadline_drops_partial_client_hello,
                 send_stall_deadline_drops_a_peer_that_stops_reading, renegotiation_refused,
                 gnutls_cli_interoperates, check_mode_and_config_file, sigusr1_reopens_the_log,
                 plain_and_tls_listeners_and_ipv6, handshake_rate_paces_new_handshakes,
                 privileges_dropped_after_binding, loop_threads_ask_for_a_short_slice]
        only = sys.argv[1:]
        for t in tests:
            if not only or t.__name__ in only:
                t(c)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
