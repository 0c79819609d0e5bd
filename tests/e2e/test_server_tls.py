#!/usr/bin/env python3
"""test_server_tls.py - the server core's TLS (tlsloop/server.h, through examples/echo_server):
SNI and RSA/ECDSA certificate choice, mTLS, TLS 1.2/1.3 resumption, tickets shared by two
processes through a key file and that file's permissions, renegotiation refused, gnutls-cli.
"""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, run_selected, summary, test  # noqa: E402
from e2e_server import (ECHO, Server, client_ctx, connect, echo_once, make_certs,  # noqa: E402
                        peer_cn, s_client, setup)

TMP = None   # setup() names it


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


def main():
    global TMP
    with tempfile.TemporaryDirectory() as tmp:
        TMP = setup(tmp)
        c = make_certs("a", "b", "rsa", "ec", "localhost", "client")
        tests = [sni_picks_the_certificate, rsa_and_ecdsa_for_the_same_name,
                 mtls_accepts_good_refuses_missing, resumption_tls12_and_tls13,
                 ticket_key_file_shared_by_two_processes,
                 ticket_key_file_open_to_others_and_private_key_warning, renegotiation_refused,
                 gnutls_cli_interoperates]
        run_selected(tests, c)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
