#!/usr/bin/env python3
"""test_acme.py - the ACME client (tlsloop/acme.h) for real, against Debian's pebble (Let's
Encrypt's ACME test server) on loopback, started and stopped (by PID) by each test with its own
JSON configuration: its validation ports pointed at tlsloop's listeners, its own TLS certificate
(made here), no VA sleeps, no nonce rejections, no authorization reuse. The names are "localhost",
which pebble resolves through /etc/hosts. First issuance by tls-alpn-01 and by http-01 (the served
certificate's issuer is pebble's, seen by openssl s_client), the state kept across a restart with
pebble down, renewal forced by a short lifetime (certificateValidityPeriod), a failing challenge
(retried, with a clear log line), an ACME server that is down at start (the self-signed
certificate is served meanwhile), the lock file, and tlsloop proxy.
"""
import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, TcpServer, run_selected, summary, test, wait_for  # noqa: E402
import e2e_serve  # noqa: E402
from e2e_serve import BIN, Serve  # noqa: E402

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"
TMP = None
PEBBLE_CERT = PEBBLE_KEY = None


def free_port():
    """A loopback port nobody listens on now (pebble's validation ports must be known before
    tlsloop starts on them, so these are picked here, not by the kernel at bind time)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Helper:
    """A helper process with its output in a log file; stop() ends it by its PID."""

    def start(self, cmd, ready, what, env=None):
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: ready in open(self.log).read() or self.proc.poll() is not None, 20,
                 f"{what} to start")
        assert self.proc.poll() is None, open(self.log).read()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, 9)
            self.proc.wait()
        self.out.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Pebble(Helper):
    """pebble on loopback: its ACME port, a management port, the validation ports given."""

    def __init__(self, http_port=None, tls_port=None, port=None, validity=None, nonce_reject=0,
                 dns=None):
        self.port = port or free_port()
        conf = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{free_port()}",
            "certificate": PEBBLE_CERT, "privateKey": PEBBLE_KEY,
            "httpPort": http_port or free_port(), "tlsPort": tls_port or free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        if validity:
            conf["pebble"]["certificateValidityPeriod"] = validity
        path = f"{TMP}/pebble-{self.port}.json"
        with open(path, "w") as f:
            json.dump(conf, f)
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT=str(nonce_reject),
                   PEBBLE_AUTHZREUSE="0")
        self.log = f"{TMP}/pebble-{self.port}.log"
        self.start([PEBBLE, "-config", path] + (["-dnsserver", dns] if dns else []),
                   "ACME directory available", "pebble", env)

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}/dir"


@contextlib.contextmanager
def serving(*args, listens):
    """tlsloop serve (e2e_serve.Serve) for a with block: it must exit 0 on SIGTERM after it."""
    srv = Serve(*args, listens=listens)
    try:
        yield srv
    finally:
        assert srv.stop() == 0


def acme_args(url, state, *more):
    return ["--acme-domain", "localhost", "--acme-directory", url, "--acme-ca", PEBBLE_CERT,
            "--acme-state", state, "--acme-retry", "1s", "--workers", "1", *more]


def served_x509(port, sni, *fields):
    """openssl x509 -noout FIELDS of the leaf a handshake (SNI sni, ALPN http/1.1) gets, by
    openssl s_client."""
    s = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                        sni, "-alpn", "http/1.1"], input="", capture_output=True, text=True,
                       timeout=20 * SLOW)
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", s.stdout, re.S)
    assert m, s.stdout + s.stderr
    return subprocess.run(["openssl", "x509", "-noout", *fields], input=m.group(0),
                          capture_output=True, text=True, timeout=10).stdout


def served_cert(port):
    """(issuer, subject, serial) of the certificate a handshake for localhost gets."""
    x = served_x509(port, "localhost", "-issuer", "-subject", "-serial")
    f = dict(line.split("=", 1) for line in x.splitlines())
    return f["issuer"].strip(), f["subject"].strip(), f["serial"].strip()


def fetch(sock, path):
    """GET path on a connected socket; the whole answer (Connection: close)."""
    with sock as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def https_get(port, path="/"):
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    return fetch(c.wrap_socket(raw, server_hostname="localhost"), path)


def plain_get(port, path):
    return fetch(socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW), path)


ISSUED = r"acme: certificate for localhost issued by [^\n]*Pebble Intermediate CA"


def count(text, pattern):
    return len(re.findall(pattern, text))


@test
def tls_alpn_01_first_issuance_then_restart_with_pebble_down():
    tls, plain = free_port(), free_port()
    state = f"{TMP}/alpn"
    with Pebble(tls_port=tls) as peb, \
            serving(*acme_args(peb.url, state),
                    listens=[f"127.0.0.1:{tls}", f"127.0.0.1:{plain},plain"]) as srv:
        srv.wait_log(r"acme: no certificate from the ACME server yet: serving a self-signed")
        srv.wait_log(ISSUED, 30)
        assert "tls-alpn-01 challenge valid" in srv.log_text()
        assert "reloaded: generation 2" in srv.log_text()
        issuer, subject, serial = served_cert(tls)
        assert "Pebble Intermediate CA" in issuer, issuer
        assert "localhost" in subject, subject
        # Other handshakes are not disturbed: a plain HTTPS request is answered.
        assert https_get(tls).startswith(b"HTTP/1.1 200"), "normal request failed"
        for name in ("account.key", "certificate.pem"):
            mode = stat.S_IMODE(os.stat(f"{state}/{name}").st_mode)
            assert mode == 0o600, (name, oct(mode))
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    # Pebble is gone: a restart serves the saved certificate at once and asks for nothing.
    with serving(*acme_args(peb.url, state), listens=["127.0.0.1:0", "127.0.0.1:0,plain"]) as srv:
        srv.wait_log(r"acme: serving the certificate for localhost from [^\n]*Pebble")
        assert served_cert(srv.https)[2] == serial
        time.sleep(1)
        assert "getting a certificate" not in srv.log_text()


@test
def http_01_first_issuance():
    tls, plain = free_port(), free_port()
    with Pebble(http_port=plain) as peb, \
            serving(*acme_args(peb.url, f"{TMP}/http01", "--acme-challenge", "http-01"),
                    listens=[f"127.0.0.1:{tls}", f"127.0.0.1:{plain},plain"]) as srv:
        srv.wait_log(ISSUED, 30)
        assert "http-01 challenge valid" in srv.log_text()
        issuer, _, _ = served_cert(tls)
        assert "Pebble Intermediate CA" in issuer, issuer
        # The challenge is over: its path is a 404 again, as is any unknown token.
        got = plain_get(plain, "/.well-known/acme-challenge/unknown-token")
        assert got.startswith(b"HTTP/1.1 404"), got[:100]
        assert "/.well-known/acme-challenge/" in open(peb.log).read()
        # SIGHUP rereads the certificate file: the same certificate, a new generation.
        serial = served_cert(tls)[2]
        os.kill(srv.proc.pid, signal.SIGHUP)
        srv.wait_log(r"reloaded: generation 3")
        assert served_cert(tls)[2] == serial


@test
def bad_nonces_are_retried():
    tls = free_port()
    # pebble refuses half of the good nonces as bad ones
    with Pebble(tls_port=tls, nonce_reject=50) as peb, \
            serving(*acme_args(peb.url, f"{TMP}/nonce", "--log-level", "debug"),
                    listens=[f"127.0.0.1:{tls}"]) as srv:
        srv.wait_log(ISSUED, 40)
        assert "badNonce from" in srv.log_text()


@test
def renewal_before_a_short_lifetime_ends():
    tls = free_port()
    with Pebble(tls_port=tls, validity=9) as peb, \
            serving(*acme_args(peb.url, f"{TMP}/renew"), listens=[f"127.0.0.1:{tls}"]) as srv:
        srv.wait_log(ISSUED, 30)   # renewed at about 6 s
        first = served_cert(tls)[2]
        wait_for(lambda: count(srv.log_text(), ISSUED) >= 2, 30, "a renewal")
        assert "renewing the certificate for localhost" in srv.log_text()
        wait_for(lambda: served_cert(tls)[2] != first, 10, "the renewed certificate served")
        assert "Pebble Intermediate CA" in served_cert(tls)[0]


class FakeDns(Helper):
    """pebble-challtestsrv as a DNS server only: every name is 127.0.0.1 (no AAAA answers)."""

    def __init__(self):
        self.port = free_port()
        self.log = f"{TMP}/dns-{self.port}.log"
        self.start([CHALLTESTSRV, "-dns01", f"127.0.0.1:{self.port}", "-defaultIPv4",
                    "127.0.0.1", "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01",
                    "", "-management", f"127.0.0.1:{free_port()}"], "Starting challenge servers",
                   "pebble-challtestsrv")
        time.sleep(0.2)   # its DNS socket comes up right after that line

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"


def leaf_facts(port, sni="localhost"):
    """The served leaf's DNS names, issuer, authority key identifier (bytes) and serial."""
    x = served_x509(port, sni, "-ext", "authorityKeyIdentifier,subjectAltName", "-serial",
                    "-issuer")
    names = sorted(re.findall(r"DNS:([^,\s]+)", x))
    aki = re.search(r"Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)", x)
    serial = re.search(r"serial=([0-9A-F]+)", x).group(1)
    issuer = re.search(r"issuer=(.*)", x).group(1)
    return {"names": names, "issuer": issuer,
            "aki": bytes.fromhex(aki.group(1).replace(":", "")) if aki else None,
            "serial": int(serial, 16)}


def san_names(port, sni):
    f = leaf_facts(port, sni)
    return f["names"], f["issuer"]


@test
def several_names_and_a_name_added_later():
    tls = free_port()
    state = f"{TMP}/names"
    issued = r"acme: certificate for a\.test, b\.test[^\n]* issued by [^\n]*Pebble"
    with FakeDns() as dns, Pebble(tls_port=tls, dns=dns.addr) as peb:
        base = ["--acme-directory", peb.url, "--acme-ca", PEBBLE_CERT, "--acme-state", state,
                "--acme-retry", "1s", "--workers", "1"]
        with serving("--acme-domain", "a.test", "--acme-domain", "b.test", *base,
                     listens=[f"127.0.0.1:{tls}"]) as srv:
            srv.wait_log(issued, 30)
            names, issuer = san_names(tls, "b.test")
            assert names == ["a.test", "b.test"] and "Pebble" in issuer, (names, issuer)
        # c.test added: the saved certificate lacks it, so a new one is asked for at once.
        with serving("--acme-domain", "a.test", "--acme-domain", "b.test", "--acme-domain",
                     "c.test", *base, listens=[f"127.0.0.1:{tls}"]) as srv:
            srv.wait_log(r"it lacks a name given with acme-domain: a new one is asked for now")
            srv.wait_log(r"acme: certificate for a\.test, b\.test, c\.test[^\n]* issued by", 30)
            names, _ = san_names(tls, "c.test")
            assert names == ["a.test", "b.test", "c.test"], names


class AriFront:
    """An HTTPS directory in front of pebble (2.4 has no renewal information): pebble's own, plus
    renewalInfo here (RFC 9773). The first window asked for opens a second from now, later ones
    in a day; the identifiers asked for are kept."""

    def __init__(self, pebble_url):
        import http.server
        front = self
        self.asked = []
        with urllib.request.urlopen(pebble_url, context=ssl.create_default_context(
                cafile=PEBBLE_CERT), timeout=10) as r:
            self.directory = json.load(r)

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/dir":
                    d = dict(front.directory,
                             renewalInfo=f"https://127.0.0.1:{front.port}/renewal-info/")
                    body = json.dumps(d).encode()
                elif self.path.startswith("/renewal-info/"):
                    front.asked.append(self.path.rsplit("/", 1)[1])
                    soon = len(front.asked) == 1
                    t0 = time.time() + (1 if soon else 86400)
                    fmt = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
                    body = json.dumps({"suggestedWindow": {"start": fmt(t0),
                                                           "end": fmt(t0 + 1)}}).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_cert_chain(PEBBLE_CERT, PEBBLE_KEY)
        self.httpd.socket = c.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def ari_id(port):
    """RFC 9773's identifier of the served leaf, computed here independently."""
    f = leaf_facts(port)
    n = f["serial"]
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    return b64(f["aki"]) + "." + b64(n.to_bytes((n.bit_length() + 8) // 8, "big"))


@test
def renewal_window_from_renewal_information():
    tls = free_port()
    # two thirds of the lifetime: 40 minutes; the window says now
    with Pebble(tls_port=tls, validity=3600) as peb, AriFront(peb.url) as front, \
            serving(*acme_args(f"https://127.0.0.1:{front.port}/dir", f"{TMP}/ari"),
                    listens=[f"127.0.0.1:{tls}"]) as srv:
        srv.wait_log(ISSUED, 30)
        first = ari_id(tls)
        wait_for(lambda: count(srv.log_text(), ISSUED) >= 2, 30, "a renewal by the window")
        assert re.search(r"acme: renewal window from the ACME server: -?\d+ s from now",
                         srv.log_text())
        assert front.asked and front.asked[0] == first, (front.asked, first)
        wait_for(lambda: len(front.asked) >= 2, 10, "the new certificate's window")
        assert front.asked[1] == ari_id(tls) != first
        time.sleep(1.5)
        assert count(srv.log_text(), ISSUED) == 2   # the later window is not now


@test
def failing_challenge_is_retried_and_logged():
    tls, plain = free_port(), free_port()
    # pebble validates on a port nobody listens on
    with Pebble(http_port=free_port()) as peb, \
            serving(*acme_args(peb.url, f"{TMP}/fail", "--acme-challenge", "http-01"),
                    listens=[f"127.0.0.1:{tls}", f"127.0.0.1:{plain},plain"]) as srv:
        srv.wait_log(r"acme: issuing the certificate for localhost failed: the http-01 "
                     r"challenge for localhost failed: [^\n]+", 30)
        srv.wait_log(r"acme: attempt 1 for localhost failed; next in 1 s \(serving the "
                     r"self-signed certificate meanwhile\)")
        srv.wait_log(r"acme: attempt 2 for localhost failed; next in 2 s", 30)
        issuer, subject, _ = served_cert(tls)
        assert issuer == subject, (issuer, subject)   # still the self-signed one


@test
def acme_server_down_at_start():
    tls, port = free_port(), free_port()
    with serving(*acme_args(f"https://127.0.0.1:{port}/dir", f"{TMP}/down"),
                 listens=[f"127.0.0.1:{tls}"]) as srv:
        srv.wait_log(r"acme: issuing the certificate for localhost failed: cannot reach the ACME "
                     r"server 127.0.0.1:\d+", 20)
        srv.wait_log(r"attempt 1 for localhost failed; next in 1 s")
        issuer, subject, _ = served_cert(tls)
        assert issuer == subject and "localhost" in subject, (issuer, subject)
        assert https_get(tls).startswith(b"HTTP/1.1 200")
        # It comes up: the next retry gets a certificate.
        with Pebble(tls_port=tls, port=port):
            srv.wait_log(ISSUED, 40)
            assert "Pebble Intermediate CA" in served_cert(tls)[0]


@test
def stop_while_a_request_hangs():
    # An ACME server that accepts and never answers: SIGTERM must not wait for the request's
    # 30-second deadline.
    hang = TcpServer(lambda c: time.sleep(60))
    srv = Serve(*acme_args(f"http://127.0.0.1:{hang.port}/dir", f"{TMP}/hang"),
                listens=["127.0.0.1:0"])
    try:
        wait_for(lambda: hang.accepted >= 1, 10, "the directory request")
        time.sleep(0.2)
    finally:
        t0 = time.monotonic()
        assert srv.stop() == 0
        assert time.monotonic() - t0 < 5 * SLOW, time.monotonic() - t0


@test
def lock_held_by_another_instance_waits():
    tls = free_port()
    state = f"{TMP}/lock"
    os.makedirs(state, mode=0o700)
    with open(f"{state}/lock", "w") as lock, Pebble(tls_port=tls) as peb:
        fcntl.flock(lock, fcntl.LOCK_EX)   # "another instance" is issuing
        with serving(*acme_args(peb.url, state), listens=[f"127.0.0.1:{tls}"]) as srv:
            srv.wait_log(r"another instance is issuing \(the lock is held\)", 20)
            time.sleep(1.5)
            assert count(srv.log_text(), ISSUED) == 0
            assert "POST /order-plz" not in open(peb.log).read()
            fcntl.flock(lock, fcntl.LOCK_UN)
            srv.wait_log(ISSUED, 30)


@test
def two_instances_share_the_state_directory():
    # pebble validates at A; A's own ACME server is out of reach, so B issues, A answers B's
    # challenge from the shared directory, and A then takes up the certificate B saved.
    for chal in ("tls-alpn-01", "http-01"):
        tls_a, plain_a, tls_b = free_port(), free_port(), free_port()
        state = f"{TMP}/shared-{chal}"
        dead = f"https://127.0.0.1:{free_port()}/dir"
        with Pebble(tls_port=tls_a, http_port=plain_a) as peb, \
                serving(*acme_args(dead, state, "--acme-challenge", chal),
                        listens=[f"127.0.0.1:{tls_a}", f"127.0.0.1:{plain_a},plain"]) as a, \
                serving(*acme_args(peb.url, state, "--acme-challenge", chal),
                        listens=[f"127.0.0.1:{tls_b}", f"127.0.0.1:0,plain"]) as b:
            b.wait_log(ISSUED, 30)
            if chal == "tls-alpn-01":
                assert "answering the tls-alpn-01 challenge another instance asked for" in \
                    a.log_text()
            a.wait_log(r"acme: took up the certificate another instance saved: new handshakes "
                       r"use it", 30)
            assert served_cert(tls_a)[2] == served_cert(tls_b)[2]
            assert "Pebble Intermediate CA" in served_cert(tls_a)[0]
            assert os.listdir(f"{state}/challenges") == []   # nothing left pending


@test
def proxy_gets_a_certificate_by_tls_alpn_01():
    tls = free_port()
    backend = TcpServer(lambda c: c.sendall(c.recv(100)))
    log = f"{TMP}/proxy.log"
    with Pebble(tls_port=tls) as peb:
        proc = subprocess.Popen([BIN, "proxy", "--listen", f"127.0.0.1:{tls}", "--backend",
                                 f"127.0.0.1:{backend.port}", "--log", log,
                                 *acme_args(peb.url, f"{TMP}/proxy")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: re.search(ISSUED, open(log).read() if os.path.exists(log) else ""),
                     30, "the proxy's certificate")
            assert "Pebble Intermediate CA" in served_cert(tls)[0]
            bad = subprocess.run([BIN, "proxy", "--listen", "127.0.0.1:0", "--listen",
                                  "127.0.0.1:0,plain", "--backend", "127.0.0.1:1",
                                  *acme_args(peb.url, f"{TMP}/proxy2", "--acme-challenge",
                                             "http-01")], capture_output=True, text=True,
                                 timeout=20)
            assert bad.returncode == 2 and "http-01 needs an HTTP server" in bad.stderr, \
                bad.stderr
        finally:
            proc.terminate()
            assert proc.wait(20 * SLOW) == 0, proc.stderr.read()


@test
def options_are_checked():
    for args, msg in [(["--acme-domain", "*.example.com"], "no wildcards"),
                      (["--acme-domain", "localhost", "--acme-challenge", "dns-01"],
                       "expected tls-alpn-01 or http-01"),
                      (["--acme-domain", "localhost", "--acme-directory", "ftp://x"],
                       "https:// URL"),
                      (["--acme-domain", "localhost", "--acme-ca", f"{TMP}/missing.pem"],
                       "acme-ca"),
                      (["--acme-domain", "localhost", "--acme-challenge", "tls-alpn-01",
                        "--listen", "127.0.0.1:0,plain"], "needs a TLS listener")]:
        r = subprocess.run([BIN, "serve", "--state-dir", f"{TMP}/opt", *args], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 2 and msg in r.stderr, (args, r.returncode, r.stderr)
    h = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=20)
    for name in ("acme-domain", "acme-directory", "acme-ca", "acme-email", "acme-state",
                 "acme-challenge", "acme-retry"):
        assert f"--{name}" in h.stdout, name


def main():
    global TMP, PEBBLE_CERT, PEBBLE_KEY
    if not os.path.exists(PEBBLE):
        print("FAIL pebble is not installed (apt-get install pebble)")
        print("0 passed, 1 failed")
        sys.exit(1)
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        e2e_serve.setup(tmp)
        PEBBLE_CERT, PEBBLE_KEY = f"{tmp}/pebble.pem", f"{tmp}/pebble.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", PEBBLE_KEY, "-out",
                        PEBBLE_CERT, "-days", "2", "-subj", "/CN=pebble test",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True)
        run_selected([tls_alpn_01_first_issuance_then_restart_with_pebble_down,
                      http_01_first_issuance, bad_nonces_are_retried,
                      renewal_before_a_short_lifetime_ends, renewal_window_from_renewal_information,
                      several_names_and_a_name_added_later,
                      failing_challenge_is_retried_and_logged, acme_server_down_at_start,
                      stop_while_a_request_hangs, lock_held_by_another_instance_waits,
                      two_instances_share_the_state_directory,
                      proxy_gets_a_certificate_by_tls_alpn_01,
                      options_are_checked])
    sys.exit(summary())


if __name__ == "__main__":
    main()
