#!/usr/bin/env python3
"""test_io_backend.py - the `io` option of `tlsloop serve` and `tlsloop proxy`: on io_uring they
serve curl, openssl s_client, gnutls-cli and python's ssl; with io_uring refused (run under
tests/tools/no_uring: seccomp makes io_uring_setup fail with EPERM or ENOSYS) they start on epoll
and say why once; the start-up line and /metrics name the backend; bad values are refused;
`tlsloop get` and `tlsloop bench` take --io too.
"""
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, run_selected, summary, test  # noqa: E402
import e2e_proxy  # noqa: E402
import e2e_serve  # noqa: E402
from e2e_serve import BIN, Reader, Serve, curl, get, make_root, tls_sock  # noqa: E402

BUILD = os.environ.get("TLSLOOP_BUILD", "build")
NO_URING = f"{BUILD}/tests/tools/no_uring"
FALLBACK = {"EPERM": "io_uring_setup: Operation not permitted",
            "ENOSYS": "io_uring_setup: Function not implemented"}


def uring_here():
    """Whether this process may make an io_uring (io_uring_setup(2) with 2 entries works)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    params = ctypes.create_string_buffer(120)   # struct io_uring_params, zeroed
    fd = libc.syscall(ctypes.c_long(425), ctypes.c_long(2), params)   # the same on every arch
    if fd < 0:
        print(f"  (io_uring refused here: {os.strerror(ctypes.get_errno())}; "
              "the io_uring checks expect epoll)")
        return False
    os.close(fd)
    return True


URING = None   # set in main


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10 * SLOW) as r:
        return r.read().decode()


def assert_backend(text, want):
    """The metrics page says the workers run on want, and not on the other one."""
    for name in ("epoll", "io_uring"):
        m = re.search(r'^tlsloop_io_backend\{backend="%s"\} (\d+)$' % name, text, re.M)
        assert m, text[:2000]
        assert int(m.group(1)) == (name == want), (name, want, m.group(0))


def expect_on(requested_uring):
    return "io_uring" if requested_uring and URING else "epoll"


# ---- tlsloop serve ------------------------------------------------------------------------------

@test
def serve_on_io_uring_serves_every_client(root):
    srv = Serve("--root", root, "--io", "uring", "--workers", "2",
                "--metrics-listen", "127.0.0.1:0")
    try:
        want = expect_on(True)
        srv.wait_log(rf"listening on .* with 2 workers, io={want}\b")
        assert ("requested;" in srv.log_text()) == (want == "epoll"), srv.log_text()
        url = f"https://localhost:{srv.https}/index.html"
        for flags in (["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]):
            r = curl(*flags, "-w", "%{http_code}", url, url)   # two requests, one connection
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"hello tlsloop\n200hello tlsloop\n200", r.stdout
        r = curl("-o", "/dev/null", "-w", "%{size_download}",
                 f"https://localhost:{srv.https}/data.bin")
        assert r.returncode == 0 and r.stdout == b"262144", (r.stdout, r.stderr)
        req = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.https}",
                            "-servername", "localhost", "-CAfile", e2e_serve.CA,
                            "-verify_return_error", "-ign_eof", "-quiet"], input=req,
                           capture_output=True, timeout=20 * SLOW)
        assert r.returncode == 0, r.stderr[-500:]
        assert r.stdout.startswith(b"HTTP/1.1 200 OK") and r.stdout.endswith(b"hello tlsloop\n")
        if shutil.which("gnutls-cli"):
            r = subprocess.run(["gnutls-cli", "--x509cafile", e2e_serve.CA, "--port",
                                str(srv.https), "localhost"], input=req, capture_output=True,
                               timeout=20 * SLOW)
            assert b"HTTP/1.1 200 OK" in r.stdout and b"hello tlsloop" in r.stdout, r.stdout[-500:]
        else:
            print("  (gnutls-cli not installed: that client skipped)")
        # python's ssl: keep-alive, then the whole big file over one connection.
        with tls_sock(srv.https) as s:
            rd = Reader(s)
            for _ in range(5):
                s.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
                st, _, body = rd.response()
                assert st == 200 and body == b"hello tlsloop\n"
            s.sendall(b"GET /data.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            st, _, body = rd.response()
            assert st == 200 and body == bytes(range(256)) * 1024
        st, _, _, _ = get(srv.http, "/index.html", tls=False)
        assert st in (200, 301, 308), st
        assert_backend(metrics(srv.metrics), want)
    finally:
        assert srv.stop() == 0


@test
def serve_with_io_uring_refused_runs_on_epoll(root):
    for err in ("EPERM", "ENOSYS"):
        srv = Serve("--root", root, "--io", "uring", "--workers", "2",
                    "--metrics-listen", "127.0.0.1:0", wrap=[NO_URING, "--errno", err])
        try:
            srv.wait_log(r"listening on .* with 2 workers, io=epoll\b")
            log = srv.log_text()
            warn = re.findall(r"^.*\[warn\] io uring requested; io_uring: (.*)$", log, re.M)
            assert warn == [f"{FALLBACK[err]}; running on epoll"], (err, log)   # once, not per loop
            r = curl("-w", "%{http_code}", f"https://localhost:{srv.https}/index.html")
            assert r.returncode == 0 and r.stdout == b"hello tlsloop\n200", (r.stdout, r.stderr)
            assert_backend(metrics(srv.metrics), "epoll")
        finally:
            assert srv.stop() == 0


@test
def serve_auto_takes_io_uring_where_allowed(root):
    srv = Serve("--root", root, "--io", "auto", "--metrics-listen", "127.0.0.1:0")
    try:
        srv.wait_log(rf"listening on .*, io={expect_on(True)}\b")
        assert_backend(metrics(srv.metrics), expect_on(True))
    finally:
        assert srv.stop() == 0
    # Refused: epoll, told at info (auto expects it may not get io_uring), no warning.
    srv = Serve("--root", root, "--io", "auto", "--metrics-listen", "127.0.0.1:0",
                wrap=[NO_URING])
    try:
        srv.wait_log(r"listening on .*, io=epoll\b")
        log = srv.log_text()
        assert re.search(r"\[info\] io auto requested; io_uring: io_uring_setup: Operation not "
                         r"permitted; running on epoll", log), log
        assert "[warn]" not in log, log
        still = curl("-w", "%{http_code}", f"https://localhost:{srv.https}/index.html")
        assert still.returncode == 0 and still.stdout.endswith(b"200"), still.stderr
        assert_backend(metrics(srv.metrics), "epoll")
    finally:
        assert srv.stop() == 0


@test
def serve_default_is_tlsloop_io_else_epoll(root):
    env = {k: v for k, v in os.environ.items() if k != "TLSLOOP_IO"}
    for value, want in ((None, "epoll"), ("uring", expect_on(True)), ("epoll", "epoll")):
        if value:
            env["TLSLOOP_IO"] = value
        srv = Serve("--root", root, env=env)
        try:
            srv.wait_log(rf"listening on .*, io={want}\b")
        finally:
            assert srv.stop() == 0
    # The option overrides the environment.
    env["TLSLOOP_IO"] = "uring"
    srv = Serve("--root", root, "--io", "epoll", env=env)
    try:
        srv.wait_log(r"listening on .*, io=epoll\b")
    finally:
        assert srv.stop() == 0


@test
def bad_io_values_are_refused(root):
    conf = f"{e2e_serve.TMP}/io.conf"
    with open(conf, "w") as f:
        f.write("listen 127.0.0.1:0\nio kqueue\n")
    cases = [([BIN, "serve", "--listen", "127.0.0.1:0", "--io", "kqueue"], "io kqueue"),
             ([BIN, "serve", "--listen", "127.0.0.1:0", "--io="], "io: needs a value"),
             ([BIN, "serve", "--config", conf], "io.conf:2: io kqueue"),
             ([BIN, "proxy", "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1",
               "--io", "fast"], "io fast")]
    for cmd, what in cases:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20 * SLOW)
        assert r.returncode == 2, (cmd, r.returncode, r.stderr)
        assert what in r.stderr, (cmd, r.stderr)
        assert "epoll, uring or auto" in r.stderr or "epoll|uring|auto" in r.stderr, r.stderr
    r = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=20)
    assert re.search(r"--io epoll\|uring\|auto .*auto: io_uring when the kernel allows it, else\s+"
                     r"epoll", r.stdout), r.stdout


@test
def get_and_bench_take_io(root):
    srv = Serve("--root", root, "--io", "epoll")
    try:
        url = f"https://localhost:{srv.https}/index.html"
        for wrap, want in (([], expect_on(True)), ([NO_URING], "epoll")):
            r = subprocess.run([*wrap, BIN, "get", "-v", "--io", "uring", "--cacert", e2e_serve.CA,
                                url], capture_output=True, text=True, timeout=20 * SLOW)
            assert r.returncode == 0 and r.stdout == "hello tlsloop\n", r.stderr
            assert f"* io: {want}\n" in r.stderr, r.stderr
            assert ("running on epoll" in r.stderr) == (want == "epoll"), r.stderr
            r = subprocess.run([*wrap, BIN, "bench", "--json", "-n", "20", "--io", "uring",
                                "--cacert", e2e_serve.CA, url], capture_output=True, text=True,
                               timeout=60 * SLOW)
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["io"] == want, r.stdout
        r = subprocess.run([BIN, "get", "--io", "kqueue", url], capture_output=True, text=True,
                           timeout=20 * SLOW)
        assert r.returncode == 2 and "--io needs epoll, uring or auto" in r.stderr, r.stderr
    finally:
        assert srv.stop() == 0


# ---- tlsloop proxy ------------------------------------------------------------------------------

def proxy_echo_and_metrics(cert, wrap, want):
    be = e2e_proxy.Backend(e2e_proxy.echo)
    px = e2e_proxy.Proxy(cert, be.port, extra=("--io", "uring", "--metrics-listen", "127.0.0.1:0"),
                         wrap=wrap)
    try:
        e2e_proxy.wait_log(px, rf"listening on .* with 2 workers, io={want}\b")
        with e2e_proxy.tls_connect(px.tls, cert) as s:
            e2e_proxy.echo_roundtrip(s, os.urandom(300000))
        assert_backend(metrics(px.metrics), want)
        return px.log_text()
    finally:
        assert px.stop() == 0
        be.close()


@test
def proxy_on_io_uring_and_refused(cert):
    log = proxy_echo_and_metrics(cert, (), expect_on(True))
    assert ("requested;" in log) == (not URING), log
    log = proxy_echo_and_metrics(cert, (NO_URING, "--errno", "ENOSYS"), "epoll")
    warn = re.findall(r"\[warn\] io uring requested; (.*)$", log, re.M)
    assert warn == [f"io_uring: {FALLBACK['ENOSYS']}; running on epoll"], log


def main():
    global URING
    URING = uring_here()
    with tempfile.TemporaryDirectory() as tmp:
        e2e_serve.setup(tmp)
        root = make_root()
        cert = e2e_proxy.setup(tmp)
        run_selected([serve_on_io_uring_serves_every_client,
                      serve_with_io_uring_refused_runs_on_epoll,
                      serve_auto_takes_io_uring_where_allowed,
                      serve_default_is_tlsloop_io_else_epoll, bad_io_values_are_refused,
                      get_and_bench_take_io], root)
        run_selected([proxy_on_io_uring_and_refused], cert)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
