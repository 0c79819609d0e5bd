#!/usr/bin/env python3
"""test_ocsp.py - OCSP stapling (ocsp-staple, docs/certificates.md) and `tlsloop get --ocsp`, with
`openssl ocsp` as the CA's responder on a loopback port this script picks, started and stopped
here.

A test CA issues: a delegated OCSP responder certificate (id-kp-OCSPSigning), and leaves whose
AIA OCSP URL points at that responder: localhost (good), revoked.test (revoked in the index),
other.test (good; its response is the "wrong file" for localhost), and must.test (must-staple,
TLS feature status_request, whose responder URL points at a port nobody listens on), noaia.test
(no AIA) and down.test (its own responder, the one the test stops).

Covers: a response fetched from the responder and stapled, seen by `openssl s_client -status`
(OCSP Response Status: successful, Cert Status: good) and checked by `tlsloop get --ocsp -v`;
two SNI certificates, each stapled with its own response; a certificate replaced by a reload
(SIGHUP) fetched for and stapled; `tlsloop proxy` stapling as well;
a revoked status logged as an error and not stapled (get --ocsp fails, exit 5); ocsp-staple FILE
with the right response stapled and another certificate's refused, and SIGHUP rereading the file;
a must-staple certificate without a response warned about; a certificate without an OCSP URL
stapling nothing with one info line; ocsp-staple off; `get --ocsp` against `openssl s_server
-status_file` stapling a good response, another certificate's, a revoked one, and none (exit 0,
then 5 with the reason each time). Then, with a one-minute nextUpdate
(-nmin 1): the response refreshed before it expires (thisUpdate changes), the responder stopped
(the last good response stays stapled until its nextUpdate, then none), and a restart with the
responder down serving the response kept on disk (ocsp-cache).

Runs from the repository root; TLSLOOP_BIN is the tlsloop program (build/tlsloop by default).
Ends with "N passed, N failed".
"""
import calendar
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import e2e_proxy  # noqa: E402
import e2e_serve  # noqa: E402
from e2e import SLOW, TcpServer, fail, stop_process, summary, test  # noqa: E402
from e2e_serve import Serve  # noqa: E402

BIN = os.environ.get("TLSLOOP_BIN", "build/tlsloop")
TMP = None
PORT = None        # the responder's
PORT2 = None       # down.test's responder (the one stopped)
DEAD_PORT = None   # nobody listens there


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args, **kw):
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True, **kw)


def make_pki():
    """The CA, the responder's certificate, the leaves and the responder's index."""
    d = TMP
    with open(f"{d}/ca.ext", "w") as f:
        f.write("[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier=hash\n"
                "[resp]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=OCSPSigning\n")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "30",
            "-subj", "/CN=tlsloop OCSP test CA", "-extensions", "ca", "-config", f"{d}/ca.ext")

    def issue(name, ext_section, ext_text):
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(f"[{ext_section}]\n{ext_text}")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey",
                f"{d}/ca.key", "-CAcreateserial", "-days", "20", "-out", f"{d}/{name}.pem",
                "-extfile", f"{d}/{name}.ext", "-extensions", ext_section)
        os.chmod(f"{d}/{name}.key", 0o600)
        # The chain file: leaf, then its issuer (the CA stands in for an intermediate).
        with open(f"{d}/{name}-chain.pem", "w") as out:
            out.write(open(f"{d}/{name}.pem").read() + open(f"{d}/ca.pem").read())

    issue("responder", "resp", "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
          "extendedKeyUsage=OCSPSigning\n")
    leaf = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" \
           "extendedKeyUsage=serverAuth\n"
    aia = f"authorityInfoAccess=OCSP;URI:http://127.0.0.1:{PORT}/\n"
    issue("localhost", "leaf", leaf + aia + "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    issue("revoked.test", "leaf", leaf + aia + "subjectAltName=DNS:revoked.test\n")
    issue("other.test", "leaf", leaf + aia + "subjectAltName=DNS:other.test\n")
    issue("must.test", "leaf", leaf + f"authorityInfoAccess=OCSP;URI:http://127.0.0.1:{DEAD_PORT}/\n"
          "tlsfeature=status_request\nsubjectAltName=DNS:must.test\n")
    issue("noaia.test", "leaf", leaf + "subjectAltName=DNS:noaia.test\n")
    issue("down.test", "leaf", leaf + f"authorityInfoAccess=OCSP;URI:http://127.0.0.1:{PORT2}/\n"
          "subjectAltName=DNS:down.test\n")
    with open(f"{d}/index.txt", "w") as idx:
        for name in ("localhost", "revoked.test", "other.test", "must.test", "noaia.test",
                     "down.test"):
            serial = openssl("x509", "-in", f"{d}/{name}.pem", "-noout", "-serial").stdout
            serial = serial.strip().split("=")[1]
            if name == "revoked.test":
                idx.write(f"R\t301231235959Z\t{time.strftime('%y%m%d%H%M%SZ', time.gmtime(time.time() - 3600))},"
                          f"keyCompromise\t{serial}\tunknown\t/CN={name}\n")
            else:
                idx.write(f"V\t301231235959Z\t\t{serial}\tunknown\t/CN={name}\n")
    with open(f"{d}/index.txt.attr", "w") as f:
        f.write("unique_subject = no\n")


class Responder:
    """openssl ocsp on PORT (or port): one request at a time, nextUpdate nmin minutes after
    thisUpdate."""

    def __init__(self, nmin=60, port=None):
        self.log = open(f"{TMP}/responder-{time.monotonic_ns()}.log", "w")
        self.proc = subprocess.Popen(
            ["openssl", "ocsp", "-index", f"{TMP}/index.txt", "-port", str(port or PORT),
             "-rsigner", f"{TMP}/responder.pem", "-rkey", f"{TMP}/responder.key",
             "-CA", f"{TMP}/ca.pem", "-nmin", str(nmin), "-ignore_err"],
            stdout=self.log, stderr=subprocess.STDOUT)
        # Ready when it says so (a probe connection would wedge it: it serves one at a time and
        # waits for that one's request).
        end = time.monotonic() + 10 * SLOW
        while time.monotonic() < end:
            if "waiting for OCSP client connections" in open(self.log.name).read():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"openssl ocsp ended: {open(self.log.name).read()}")
            time.sleep(0.05)
        raise RuntimeError("openssl ocsp did not start listening")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def status(port, name="localhost"):
    """What openssl s_client -status says of the stapled response: (status line, cert status,
    thisUpdate), or (None, None, None) for none."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
                        "-status", "-CAfile", f"{TMP}/ca.pem"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20 * SLOW)
    out = r.stdout
    assert "CONNECTED" in out, out + r.stderr
    if "OCSP response: no response sent" in out:
        return None, None, None
    rs = re.search(r"OCSP Response Status: (\S+)", out)
    cs = re.search(r"Cert Status: (\S+)", out)
    tu = re.search(r"This Update: (.+)", out)
    return (rs and rs.group(1), cs and cs.group(1), tu and tu.group(1).strip())


def serve(name, *args):
    return Serve("--cert", f"{TMP}/{name}-chain.pem", "--key", f"{TMP}/{name}.key",
                 "--ocsp-cache", f"{TMP}/cache", *args, listens=["127.0.0.1:0"], state=False)


def get(port, *args, name="localhost"):
    return subprocess.run([BIN, "get", "--ocsp", "--cacert", f"{TMP}/ca.pem", "--resolve",
                           f"{name}:{port}:127.0.0.1", *args, f"https://{name}:{port}/"],
                          capture_output=True, text=True, timeout=30 * SLOW)


def fetch_der(name, out):
    """A response for certificate `name` from the responder, saved as DER (openssl ocsp)."""
    openssl("ocsp", "-issuer", f"{TMP}/ca.pem", "-cert", f"{TMP}/{name}.pem", "-url",
            f"http://127.0.0.1:{PORT}/", "-respout", out, "-CAfile", f"{TMP}/ca.pem",
            "-no_nonce", timeout=30)


def wait_kept(d):
    """The files of d once a response (*.der) is there (it is written after the log line)."""
    end = time.monotonic() + 5 * SLOW
    while time.monotonic() < end:
        files = os.listdir(d) if os.path.isdir(d) else []
        if any(f.endswith(".der") for f in files):
            return files
        time.sleep(0.05)
    raise AssertionError(f"no response kept in {d}")


@test
def fetched_and_stapled():
    srv = serve("localhost")
    try:
        srv.wait_log(r"ocsp: localhost: stapling a good response \(from http://127\.0\.0\.1")
        rs, cs, _ = status(srv.https)
        assert (rs, cs) == ("successful", "good"), (rs, cs)
        r = get(srv.https, "-v")
        assert r.returncode == 0, r.stderr
        assert re.search(r"\* OCSP: good \(stapled; thisUpdate .* valid until", r.stderr), r.stderr
        r = get(srv.https, "-v", "--http2")   # the check comes before either protocol
        assert r.returncode == 0 and "* OCSP: good" in r.stderr and "HTTP/2" in r.stderr, r.stderr
        # Kept on disk for a restart, under the certificate's hash, written atomically.
        files = wait_kept(f"{TMP}/cache")
        assert any(re.fullmatch(r"[0-9a-f]{64}\.der", f) for f in files), files
        assert not any(f.endswith(".tmp") for f in files), files
    finally:
        assert srv.stop() == 0
    # serve --state-dir without ocsp-cache: kept in the state directory's ocsp/.
    srv = Serve("--cert", f"{TMP}/localhost-chain.pem", "--key", f"{TMP}/localhost.key",
                listens=["127.0.0.1:0"], state=True)
    try:
        srv.wait_log(r"ocsp: localhost: stapling a good response \(from http")
        assert wait_kept(f"{e2e_serve.STATE}/ocsp")
    finally:
        assert srv.stop() == 0


def staple_serial(port, name):
    """The serial number the stapled response's certificate ID names (openssl s_client -status)."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
                        "-status", "-CAfile", f"{TMP}/ca.pem"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20 * SLOW)
    m = re.search(r"Serial Number: ([0-9A-F]+)", r.stdout)
    return m and m.group(1)


def serial_of(name):
    out = openssl("x509", "-in", f"{TMP}/{name}.pem", "-noout", "-serial").stdout
    return out.strip().split("=")[1].upper()


@test
def sni_certificates_have_their_own_staples():
    srv = Serve("--cert", f"{TMP}/localhost-chain.pem", "--key", f"{TMP}/localhost.key",
                "--cert", f"{TMP}/other.test-chain.pem", "--key", f"{TMP}/other.test.key",
                "--ocsp-cache", f"{TMP}/cache-sni", listens=["127.0.0.1:0"], state=False)
    try:
        srv.wait_log(r"ocsp: localhost: stapling a good response \(from http")
        srv.wait_log(r"ocsp: other\.test: stapling a good response \(from http")
        assert staple_serial(srv.https, "localhost") == serial_of("localhost")
        assert staple_serial(srv.https, "other.test") == serial_of("other.test")
        for name in ("localhost", "other.test"):
            r = get(srv.https, "-v", name=name)
            assert r.returncode == 0 and "* OCSP: good" in r.stderr, r.stderr
    finally:
        assert srv.stop() == 0


@test
def certificate_replaced_on_reload_gets_its_staple():
    """The path a renewal takes (new files, SIGHUP): the new certificate is fetched for."""
    import shutil
    cert, key = f"{TMP}/live-chain.pem", f"{TMP}/live.key"
    shutil.copy(f"{TMP}/localhost-chain.pem", cert)
    shutil.copy(f"{TMP}/localhost.key", key)
    srv = Serve("--cert", cert, "--key", key, "--ocsp-cache", f"{TMP}/cache-reload",
                listens=["127.0.0.1:0"], state=False)
    try:
        srv.wait_log(r"ocsp: localhost: stapling a good response \(from http")
        assert staple_serial(srv.https, "localhost") == serial_of("localhost")
        shutil.copy(f"{TMP}/other.test-chain.pem", cert)
        shutil.copy(f"{TMP}/other.test.key", key)
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"reloaded: generation 2")
        srv.wait_log(r"ocsp: other\.test: stapling a good response \(from http")
        assert staple_serial(srv.https, "other.test") == serial_of("other.test")
        r = get(srv.https, name="other.test")
        assert r.returncode == 0, r.stderr
        # Another reload with the same certificate fetches nothing new.
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"reloaded: generation 3")
        time.sleep(0.5)
        assert len(re.findall(r"other\.test: stapling", srv.log_text())) == 1, srv.log_text()
    finally:
        assert srv.stop() == 0


@test
def proxy_staples_too():
    backend = TcpServer(e2e_proxy.echo)
    e2e_proxy.TMP = TMP
    p = e2e_proxy.Proxy((f"{TMP}/localhost-chain.pem", f"{TMP}/localhost.key"), backend.port,
                        extra=("--ocsp-cache", f"{TMP}/cache-proxy"))
    try:
        end = time.monotonic() + 10 * SLOW
        while "stapling a good response" not in p.log_text() and time.monotonic() < end:
            time.sleep(0.05)
        rs, cs, _ = status(p.tls)
        assert (rs, cs) == ("successful", "good"), (rs, cs, p.log_text())
    finally:
        assert stop_process(p.proc, 20, "tlsloop proxy") == 0
        backend.close()


@test
def revoked_logged_not_stapled():
    srv = serve("revoked.test")
    try:
        srv.wait_log(r"\[error\] ocsp: revoked\.test: REVOKED")
        assert "stapling a good response" not in srv.log_text()
        rs, cs, _ = status(srv.https, "revoked.test")
        assert rs is None, (rs, cs)
        r = get(srv.https, name="revoked.test")
        assert r.returncode == 5, (r.returncode, r.stderr)
        assert "stapled no OCSP response" in r.stderr, r.stderr
    finally:
        assert srv.stop() == 0


@test
def file_right_and_wrong_and_sighup():
    right, wrong, live = f"{TMP}/right.der", f"{TMP}/wrong.der", f"{TMP}/live.der"
    fetch_der("localhost", right)
    fetch_der("other.test", wrong)
    with open(live, "wb") as f:
        f.write(open(right, "rb").read())
    srv = serve("localhost", "--ocsp-staple", live)
    try:
        srv.wait_log(r"ocsp: localhost: stapling a good response \(from ocsp-staple ")
        rs, cs, _ = status(srv.https)
        assert (rs, cs) == ("successful", "good"), (rs, cs)
        assert get(srv.https).returncode == 0
        # Another certificate's response: refused on SIGHUP, and nothing stapled.
        with open(live, "wb") as f:
            f.write(open(wrong, "rb").read())
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"\[error\] ocsp-staple .*live\.der: refused, nothing is stapled: localhost: the "
                     r"OCSP response is not for this certificate")
        srv.wait_log(r"reloaded: generation 2")
        rs, cs, _ = status(srv.https)
        assert rs is None, (rs, cs)
        r = get(srv.https)
        assert r.returncode == 5 and "--ocsp:" in r.stderr, r.stderr
        # Never a network fetch in file mode.
        assert "from http://" not in srv.log_text()
    finally:
        assert srv.stop() == 0
    # At start, the wrong one is refused too.
    srv = serve("localhost", "--ocsp-staple", wrong)
    try:
        srv.wait_log(r"\[error\] ocsp-staple .*wrong\.der: refused")
        assert status(srv.https)[0] is None
    finally:
        assert srv.stop() == 0


@test
def must_staple_warned_no_url_info_and_off():
    srv = serve("must.test")
    try:
        srv.wait_log(r"\[warn\] ocsp: must\.test: the certificate is must-staple", timeout=30)
        srv.wait_log(r"ocsp: must\.test: fetching a response from http://127\.0\.0\.1:\d+/ failed")
    finally:
        assert srv.stop() == 0
    srv = serve("noaia.test")
    try:
        srv.wait_log(r"\[info\] ocsp: noaia\.test: the certificate names no OCSP responder")
        assert status(srv.https, "noaia.test")[0] is None
        r = get(srv.https, name="noaia.test")
        assert r.returncode == 5 and "stapled no OCSP response" in r.stderr, r.stderr
    finally:
        assert srv.stop() == 0
    srv = serve("localhost", "--ocsp-staple", "off")
    try:
        time.sleep(1)
        assert "ocsp:" not in srv.log_text(), srv.log_text()
        assert status(srv.https)[0] is None
    finally:
        assert srv.stop() == 0


class SServer:
    """openssl s_server -www with this certificate, stapling this DER file (None: nothing)."""

    def __init__(self, name, staple):
        self.port = free_port()
        cmd = ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert",
               f"{TMP}/{name}.pem", "-key", f"{TMP}/{name}.key", "-cert_chain", f"{TMP}/ca.pem",
               "-www"]
        if staple:
            cmd += ["-status_file", staple]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        end = time.monotonic() + 10 * SLOW
        while time.monotonic() < end and b"ACCEPT" not in self.proc.stdout.readline():
            pass
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@test
def get_ocsp_against_s_server():
    """Staples nobody here checked before: good, another certificate's, revoked, none."""
    right, wrong, revoked = f"{TMP}/g-right.der", f"{TMP}/g-wrong.der", f"{TMP}/g-revoked.der"
    fetch_der("localhost", right)
    fetch_der("other.test", wrong)
    fetch_der("revoked.test", revoked)
    cases = [("localhost", right, 0, r"\* OCSP: good \(stapled;"),
             ("localhost", wrong, 5, r"--ocsp: the OCSP response is not for this certificate"),
             ("revoked.test", revoked, 5, r"--ocsp: the stapled OCSP response says the certificate "
                                          r"is revoked"),
             ("localhost", None, 5, r"--ocsp: the server stapled no OCSP response")]
    for name, staple, code, want in cases:
        srv = SServer(name, staple)
        try:
            r = get(srv.port, "-v", name=name)
            assert r.returncode == code and re.search(want, r.stderr), (name, staple, r.returncode,
                                                                      r.stderr)
            if code == 0:   # without --ocsp nothing is asked or checked
                r = subprocess.run([BIN, "get", "--cacert", f"{TMP}/ca.pem", "--resolve",
                                    f"{name}:{srv.port}:127.0.0.1", f"https://{name}:{srv.port}/"],
                                   capture_output=True, text=True, timeout=30 * SLOW)
                assert r.returncode == 0, r.stderr
        finally:
            srv.stop()


def when(text):
    """Unix time of openssl's "Dec  8 00:20:09 2026 GMT"."""
    return calendar.timegm(time.strptime(text.replace(" GMT", ""), "%b %d %H:%M:%S %Y"))


@test
def refresh_responder_down_and_restart_from_disk():
    """-nmin 1, two responders side by side (about 62 s in all): localhost's response refreshed
    at 30 s; down.test's responder stopped right after the first fetch, its response kept until
    nextUpdate then none, and a restart meanwhile serving the response kept on disk."""
    global RESPONDER
    RESPONDER.stop()
    RESPONDER = Responder(nmin=1)
    down_responder = Responder(nmin=1, port=PORT2)
    servers = []

    def start(name, cache):
        s = Serve("--cert", f"{TMP}/{name}-chain.pem", "--key", f"{TMP}/{name}.key",
                  "--ocsp-cache", f"{TMP}/{cache}", listens=["127.0.0.1:0"], state=False)
        servers.append(s)
        return s

    try:
        a = start("localhost", "cache-a")
        b = start("down.test", "cache-b")
        b.wait_log(r"ocsp: down\.test: stapling a good response \(from http")
        down_responder.stop()
        rs, cs, kept = status(b.https, "down.test")
        assert (rs, cs) == ("successful", "good") and kept, (rs, cs, kept)
        expires = when(kept) + 60
        # A restart while its responder is down serves the response kept on disk.
        c = start("down.test", "cache-b")
        c.wait_log(r"ocsp: down\.test: stapling a good response \(kept in ")
        assert status(c.https, "down.test") == ("successful", "good", kept)
        # Refreshed half way to nextUpdate: a new thisUpdate about 30 s later.
        a.wait_log(r"ocsp: localhost: stapling a good response \(from http")
        rs, cs, first = status(a.https)
        assert (rs, cs) == ("successful", "good") and first, (rs, cs, first)
        end = time.monotonic() + 50
        second = first
        while second == first and time.monotonic() < end:
            time.sleep(1)
            second = status(a.https)[2]
        assert second and second != first, (first, second)
        assert 20 <= when(second) - when(first) <= 45, (first, second)
        # down.test's refresh failed: the response held stays stapled until its nextUpdate...
        b.wait_log(r"ocsp: down\.test: fetching a response from http://127\.0\.0\.1:\d+/ failed: "
                   r".*the response held stays stapled until", timeout=30)
        if time.time() < expires - 2:
            assert status(b.https, "down.test") == ("successful", "good", kept)
        # ... and after it, nothing: never an expired response.
        while time.time() < expires + 1:
            time.sleep(0.5)
        for s in (b, c):
            rs, cs, tu = status(s.https, "down.test")
            assert rs is None, (rs, cs, tu)
        b.wait_log(r"down\.test: the stapled response expired and no new one could be had",
                   timeout=30)
        assert status(a.https)[:2] == ("successful", "good")
    finally:
        down_responder.stop()
        for s in servers:
            assert s.stop() == 0


RESPONDER = None

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        e2e_serve.setup(tmp)
        PORT, PORT2, DEAD_PORT = free_port(), free_port(), free_port()
        make_pki()
        try:
            RESPONDER = Responder()
        except RuntimeError as e:
            fail("responder", str(e))
            sys.exit(summary())
        try:
            only = sys.argv[1:]
            for t in (fetched_and_stapled, sni_certificates_have_their_own_staples,
                      certificate_replaced_on_reload_gets_its_staple, proxy_staples_too,
                      revoked_logged_not_stapled,
                      file_right_and_wrong_and_sighup, must_staple_warned_no_url_info_and_off,
                      get_ocsp_against_s_server, refresh_responder_down_and_restart_from_disk):
                if not only or t.__name__ in only:
                    t()
        finally:
            RESPONDER.stop()
    sys.exit(summary())
