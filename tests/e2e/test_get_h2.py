#!/usr/bin/env python3
"""test_get_h2.py - the client's HTTP/2 (tl_client_h2): `tlsloop get --http2` and
`tlsloop bench --h2` against HTTP/2 servers nobody here wrote, h2o and nginx, started by the test
on ephemeral loopback ports and stopped by PID.

Covers: get --http2 over TLS (ALPN h2): -v shows ALPN h2, "HTTP: HTTP/2" and the response head as
HTTP/2 sends it; the body byte for byte (sha256) for a small file and a 4 MiB one, from h2o and
from nginx; -I and -i; -L; a 404 (exit 0, and 7 with --fail); a server that speaks only http/1.1
(nginx without http2 on that port): the fallback to HTTP/1.1, said under -v; plain get -v says
HTTP/1.1 too; --http2-prior-knowledge over http:// (h2c, h2o), and --http2 over http:// staying
HTTP/1.1 with a note. bench --h2 -m 10: exactly -n requests, all 2xx, every one seen by the server
as HTTP/2 (h2o's access log) and on as many connections as asked; h2load on the same server and the
same counts agrees; a server that does not select h2 ends the run with that error; 404s counted as
4xx errors; nginx ending each connection by GOAWAY after 50 requests (keepalive_requests): the
streams it refused are sent again, none lost, none counted twice.

And against a small HTTP/2 server on python's h2 (h2c by prior knowledge) that misbehaves on
purpose: a body shorter than its content-length with END_STREAM (malformed, exit 9), a
connection cut inside the body (truncated, 9), RST_STREAM (9), GOAWAY refusing the stream (9),
no answer (--timeout: 28), 150 header fields (over the limit: 9), and a 103 before the 200
(skipped: 0); and h2c towards a server that answers in HTTP/1.1 (9; bench names the error).

Runs from the repository root; TLSLOOP_BIN is the tlsloop program (build/tlsloop by default).
Needs h2o, nginx and h2load (scripts/deps.sh). Ends with "N passed, N failed".
"""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, TcpServer, fail, stop_process, summary, test, wait_for  # noqa: E402

BIN = os.environ.get("TLSLOOP_BIN", "build/tlsloop")
TMP = None
BIG = 4 * 1024 * 1024 + 123   # not a multiple of any frame or record size


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def get(*args, timeout=30):
    return subprocess.run([BIN, "get", *args], capture_output=True, timeout=timeout * SLOW)


def bench(*args, timeout=60):
    r = subprocess.run([BIN, "bench", "--json", *args], capture_output=True,
                       timeout=timeout * SLOW)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"no JSON report (exit {r.returncode}): {r.stdout[-500:]!r} "
                             f"{r.stderr[-500:]!r}")


def sha(data):
    return hashlib.sha256(data).hexdigest()


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_files():
    d = TMP
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "30", "-subj", "/CN=h2 test CA", "-keyout", f"{d}/ca.key", "-out",
            f"{d}/ca.pem")
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=localhost", "-keyout", f"{d}/leaf.key", "-out", f"{d}/leaf.csr")
    openssl("x509", "-req", "-in", f"{d}/leaf.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
            "-CAcreateserial", "-extfile", f"{d}/ext", "-days", "30", "-out", f"{d}/leaf.pem")
    os.makedirs(f"{d}/www")
    with open(f"{d}/www/hello.txt", "w") as f:
        f.write("hello over h2\n")
    with open(f"{d}/www/big.bin", "wb") as f:
        f.write(os.urandom(BIG))
    # The servers' workers run as nobody: the files must be readable by it.
    for p in (d, f"{d}/www"):
        os.chmod(p, 0o755)
    for p in ("hello.txt", "big.bin"):
        os.chmod(f"{d}/www/{p}", 0o644)


class H2o:
    """h2o, one thread: TLS (ALPN h2 and http/1.1) and plain (h2c by prior knowledge, and
    HTTP/1.1) listeners; an access log of the protocol and status of every request."""

    def __init__(self):
        self.https, self.http = free_port(), free_port()
        self.log = f"{TMP}/h2o-access.log"
        conf = f"{TMP}/h2o.conf"
        with open(conf, "w") as f:
            f.write(f"""num-threads: 1
error-log: {TMP}/h2o-error.log
access-log:
  path: {self.log}
  format: "%H %s %{{remote}}p"
listen:
  host: 127.0.0.1
  port: {self.https}
  ssl:
    certificate-file: {TMP}/leaf.pem
    key-file: {TMP}/leaf.key
    minimum-version: TLSv1.2
    ocsp-update-interval: 0
listen:
  host: 127.0.0.1
  port: {self.http}
hosts:
  default:
    paths:
      /:
        file.dir: {TMP}/www
""")
        self.proc = subprocess.Popen(["h2o", "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: listening(self.https) and listening(self.http), 20,
                 "h2o to listen")

    def log_lines(self):
        with open(self.log) as f:
            return f.read().splitlines()

    def stop(self):
        stop_process(self.proc, 20, "h2o")


class Nginx:
    """nginx, one worker: a TLS listener with http2, one without (it selects http/1.1), and
    keepalive_requests 50 (an HTTP/2 connection ends with GOAWAY after 50 requests)."""

    def __init__(self):
        self.h2, self.h1 = free_port(), free_port()
        conf = f"{TMP}/nginx.conf"
        for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
            os.makedirs(f"{TMP}/ngx-{sub}", exist_ok=True)
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {TMP}/nginx.pid;
error_log {TMP}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ text/plain txt; application/octet-stream bin; }}
    default_type application/octet-stream;
    access_log {TMP}/nginx-access.log;
    keepalive_requests 50;
    ssl_protocols TLSv1.2 TLSv1.3;
    client_body_temp_path {TMP}/ngx-body;
    proxy_temp_path {TMP}/ngx-proxy;
    fastcgi_temp_path {TMP}/ngx-fcgi;
    uwsgi_temp_path {TMP}/ngx-uwsgi;
    scgi_temp_path {TMP}/ngx-scgi;
    server {{
        listen 127.0.0.1:{self.h2} ssl http2;
        listen 127.0.0.1:{self.h1} ssl;
        ssl_certificate {TMP}/leaf.pem;
        ssl_certificate_key {TMP}/leaf.key;
        root {TMP}/www;
        location = /moved {{ return 301 /hello.txt; }}
    }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", TMP, "-e", f"{TMP}/nginx-error.log", "-c",
                                      conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: listening(self.h2) and listening(self.h1), 20, "nginx to listen")

    def stop(self):
        stop_process(self.proc, 20, "nginx")


class CraftedH2:
    """An HTTP/2 server (plain TCP, prior knowledge) on python's h2; what it does depends on the
    request's path."""

    def __init__(self):
        try:
            import h2.connection  # noqa: F401
        except ImportError:   # Debian's python3-h2, for a python3 that is not Debian's
            sys.path.append("/usr/lib/python3/dist-packages")
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions
        self.h2 = h2
        self.srv = TcpServer(self._serve)
        self.port = self.srv.port

    def _serve(self, c):
        h2 = self.h2
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=False, validate_outbound_headers=False))
        conn.initiate_connection()
        try:
            c.sendall(conn.data_to_send())
            while True:
                data = c.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        path = dict(ev.headers)[b":path"].decode()
                        if not self._answer(conn, c, ev.stream_id, path):
                            return
                c.sendall(conn.data_to_send())
        except h2.exceptions.ProtocolError:
            pass   # the client's frames after our GOAWAY: h2 refuses them, we are done

    def _answer(self, conn, c, sid, path):
        """False: close the connection now."""
        ok = [(":status", "200"), ("content-length", "100")]
        if path == "/short-cl":
            conn.send_headers(sid, ok)
            conn.send_data(sid, b"x" * 10, end_stream=True)
        elif path == "/cut":
            conn.send_headers(sid, ok)
            conn.send_data(sid, b"x" * 10)
            c.sendall(conn.data_to_send())
            return False
        elif path == "/rst":
            conn.send_headers(sid, ok)
            conn.reset_stream(sid, error_code=2)   # INTERNAL_ERROR
        elif path == "/goaway":
            conn.close_connection(error_code=0, last_stream_id=0)
        elif path == "/silent":
            pass
        elif path == "/many-headers":
            conn.send_headers(sid, [(":status", "200")] + [(f"x-h{i}", "v") for i in range(150)],
                              end_stream=True)
        elif path == "/interim":
            conn.send_headers(sid, [(":status", "103"), ("link", "</a.css>; rel=preload")])
            conn.send_headers(sid, [(":status", "200"), ("content-length", "5")])
            conn.send_data(sid, b"fine\n", end_stream=True)
        else:
            conn.send_headers(sid, [(":status", "404"), ("content-length", "0")], end_stream=True)
        return True

    def close(self):
        self.srv.close()


# ---- get --http2 --------------------------------------------------------------------------------

@test
def get_h2_small_verbose(h2o):
    r = get("-v", "--http2", "--cacert", f"{TMP}/ca.pem",
            f"https://localhost:{h2o.https}/hello.txt", "--resolve",
            f"localhost:{h2o.https}:127.0.0.1")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert r.stdout == b"hello over h2\n", r.stdout
    assert "ALPN h2," in err, err
    assert "* HTTP: HTTP/2" in err, err
    assert "> GET /hello.txt HTTP/2" in err and "> :authority: localhost:" in err, err
    assert "> user-agent: tlsloop/" in err, err   # sent in lower case
    assert "< HTTP/2 200" in err and "< content-length: 14" in err, err
    assert "* verification: ok" in err, err
    assert "the server's close_notify: received" in err, err   # h2o answers ours
    assert h2o.log_lines()[-1].startswith("HTTP/2 200"), h2o.log_lines()[-1:]


@test
def get_h2_big_file(h2o):
    want = sha(open(f"{TMP}/www/big.bin", "rb").read())
    r = get("--http2", "--cacert", f"{TMP}/ca.pem", f"https://127.0.0.1:{h2o.https}/big.bin")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == BIG and sha(r.stdout) == want
    r = get("--http2", "--cacert", f"{TMP}/ca.pem", "-o", f"{TMP}/out.bin",
            f"https://127.0.0.1:{h2o.https}/big.bin")
    assert r.returncode == 0, r.stderr
    assert sha(open(f"{TMP}/out.bin", "rb").read()) == want
    assert h2o.log_lines()[-1].startswith("HTTP/2 200"), h2o.log_lines()[-1:]


@test
def get_h2_from_nginx(ngx):
    want = sha(open(f"{TMP}/www/big.bin", "rb").read())
    r = get("-v", "--http2", "--cacert", f"{TMP}/ca.pem", f"https://127.0.0.1:{ngx.h2}/big.bin")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "* HTTP: HTTP/2" in err and "< HTTP/2 200" in err, err
    assert sha(r.stdout) == want
    # We end first (GOAWAY, close_notify); nginx closes without answering it: no warning over
    # HTTP/2 (nothing was cut off: END_STREAM said so), -v tells.
    assert "we closed first" in err and "warning" not in err, err
    r = get("--http2", "--cacert", f"{TMP}/ca.pem", f"https://127.0.0.1:{ngx.h2}/hello.txt")
    assert r.returncode == 0 and r.stdout == b"hello over h2\n", (r.stdout, r.stderr)
    # -L: the redirect's location (a lower-case field in HTTP/2) followed, over HTTP/2 again.
    r = get("-v", "-L", "--http2", "--cacert", f"{TMP}/ca.pem",
            f"https://127.0.0.1:{ngx.h2}/moved")
    err = r.stderr.decode()
    assert r.returncode == 0 and r.stdout == b"hello over h2\n", err
    assert "< HTTP/2 301" in err and err.count("* HTTP: HTTP/2") == 2, err


@test
def get_h2_head_and_404(h2o):
    r = get("-I", "--http2", "--cacert", f"{TMP}/ca.pem",
            f"https://127.0.0.1:{h2o.https}/hello.txt")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("HTTP/2 200\r\n") and "content-length: 14\r\n" in out, out
    for extra in (["--http2"], []):   # -i: the head, as it came, then the body
        r = get("-i", *extra, "--cacert", f"{TMP}/ca.pem",
                f"https://127.0.0.1:{h2o.https}/hello.txt")
        assert r.returncode == 0, r.stderr
        first = b"HTTP/2 200\r\n" if extra else b"HTTP/1.1 200 OK\r\n"
        assert r.stdout.startswith(first), r.stdout
        assert r.stdout.endswith(b"\r\n\r\nhello over h2\n"), r.stdout
        assert (b"content-length: 14\r\n" if extra else b"Content-Length: 14\r\n") in r.stdout
    r = get("--http2", "--cacert", f"{TMP}/ca.pem", f"https://127.0.0.1:{h2o.https}/missing")
    assert r.returncode == 0, r.stderr   # an HTTP status is no failure without --fail
    r = get("-v", "-f", "--http2", "--cacert", f"{TMP}/ca.pem",
            f"https://127.0.0.1:{h2o.https}/missing")
    assert r.returncode == 7, (r.returncode, r.stderr)
    assert "< HTTP/2 404" in r.stderr.decode() and "answered 404" in r.stderr.decode(), r.stderr
    assert r.stdout == b""
    assert h2o.log_lines()[-1].startswith("HTTP/2 404"), h2o.log_lines()[-1:]


@test
def get_h2_fallback_to_http1(ngx):
    """nginx without http2 on that port selects http/1.1: HTTP/1.1 it is, and -v says so."""
    r = get("-v", "--http2", "--cacert", f"{TMP}/ca.pem", f"https://127.0.0.1:{ngx.h1}/hello.txt")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert r.stdout == b"hello over h2\n"
    assert "ALPN http/1.1" in err, err
    assert "did not select h2 (ALPN http/1.1): falling back to HTTP/1.1" in err, err
    assert "* HTTP: HTTP/1.1" in err and "< HTTP/1.1 200" in err, err
    big = get("--http2", "--cacert", f"{TMP}/ca.pem", f"https://127.0.0.1:{ngx.h1}/big.bin")
    assert big.returncode == 0 and sha(big.stdout) == sha(open(f"{TMP}/www/big.bin", "rb").read())


@test
def get_http1_verbose_says_http1(h2o):
    r = get("-v", "--cacert", f"{TMP}/ca.pem", f"https://127.0.0.1:{h2o.https}/hello.txt")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "ALPN http/1.1" in err and "* HTTP: HTTP/1.1" in err, err
    assert h2o.log_lines()[-1].startswith("HTTP/1.1 200"), h2o.log_lines()[-1:]


@test
def get_h2c_prior_knowledge(h2o):
    r = get("-v", "--http2-prior-knowledge", f"http://127.0.0.1:{h2o.http}/big.bin")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "* HTTP: HTTP/2" in err and "< HTTP/2 200" in err, err
    assert sha(r.stdout) == sha(open(f"{TMP}/www/big.bin", "rb").read())
    assert h2o.log_lines()[-1].startswith("HTTP/2 200"), h2o.log_lines()[-1:]
    r = get("-v", "--http2", f"http://127.0.0.1:{h2o.http}/hello.txt")
    err = r.stderr.decode()
    assert r.returncode == 0 and r.stdout == b"hello over h2\n", err
    assert "no h2c upgrade" in err and "* HTTP: HTTP/1.1" in err, err
    assert h2o.log_lines()[-1].startswith("HTTP/1.1 200"), h2o.log_lines()[-1:]


@test
def get_h2_misbehaving_server(bad):
    url = f"http://127.0.0.1:{bad.port}"
    pk = "--http2-prior-knowledge"
    r = get(pk, f"{url}/short-cl")
    assert r.returncode == 9 and b"malformed response" in r.stderr and b"content-length" in \
        r.stderr, r.stderr
    r = get(pk, f"{url}/cut")
    assert r.returncode == 9 and b"after 10 bytes of the body" in r.stderr, r.stderr
    r = get(pk, f"{url}/rst")
    assert r.returncode == 9 and b"reset (INTERNAL_ERROR)" in r.stderr, r.stderr
    r = get(pk, f"{url}/goaway")
    assert r.returncode == 9 and b"refused the stream" in r.stderr and b"GOAWAY" in r.stderr, \
        r.stderr
    t0 = time.monotonic()
    r = get(pk, "--timeout", "1s", f"{url}/silent")
    assert r.returncode == 28 and b"waiting for the response" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 3 * SLOW
    r = get(pk, f"{url}/many-headers")
    assert r.returncode == 9 and b"over 100 header fields" in r.stderr, r.stderr
    r = get("-v", pk, f"{url}/interim")
    assert r.returncode == 0 and r.stdout == b"fine\n", r.stderr
    assert b"< HTTP/2 200" in r.stderr and b"HTTP/2 103" not in r.stderr, r.stderr


@test
def h2c_against_an_http1_server():
    """Prior knowledge towards a server that answers the preface with HTTP/1.1: what nghttp2
    says (no SETTINGS came), exit 9; bench counts it by that name."""
    def h1(sock):
        sock.recv(65536)
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    srv = TcpServer(h1)
    try:
        r = get("--http2-prior-knowledge", f"http://127.0.0.1:{srv.port}/")
        assert r.returncode == 9 and b"HTTP/2 protocol error" in r.stderr and \
            b"SETTINGS" in r.stderr, r.stderr
        rc, rep = bench("--h2", "-c", "1", "-n", "3", f"http://127.0.0.1:{srv.port}/")
        assert rc == 1 and rep["requests"] == 0, rep
        assert any(k.startswith("HTTP/2 protocol error") for k in rep["errors"]), rep
    finally:
        srv.close()


# ---- bench --h2 ---------------------------------------------------------------------------------

@test
def bench_h2_counts(h2o):
    """-n 2000 -c 4 -m 10: exactly 2000 requests, all 2xx, all HTTP/2 at the server, from 4
    connections."""
    before = len(h2o.log_lines())
    rc, rep = bench("--h2", "-m", "10", "-c", "4", "-n", "2000", "--cacert", f"{TMP}/ca.pem",
                    f"https://127.0.0.1:{h2o.https}/hello.txt")
    assert rc == 0, rep
    assert rep["protocol"] == "h2" and rep["streams_per_connection"] == 10, rep
    assert rep["requests"] == 2000 and rep["status"]["2xx"] == 2000, rep
    assert rep["errors_total"] == 0 and rep["streams_retried"] == 0, rep
    assert rep["outcome"] == {"succeeded": 2000, "failed": 0, "errored": 0, "timeout": 0}, rep
    assert rep["handshakes"]["full"] + rep["handshakes"]["resumed"] == 4, rep
    assert rep["bytes"] == 2000 * 14, rep
    lines = h2o.log_lines()[before:]
    wait_for(lambda: len(h2o.log_lines()) - before >= 2000, 10, "h2o's access log")
    lines = h2o.log_lines()[before:]
    assert len(lines) == 2000, len(lines)
    assert all(x.startswith("HTTP/2 200") for x in lines), [x for x in lines if "HTTP/2 200"
                                                             not in x][:3]
    assert len({x.split()[-1] for x in lines}) == 4, "not 4 connections (client ports)"


@test
def bench_h2_agrees_with_h2load(h2o):
    """The same run by h2load: the same counts, all succeeded, both at the server."""
    url = f"https://127.0.0.1:{h2o.https}/hello.txt"
    before = len(h2o.log_lines())
    r = subprocess.run(["h2load", "-n", "1000", "-c", "4", "-m", "10", url],
                       capture_output=True, text=True, timeout=60 * SLOW)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed",
                  r.stdout)
    assert m and m.groups() == ("1000", "1000", "1000", "0"), r.stdout
    assert re.search(r"status codes: 1000 2xx", r.stdout), r.stdout
    rc, rep = bench("--h2", "-m", "10", "-c", "4", "-n", "1000", "--cacert", f"{TMP}/ca.pem", url)
    assert rc == 0 and rep["requests"] == 1000 and rep["status"]["2xx"] == 1000, rep
    wait_for(lambda: len(h2o.log_lines()) - before >= 2000, 10, "h2o's access log")
    lines = h2o.log_lines()[before:]
    assert len(lines) == 2000 and all(x.startswith("HTTP/2 200") for x in lines), len(lines)


@test
def bench_h2_duration_and_m1(h2o):
    """-d with -m 1 (one stream at a time): runs, no errors, HTTP/2."""
    rc, rep = bench("--h2", "-c", "2", "-d", "1s", "--warmup", "0", "--cacert", f"{TMP}/ca.pem",
                    f"https://127.0.0.1:{h2o.https}/hello.txt")
    assert rc == 0 and rep["errors_total"] == 0, rep
    assert rep["streams_per_connection"] == 1 and rep["requests"] > 10, rep
    assert rep["status"]["2xx"] == rep["requests"], rep


@test
def bench_h2_prior_knowledge_plain(h2o):
    before = len(h2o.log_lines())
    rc, rep = bench("--h2", "-m", "5", "-c", "2", "-n", "200",
                    f"http://127.0.0.1:{h2o.http}/hello.txt")
    assert rc == 0 and rep["requests"] == 200 and rep["status"]["2xx"] == 200, rep
    wait_for(lambda: len(h2o.log_lines()) - before >= 200, 10, "h2o's access log")
    assert all(x.startswith("HTTP/2 200") for x in h2o.log_lines()[before:])


@test
def bench_h2_404_counted(h2o):
    rc, rep = bench("--h2", "-m", "10", "-c", "2", "-n", "100", "--cacert", f"{TMP}/ca.pem",
                    f"https://127.0.0.1:{h2o.https}/missing")
    assert rc == 1, rep
    assert rep["status"]["4xx"] == 100 and rep["errors"].get("HTTP 4xx") == 100, rep
    # In h2load's terms, as h2load itself counts the same run.
    assert rep["outcome"] == {"succeeded": 0, "failed": 100, "errored": 0, "timeout": 0}, rep
    r = subprocess.run(["h2load", "-n", "100", "-c", "2", "-m", "10",
                        f"https://127.0.0.1:{h2o.https}/missing"],
                       capture_output=True, text=True, timeout=60 * SLOW)
    assert re.search(r"100 done, 0 succeeded, 100 failed, 0 errored, 0 timeout", r.stdout), \
        r.stdout


@test
def bench_h2_server_without_h2(ngx):
    rc, rep = bench("--h2", "-m", "10", "-c", "2", "-d", "5s", "--warmup", "0", "--cacert",
                    f"{TMP}/ca.pem", f"https://127.0.0.1:{ngx.h1}/hello.txt", timeout=30)
    assert rc == 1, rep
    assert any("did not select h2" in k and "http/1.1" in k for k in rep["errors"]), rep
    assert rep["requests"] == 0 and rep["seconds"] < 3, rep   # ends the run at once


@test
def bench_h2_goaway_retries(ngx):
    """nginx ends every connection after 50 requests with GOAWAY: what it refused is sent again;
    exactly -n requests reach it, all 2xx."""
    log = f"{TMP}/nginx-access.log"
    before = len(open(log).read().splitlines()) if os.path.exists(log) else 0
    rc, rep = bench("--h2", "-m", "10", "-c", "2", "-n", "500", "--cacert", f"{TMP}/ca.pem",
                    f"https://127.0.0.1:{ngx.h2}/hello.txt")
    assert rc == 0, rep
    assert rep["requests"] == 500 and rep["status"]["2xx"] == 500, rep
    assert rep["handshakes"]["full"] + rep["handshakes"]["resumed"] >= 10, rep   # 500 / 50
    wait_for(lambda: len(open(log).read().splitlines()) - before >= 500, 10, "nginx's log")
    lines = open(log).read().splitlines()[before:]
    assert len(lines) == 500 and all('"GET /hello.txt HTTP/2.0" 200' in x for x in lines), \
        (len(lines), lines[:2])


def main():
    global TMP
    missing = [t for t in ("h2o", "nginx", "h2load") if not shutil.which(t)]
    if missing:
        fail("setup", f"needs {', '.join(missing)} (scripts/deps.sh installs them)")
        return summary()
    TMP = tempfile.mkdtemp(prefix="tlsloop-h2.")
    h2o = ngx = bad = None
    try:
        make_files()
        bad = CraftedH2()
        if not sys.argv[1:] or "get_h2_misbehaving_server" in sys.argv[1:]:
            get_h2_misbehaving_server(bad)
        if not sys.argv[1:] or "h2c_against_an_http1_server" in sys.argv[1:]:
            h2c_against_an_http1_server()
        h2o = H2o()
        ngx = Nginx()
        for t in (get_h2_small_verbose, get_h2_big_file, get_h2_head_and_404,
                  get_http1_verbose_says_http1, get_h2c_prior_knowledge, bench_h2_counts,
                  bench_h2_agrees_with_h2load, bench_h2_duration_and_m1,
                  bench_h2_prior_knowledge_plain, bench_h2_404_counted):
            if not sys.argv[1:] or t.__name__ in sys.argv[1:]:
                t(h2o)
        for t in (get_h2_from_nginx, get_h2_fallback_to_http1, bench_h2_server_without_h2,
                  bench_h2_goaway_retries):
            if not sys.argv[1:] or t.__name__ in sys.argv[1:]:
                t(ngx)
    except Exception as e:   # a server that did not start
        fail("setup", repr(e))
    finally:
        for s in (h2o, ngx):
            if s:
                s.stop()
        if bad:
            bad.close()
        shutil.rmtree(TMP, ignore_errors=True)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
