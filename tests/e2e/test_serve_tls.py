#!/usr/bin/env python3
"""test_serve_tls.py - `tlsloop serve`'s certificates and TLS, against curl, openssl s_client and
gnutls-cli: the generated local CA (name-constrained, kept, renewed, replaced), the default with no
options at all, TLS 1.2 and 1.3 verified, close_notify before EOF on Connection: close.
"""
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, run_selected, summary, test  # noqa: E402
from e2e_serve import BIN, Serve, curl, get, make_root, setup, tls_sock  # noqa: E402

TMP = STATE = CA = None   # setup() names them


@test
def embedded_default_makes_its_ca_and_serves_the_builtin_page(root):
    srv = Serve()
    try:
        out = "".join(srv.out)
        assert f"{STATE}/localhost.pem" in out and f"curl --cacert {CA}" in out, out
        assert os.stat(f"{STATE}/localhost.key").st_mode & 0o077 == 0
        r = curl(f"https://localhost:{srv.https}/")
        assert r.returncode == 0 and b"tlsloop serve" in r.stdout and b"Counters" in r.stdout, r
        r = curl(f"https://127.0.0.1:{srv.https}/")   # the IP is in the certificate too
        assert r.returncode == 0, r.stderr
        st, _, body, _ = get(srv.http, "/", tls=False)
        assert st == 200 and b"plain HTTP" in body
    finally:
        assert srv.stop() == 0
    # A second start keeps the CA and the certificate.
    before = open(f"{STATE}/localhost.pem").read()
    srv = Serve()
    try:
        assert open(f"{STATE}/localhost.pem").read() == before
        assert "made a certificate" not in "".join(srv.out)
    finally:
        assert srv.stop() == 0


def cert_text(path):
    return subprocess.run(["openssl", "x509", "-in", path, "-noout", "-text"], capture_output=True,
                          text=True, timeout=30, check=True).stdout


def leaf_days(path):
    r = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-startdate", "-enddate"],
                       capture_output=True, text=True, timeout=30, check=True).stdout
    import email.utils
    t = [email.utils.parsedate_to_datetime(l.split("=", 1)[1].replace("GMT", "+0000"))
         for l in r.split("\n") if "=" in l]
    return (t[1] - t[0]).total_seconds() / 86400


def openssl_leaf(state, days, ca="ca.pem", ca_key="ca.key"):
    """A localhost leaf issued by the CA in state, valid days (negative: already expired)."""
    sh = lambda *a: subprocess.run(a, capture_output=True, timeout=30, check=True, cwd=state)
    sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "localhost.key", "-out", "leaf.csr", "-subj", "/CN=localhost")
    sh("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", ca, "-CAkey", ca_key,
       "-days", str(days), "-out", "localhost.pem")


@test
def generated_ca_is_name_constrained_and_old_ones_are_replaced(root):
    """The local CA vouches for localhost and loopback only (critical nameConstraints), its leaf
    lives 90 days at most; a CA from before (no constraints, a leaf of a year) is replaced on
    start, and an expired leaf is renewed under the CA kept."""
    state = f"{TMP}/old-state"
    os.makedirs(state)
    sh = lambda *a: subprocess.run(a, capture_output=True, timeout=30, check=True, cwd=state)
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650", "-subj", "/CN=tlsloop local CA",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    openssl_leaf(state, 365)
    old_ca = open(f"{state}/ca.pem").read()

    def check():
        r = subprocess.run([BIN, "serve", "--check", "--state-dir", state, "--listen",
                            "127.0.0.1:0"], capture_output=True, text=True, timeout=30 * SLOW)
        assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr
        return r.stdout
    out = check()
    assert "made a new local CA (it was not limited to localhost and loopback)" in out, out
    assert open(f"{state}/ca.pem").read() != old_ca
    text = cert_text(f"{state}/ca.pem")
    assert re.search(r"X509v3 Name Constraints: critical\s+Permitted:\s+DNS:localhost\s+"
                     r"IP:127\.0\.0\.0/255\.0\.0\.0\s+IP:0:0:0:0:0:0:0:1/FFFF:FFFF", text), text
    assert "renewed a certificate for localhost" in out, out
    assert leaf_days(f"{state}/localhost.pem") <= 90
    # The leaf verifies under the new CA (it was issued again, not kept).
    v = subprocess.run(["openssl", "verify", "-CAfile", f"{state}/ca.pem",
                        f"{state}/localhost.pem"],
                       capture_output=True, text=True, timeout=30)
    assert v.returncode == 0, v.stdout + v.stderr
    # Kept as it is on the next start.
    new_ca, leaf = open(f"{state}/ca.pem").read(), open(f"{state}/localhost.pem").read()
    out = check()
    assert "made" not in out and "renewed" not in out, out
    assert open(f"{state}/localhost.pem").read() == leaf
    # An expired leaf is renewed; the CA stays.
    openssl_leaf(state, -1)
    out = check()
    assert "renewed a certificate" in out and "local CA" not in out, out
    assert open(f"{state}/ca.pem").read() == new_ca
    assert leaf_days(f"{state}/localhost.pem") <= 90


@test
def no_options_at_all_listens_on_8443_and_8080(root):
    for port in (8443, 8080):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                print(f"  (port {port} is taken here: skipped)")
                return
    env = dict(os.environ, XDG_STATE_HOME=f"{TMP}/xdg")
    p = subprocess.Popen([BIN, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        lines = [p.stdout.readline() for _ in range(5)]
        text = "".join(lines)
        assert "https://localhost:8443/" in text and "http://localhost:8080/" in text, text
        ca = f"{TMP}/xdg/tlsloop/ca.pem"
        r = subprocess.run(["curl", "-sS", "--cacert", ca, "https://localhost:8443/"],
                           capture_output=True, timeout=20 * SLOW)
        assert r.returncode == 0 and b"tlsloop serve" in r.stdout, r
    finally:
        p.terminate()
        assert p.wait(20 * SLOW) == 0


@test
def curl_tls12_and_tls13_verified(root):
    srv = Serve("--root", root)
    try:
        for flags, want in ((["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"),
                            (["--tlsv1.3"], "TLSv1.3")):
            r = curl(*flags, "-v", "-w", "%{http_code} %{ssl_verify_result}",
                     f"https://localhost:{srv.https}/index.html")
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"hello tlsloop\n200 0", r.stdout
            assert want.encode() in r.stderr, r.stderr[-800:]
        # And the server's certificate is refused without the CA.
        r = subprocess.run(["curl", "-sS", f"https://localhost:{srv.https}/"],
                           capture_output=True, timeout=20 * SLOW,
                           env=dict(os.environ, CURL_CA_BUNDLE="/nonexistent"))
        assert r.returncode != 0
    finally:
        assert srv.stop() == 0


@test
def openssl_s_client_and_gnutls_cli(root):
    srv = Serve("--root", root)
    try:
        req = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.https}",
                            "-servername", "localhost", "-CAfile", CA, "-verify_return_error",
                            "-ign_eof", "-quiet"], input=req, capture_output=True,
                           timeout=20 * SLOW)
        assert r.returncode == 0, r.stderr[-500:]
        assert r.stdout.startswith(b"HTTP/1.1 200 OK") and r.stdout.endswith(b"hello tlsloop\n")
        if shutil.which("gnutls-cli"):
            r = subprocess.run(["gnutls-cli", "--x509cafile", CA, "--port", str(srv.https),
                                "localhost"], input=req, capture_output=True, timeout=20 * SLOW)
            assert b"HTTP/1.1 200 OK" in r.stdout and b"hello tlsloop" in r.stdout, r.stdout[-500:]
        else:
            print("  (gnutls-cli not installed: that half skipped)")
    finally:
        assert srv.stop() == 0


@test
def close_notify_before_eof_on_connection_close(root):
    srv = Serve("--root", root, "--metrics-listen", "127.0.0.1:0")
    try:
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with tls_sock(srv.https, version) as s:
                s.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)   # SSLEOFError here if the end had no close_notify
                    if not chunk:
                        break
                    data += chunk
                assert data.endswith(b"hello tlsloop\n") and b"Connection: close" in data
        # The clients asked for the end, so the server closed without waiting for their
        # close_notify (no lingering drain): both connections ended "local", yet every byte and
        # a close_notify arrived above.
        _, _, body, _ = get(srv.metrics, "/metrics", tls=False)
        m = re.search(r'^tlsloop_connections_closed_total\{end="local"\} (\d+)', body.decode(), re.M)
        assert m and int(m.group(1)) == 2, body.decode()
    finally:
        assert srv.stop() == 0


def main():
    global TMP, STATE, CA
    with tempfile.TemporaryDirectory() as tmp:
        TMP, STATE, CA = setup(tmp)
        root = make_root()
        tests = [embedded_default_makes_its_ca_and_serves_the_builtin_page,
                 generated_ca_is_name_constrained_and_old_ones_are_replaced,
                 no_options_at_all_listens_on_8443_and_8080, curl_tls12_and_tls13_verified,
                 openssl_s_client_and_gnutls_cli, close_notify_before_eof_on_connection_close]
        run_selected(tests, root)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
