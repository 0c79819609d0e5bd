#!/usr/bin/env python3
"""test_serve_ops.py - `tlsloop serve` run as a service: 64 MiB to a slow reader in bounded memory
(1 GiB with SOAK=1), 1,000 keep-alive clients, drain on SIGTERM, redirect to HTTPS, metrics, the
access log and its reopen, options, --check and the config file, a port in use (exit 98).
"""
import asyncio
import hashlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, run_selected, summary, test  # noqa: E402
from e2e_serve import (BIN, Reader, Serve, ctx, curl, get, make_root, request, setup,  # noqa: E402
                       still_serves, tls_sock)

SOAK = os.environ.get("SOAK") == "1"
TMP = STATE = None   # setup() names them


def download(port, path, rate=None, sha=True):
    """GET path over TLS; read at most `rate` bytes/s; returns (status, length, sha256)."""
    with tls_sock(port, timeout=60) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: l\r\n\r\n".encode())
        r = Reader(s)
        while b"\r\n\r\n" not in r.buf:
            r._more()
        head, rest = r.buf.split(b"\r\n\r\n", 1)
        status = int(head.split()[1])
        n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        h = hashlib.sha256(rest)
        got, t0 = len(rest), time.monotonic()
        while got < n:
            chunk = s.recv(min(65536, n - got))
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
            if rate:
                ahead = got / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        return status, got, h.hexdigest()


@test
def big_file_to_a_slow_reader_with_memory_bounded(root):
    size = (1024 if SOAK else 64) * 1024 * 1024
    path = f"{TMP}/big/big.bin"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    block = os.urandom(1024 * 1024)
    want = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
            want.update(block)
    srv = Serve("--root", os.path.dirname(path), "--workers", "1")
    try:
        base = srv.rss_kib()
        peak = [base]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], srv.rss_kib())
                time.sleep(0.05)
        w = threading.Thread(target=watch)
        w.start()
        rate = (200 if SOAK else 24) * 1024 * 1024   # a reader slower than the server
        st, got, sha = download(srv.https, "/big.bin", rate=rate)
        done.set()
        w.join()
        assert st == 200 and got == size and sha == want.hexdigest()
        growth = peak[0] - base
        print(f"  {size >> 20} MiB at {rate >> 20} MiB/s: server RSS {base} -> peak {peak[0]} KiB "
              f"(+{growth} KiB)")
        # The write queue, a chunk and pending records, not the file. Under ASan freed blocks sit
        # in its quarantine for a while, so the churn of pending output shows in RSS there.
        assert growth < (24 if SLOW == 1 else 96) * 1024, growth
    finally:
        assert srv.stop() == 0
        os.unlink(path)


@test
def a_thousand_keep_alive_clients(root):
    n = 1000
    srv = Serve("--root", root)
    try:
        async def client(i, c):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", srv.https, ssl=c, server_hostname="localhost"),
                60 * SLOW)
            ok = 0
            for _ in range(2):
                writer.write(b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60 * SLOW)
                body = await reader.readexactly(14)
                ok += head.startswith(b"HTTP/1.1 200") and body == b"hello tlsloop\n"
            return writer, ok

        async def run():
            c = ctx()
            sem = asyncio.Semaphore(100)   # handshakes in flight at once (the client is python)

            async def one(i):
                async with sem:
                    return await client(i, c)
            got = await asyncio.gather(*(one(i) for i in range(n)))
            # All 1,000 are open at once now: each answers once more, then all close.
            for w, _ in got:
                w.write(b"GET /index.html HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
            ok = sum(k for _, k in got)
            for w, _ in got:
                w.close()
            return ok
        ok = asyncio.run(run())
        assert ok == 2 * n, ok
    finally:
        assert srv.stop() == 0


@test
def sigterm_lets_a_download_finish(root):
    size = 16 * 1024 * 1024
    path = f"{TMP}/drain/file.bin"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    srv = Serve("--root", os.path.dirname(path))
    try:
        idle = tls_sock(srv.https)   # an idle keep-alive connection: closed at once
        res = {}

        def dl():
            res["r"] = download(srv.https, "/file.bin", rate=8 * 1024 * 1024)
        t = threading.Thread(target=dl)
        t.start()
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGTERM)
        assert Reader(idle).closed()
        t.join(60 * SLOW)
        assert res["r"] == (200, size, hashlib.sha256(data).hexdigest())
        assert srv.proc.wait(20 * SLOW) == 0
        idle.close()
    finally:
        srv.stop()


@test
def redirect_metrics_and_access_log(root):
    alog = f"{TMP}/access.log"
    srv = Serve("--root", root, "--redirect-https", "--metrics-listen", "127.0.0.1:0",
                "--access-log", alog)
    try:
        st, h, _, _ = request(srv.http, b"GET /sub/?q=1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n", tls=False)
        assert st == 308 and h["location"] == f"https://localhost:{srv.https}/sub/?q=1", h
        st, h, _, _ = request(srv.http, b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", tls=False)
        assert h["location"] == f"https://[::1]:{srv.https}/", h
        # curl offers h2 and http/1.1 in ALPN; the server picks h2 (its default alpn h2,http/1.1).
        r = curl("-A", "agent \"quoted\"", "--http2", f"https://localhost:{srv.https}/index.html")
        assert r.returncode == 0
        st, h, body, _ = get(srv.metrics, "/metrics", tls=False)   # not redirected
        text = body.decode()
        assert st == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
        assert re.search(r'^tlsloop_http_requests_total \d+', text, re.M), text[:500]
        assert re.search(r'^tlsloop_handshakes_total\{kind="full"\} [1-9]', text, re.M)
        assert "# TYPE tlsloop_connections_open gauge" in text
        log = open(alog).read()
        assert re.search(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                         r'"GET /index\.html HTTP/2\.0" 200 14 "-" "agent \\x22quoted\\x22" '
                         r'TLSv1\.3 TLS_\w+ new \d+\.\d{3}$', log, re.M), log
        assert re.search(r'"GET /sub/\?q=1 HTTP/1\.1" 308 \d+ "-" "-" - - - ', log), log
        # SIGUSR1 after a rotation: a new file.
        os.rename(alog, alog + ".1")
        srv.proc.send_signal(signal.SIGUSR1)
        srv.wait_log("log reopened")
        get(srv.https, "/index.html")
        # The line is written once the response has left, which can be after the client read it.
        end = time.monotonic() + 5 * SLOW
        while time.monotonic() < end and "GET /index.html" not in open(alog).read():
            time.sleep(0.05)
        assert "GET /index.html" in open(alog).read()
        assert open(alog + ".1").read().count("GET /index.html") == 1   # curl's, none later
    finally:
        assert srv.stop() == 0


@test
def metrics_only_on_their_own_listener(root):
    """/metrics is nowhere by default, never on a public listener, and on metrics-listen's
    listener only that page is served; metrics PATH alone is refused with the fix."""
    srv = Serve("--root", root)
    try:
        for port, tls in ((srv.https, True), (srv.http, False)):
            st, _, body, _ = get(port, "/metrics", tls=tls)
            assert st == 404 and b"tlsloop_" not in body, (port, st, body[:200])
    finally:
        assert srv.stop() == 0
    srv = Serve("--metrics-listen", "127.0.0.1:0", "--metrics", "/m")   # the built-in page
    try:
        assert srv.metrics not in (srv.https, srv.http)
        st, h, body, _ = get(srv.metrics, "/m", tls=False)
        assert st == 200 and b"tlsloop_http_requests_total" in body, (st, body[:200])
        assert h["cache-control"] == "no-store"
        for path in ("/", "/metrics", "/index.html"):   # nothing else lives there
            assert get(srv.metrics, path, tls=False)[0] == 404, path
        st, _, body, _ = request(srv.metrics, b"POST /m HTTP/1.1\r\nHost: l\r\n"
                                 b"Content-Length: 0\r\n\r\n", tls=False)
        assert st == 405
        for port, tls in ((srv.https, True), (srv.http, False)):
            st, _, body, _ = get(port, "/m", tls=tls)
            assert st == 404 and b"tlsloop_" not in body, (port, st)
            assert get(port, "/", tls=tls)[0] == 200   # the built-in page is public
        assert not any("localhost:%d" % srv.metrics in l for l in srv.out if "listening" in l)
    finally:
        assert srv.stop() == 0
    r = subprocess.run([BIN, "serve", "--check", "--state-dir", STATE, "--metrics", "/metrics"],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 2 and "metrics /metrics: metrics are served only on a listener of " \
        "their own; add metrics-listen" in r.stderr, r.stderr
    r = subprocess.run([BIN, "serve", "--check", "--state-dir", STATE, "--metrics-listen",
                        "127.0.0.1:0,proxy"], capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 2 and "metrics-listen 127.0.0.1:0,proxy: expected [ADDR:]PORT" \
        in r.stderr, r.stderr


@test
def options_errors_check_and_config_file(root):
    def run(*args):
        return subprocess.run([BIN, "serve", *args], capture_output=True, text=True,
                              timeout=30 * SLOW)
    r = run("--help")
    assert r.returncode == 0
    for opt in ("--root DIR", "--listen", "--cert FILE", "--access-log", "--metrics",
                "--metrics-listen [ADDR:]PORT", "--allow-dotfiles NAME[,NAME...]",
                "--workers", "--ticket-key-file", "--config FILE", "--header-timeout",
                "--state-dir", "default 10s"):
        assert opt in r.stdout, opt
    cases = [(["--bogus"], "unknown option --bogus"),
             (["stray"], "unknown argument stray"),
             (["--root", f"{TMP}/missing"], f"root {TMP}/missing: No such file"),
             (["--root", f"{root}/index.html"], "not a directory"),
             (["--header-timeout", "soon"], "header-timeout soon: expected a duration"),
             (["--max-header-size", "10"], "max-header-size 10: expected a size"),
             (["--listen", "127.0.0.1:0", "--cert", f"{TMP}/nope.pem", "--key", f"{TMP}/nope.key"],
              "nope.pem"),
             (["--config", f"{TMP}/nope.conf"], "nope.conf"),
             (["--workers"], "--workers needs a value")]
    for args, msg in cases:
        r = run("--state-dir", STATE, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert msg in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    conf = f"{TMP}/serve.conf"
    with open(conf, "w") as f:
        f.write(f"# a whole configuration\nlisten 127.0.0.1:0\nroot {root}\n"
                f"state-dir {STATE}\nmetrics /m\nmetrics-listen 127.0.0.1:0\nworkers 1\n")
    r = run("--config", conf, "--check")
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr
    srv = Serve("--config", conf, listens=[], state=False, expect=2)
    try:
        assert srv.https and srv.metrics
        st, _, body, _ = get(srv.metrics, "/m", tls=False)
        assert st == 200 and b"tlsloop_http_requests_total" in body
        assert get(srv.https, "/m")[0] == 404
        still_serves(srv)
    finally:
        assert srv.stop() == 0


@test
def a_second_server_on_a_port_in_use_exits_98(root):
    """SO_REUSEPORT would let a second process join the port and take part of its connections;
    it must fail instead (exit 98, the address named), and the first keep every connection."""
    srv = Serve("--root", root, "--workers", "2")
    try:
        for listen in (f"127.0.0.1:{srv.https}", f"127.0.0.1:{srv.http},plain", f"*:{srv.http}"):
            try:
                r = subprocess.run([BIN, "serve", "--state-dir", STATE, "--root", root,
                                    "--listen", listen, "--log", f"{TMP}/second.log"],
                                   capture_output=True, text=True, timeout=10 * SLOW)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"a second server on {listen} ran (it shares the port)")
            port = listen.split(":")[1].split(",")[0]
            assert r.returncode == 98, (listen, r.returncode, r.stderr)
            assert re.search(rf"listen {re.escape(listen)}: address already in use: another "
                             rf"process listens on [\d.]+:{port}", r.stderr), r.stderr
        for _ in range(20):   # the first one still has every connection of both ports
            still_serves(srv)
            st, _, body, _ = get(srv.http, "/index.html", tls=False)
            assert st == 200 and body == b"hello tlsloop\n", (st, body)
    finally:
        assert srv.stop() == 0


def main():
    global TMP, STATE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    with tempfile.TemporaryDirectory() as tmp:
        TMP, STATE, _ = setup(tmp)
        root = make_root()
        tests = [big_file_to_a_slow_reader_with_memory_bounded, a_thousand_keep_alive_clients,
                 sigterm_lets_a_download_finish, redirect_metrics_and_access_log,
                 metrics_only_on_their_own_listener, options_errors_check_and_config_file,
                 a_second_server_on_a_port_in_use_exits_98]
        run_selected(tests, root)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
