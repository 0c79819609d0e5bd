#!/usr/bin/env python3
"""test_serve_http.py - `tlsloop serve`'s HTTP/1.1: keep-alive, pipelining and HTTP/1.0; HEAD,
ranges and 304s; paths, traversal, symbolic links and dotfiles; every rejection closing only its
connection; request bodies read and discarded; a slowloris head answered 408.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, run_selected, summary, test  # noqa: E402
from e2e_serve import (BIN, Reader, Serve, get, make_root, plain_sock, request, setup,  # noqa: E402
                       still_serves, tls_sock)

@test
def keep_alive_pipelining_and_http10(root):
    srv = Serve("--root", root)
    try:
        with tls_sock(srv.https) as s:
            r = Reader(s)
            # Three requests in one write, answered in order on the same connection.
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n"
                      b"HEAD /style.css HTTP/1.1\r\nHost: l\r\n\r\n"
                      b"GET /sub/ HTTP/1.1\r\nHost: l\r\n\r\n")
            st1, h1, b1 = r.response()
            st2, h2, b2 = r.response(head_only=True)
            st3, h3, b3 = r.response()
            assert (st1, b1) == (200, b"hello tlsloop\n")
            assert st2 == 200 and h2["content-length"] == "7" and h2["content-type"].startswith("text/css")
            assert (st3, b3) == (200, b"sub index\n")
            assert "connection" not in h1
            for i in range(50):   # and it stays open
                s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n")
                assert r.response()[0] == 200
        # Streamed files one after another on one connection (an answer the socket takes whole
        # must not leave reading paused), plain and TLS, then pipelined.
        data = open(f"{root}/data.bin", "rb").read()
        for s in (plain_sock(srv.http), tls_sock(srv.https)):
            with s:
                r = Reader(s)
                for i in range(5):
                    s.sendall(b"GET /data.bin HTTP/1.1\r\nHost: l\r\n\r\n")
                    st, _, b = r.response()
                    assert st == 200 and b == data, (i, st, len(b))
                s.sendall(b"GET /data.bin HTTP/1.1\r\nHost: l\r\n\r\n" * 3)
                assert all(r.response()[2] == data for _ in range(3))
        # 200 pipelined requests in one burst: nothing lost, nothing out of order.
        with tls_sock(srv.https) as s:
            r = Reader(s)
            s.sendall(b"".join(f"GET /index.html?n={i} HTTP/1.1\r\nHost: l\r\n\r\n".encode()
                               for i in range(200)))
            assert all(r.response()[0] == 200 for _ in range(200))
        # HTTP/1.0: closes unless asked to keep alive.
        st, h, b, closed = request(srv.https, b"GET /index.html HTTP/1.0\r\n\r\n")
        assert st == 200 and closed, (h, closed)
        with tls_sock(srv.https) as s:
            r = Reader(s)
            s.sendall(b"GET /index.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            st, h, b = r.response()
            assert st == 200 and h.get("connection") == "keep-alive"
            s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            st, h, b = r.response()
            assert st == 200 and h.get("connection") == "close" and r.closed()
        # A client that sends its request and shuts its side still gets the answer.
        with plain_sock(srv.http) as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            r = Reader(s)
            st, _, b = r.response()
            assert st == 200 and b == b"hello tlsloop\n" and r.closed()
        # Headers every answer has.
        st, h, _, _ = get(srv.https, "/index.html")
        assert h["server"].startswith("tlsloop/") and re.match(
            r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", h["date"]), h
    finally:
        assert srv.stop() == 0


@test
def head_ranges_and_conditionals(root):
    srv = Serve("--root", root)
    try:
        data = open(f"{root}/data.bin", "rb").read()
        st, h, b, _ = request(srv.https, b"HEAD /data.bin HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
        assert st == 200 and h["content-length"] == str(len(data)) and h["accept-ranges"] == "bytes"
        etag, lm = h["etag"], h["last-modified"]
        cases = [("bytes=0-99", 206, data[0:100], f"bytes 0-99/{len(data)}"),
                 ("bytes=1000-", 206, data[1000:], f"bytes 1000-{len(data) - 1}/{len(data)}"),
                 ("bytes=-10", 206, data[-10:], None),
                 ("bytes=100-2000000", 206, data[100:], None),
                 (f"bytes={len(data)}-", 416, None, f"bytes */{len(data)}"),
                 ("bytes=0-1,5-6", 200, data, None),     # several ranges: the whole file
                 ("lines=1-2", 200, data, None)]
        for rng, want, body, cr in cases:
            st, h, b, _ = get(srv.https, "/data.bin", f"Range: {rng}\r\n")
            assert st == want, (rng, st)
            if body is not None:
                assert b == body, rng
            if cr:
                assert h["content-range"] == cr, (rng, h)
        st, _, b, _ = get(srv.https, "/data.bin", f"Range: bytes=0-9\r\nIf-Range: {etag}\r\n")
        assert st == 206 and b == data[:10]
        st, _, b, _ = get(srv.https, "/data.bin", "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n")
        assert st == 200 and b == data
        st, h, b, _ = get(srv.https, "/data.bin", f"If-None-Match: \"x\", {etag}\r\n")
        assert st == 304 and b == b"" and h["etag"] == etag and "content-length" not in h
        st, _, _, _ = get(srv.https, "/data.bin", f"If-Modified-Since: {lm}\r\n")
        assert st == 304
        st, _, _, _ = get(srv.https, "/data.bin", "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n")
        assert st == 200
        st, _, _, _ = get(srv.https, "/data.bin", f"If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n")
        assert st == 200   # If-None-Match wins over If-Modified-Since
        # A small cached file changes on disk: the next answers follow within about a second.
        p = f"{root}/style.css"
        st, h, b, _ = get(srv.https, "/style.css")
        assert b == b"body{}\n"
        def settles(check):
            """Within 5 s, ten answers in a row (on either worker) pass the check."""
            end, run = time.monotonic() + 5 * SLOW, 0
            while time.monotonic() < end and run < 10:
                run = run + 1 if check(get(srv.https, "/style.css")) else 0
                time.sleep(0.05 if run else 0.2)
            return run == 10
        with open(p, "w") as f:
            f.write("body{color:red}\n")
        assert settles(lambda a: a[2] == b"body{color:red}\n")
        os.unlink(p)
        assert settles(lambda a: a[0] == 404)
        with open(p, "w") as f:
            f.write("body{}\n")
    finally:
        assert srv.stop() == 0


@test
def paths_and_the_root(root):
    srv = Serve("--root", root)
    try:
        cases = [("/", 200), ("/sub", 301), ("/sub/", 200), ("/a%20b", 301), ("/noindex/", 403), ("/nope", 404),
                 ("/inside-link", 200), ("/abs-link", 403), ("/rel-link", 403),
                 ("/../secret.txt", 400), ("/%2e%2e/secret.txt", 400), ("/sub/%2E%2e/%2e%2e/secret.txt", 400),
                 ("/sub/../index.html", 200), ("/index%2ehtml", 200), ("/a%00b", 400), ("/%zz", 400),
                 ("//sub//index.html", 200), ("http://localhost/index.html", 200), ("*", 400)]
        for path, want in cases:
            st, h, b, _ = get(srv.https, path)
            assert st == want, (path, st, b[:80])
            if want == 301:   # to the same path with a slash, escaped again for the header
                assert h["location"] == path + "/", h
        still_serves(srv)
    finally:
        assert srv.stop() == 0


@test
def dotfiles_are_not_served(root):
    """A repository, secrets and editor state are refused (404) however the dot is written;
    /.well-known/ is served, and allow-dotfiles names the others a site means to publish."""
    refused = ["/.git/config", "/.git/", "/.git", "/.env", "/a/.hidden/x", "/%2egit/config",
               "/%2Eenv", "/sub/%2ehtaccess", "/a/%2Ehidden/x", "/sub/../.env", "//.env",
               "/.config/app.json", "http://localhost/.env"]
    srv = Serve("--root", root)
    try:
        for path in refused:
            st, _, b, _ = get(srv.https, path)
            assert st == 404 and b"contents of" not in b, (path, st, b[:80])
        st, _, b, _ = get(srv.https, "/.well-known/security.txt")
        assert st == 200 and b"contents of .well-known" in b, (st, b)
        still_serves(srv)
    finally:
        assert srv.stop() == 0
    srv = Serve("--root", root, "--allow-dotfiles", ".config,.htaccess")
    try:
        for path, want in [("/.config/app.json", 200), ("/%2econfig/app.json", 200),
                           ("/sub/.htaccess", 200), ("/.env", 404), ("/.git/config", 404),
                           ("/.well-known/security.txt", 200)]:
            st, _, b, _ = get(srv.https, path)
            assert st == want, (path, st, b[:80])
    finally:
        assert srv.stop() == 0
    r = subprocess.run([BIN, "serve", "--allow-dotfiles", "git"], capture_output=True, text=True,
                       timeout=30 * SLOW)
    assert r.returncode == 2 and "allow-dotfiles git: expected names that start with a dot" \
        in r.stderr, r.stderr


@test
def rejections_close_only_that_connection(root):
    srv = Serve("--root", root, "--max-body", "64k")
    try:
        bad = [
            (b"POST / HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
            (b"POST / HTTP/1.1\r\nHost: l\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
            (b"POST / HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: l\r\nX-A: a\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: l\rX: y\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: l\r\nX: a\x00b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHo st: l\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : l\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: l\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nHost: l\r\nExpect: tea\r\n\r\n", 417),
            (b"POST / HTTP/1.1\r\nHost: l\r\nContent-Length: 70000\r\n\r\n", 413),
            (b"GET / HTTP/1.1\r\nHost: l\r\n" + b"X-Big: " + b"a" * 100 * 1024 + b"\r\n\r\n", 431),
            (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: l\r\n\r\n", 414),
        ]
        for raw, want in bad:
            st, h, b, closed = request(srv.https, raw)
            assert st == want and closed, (raw[:60], st, h)
            assert b.startswith(b"<!doctype html>"), b
        # A chunked body over the limit is refused while it arrives.
        s = tls_sock(srv.https)
        with s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(20):
                s.sendall(b"1000\r\n" + b"x" * 4096 + b"\r\n")
            r = Reader(s)
            st, h, b = r.response()
            assert st == 413 and r.closed()
        # Request smuggling through pipelining: the second "request" inside a body never runs.
        with tls_sock(srv.https) as s:
            r = Reader(s)
            s.sendall(b"POST /index.html HTTP/1.1\r\nHost: l\r\nContent-Length: 33\r\n\r\n"
                      b"GET /secret HTTP/1.1\r\nHost: l\r\n\r\n"
                      b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n")
            st1, h1, _ = r.response()
            st2, _, b2 = r.response()
            assert st1 == 405 and h1["allow"] == "GET, HEAD" and st2 == 200 and b2 == b"hello tlsloop\n"
        still_serves(srv)
    finally:
        assert srv.stop() == 0


@test
def bodies_read_and_discarded(root):
    srv = Serve("--root", root, "--max-body", "1m")
    try:
        with tls_sock(srv.https) as s:
            r = Reader(s)
            # A chunked body in pieces, then the next request on the same connection.
            s.sendall(b"POST /index.html HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            time.sleep(0.1)
            s.sendall(b"lo\r\n0\r\nTrailer: x\r\n\r\n")
            st, h, _ = r.response()
            assert st == 405 and "connection" not in h
            body = b"x" * 300000
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\nContent-Length: %d\r\n\r\n" % len(body))
            s.sendall(body)
            st, _, b = r.response()
            assert st == 200 and b == b"hello tlsloop\n"
            # Expect: 100-continue: the interim answer, then the final one after the body.
            s.sendall(b"PUT /x HTTP/1.1\r\nHost: l\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            st, _, _ = r.response()
            assert st == 100
            s.sendall(b"data")
            st, _, _ = r.response()
            assert st == 405
    finally:
        assert srv.stop() == 0


@test
def slowloris_head_gets_408_and_others_are_served(root):
    srv = Serve("--root", root, "--header-timeout", "1s")
    try:
        slow = tls_sock(srv.https)
        t0 = time.monotonic()
        slow.sendall(b"GET / HTTP/1.1\r\n")
        r = Reader(slow)
        got = []
        answered = threading.Event()

        def dribble():   # a byte every 100 ms: the deadline counts from the first, not the last
            try:
                for _ in range(40):
                    if answered.is_set():
                        return
                    slow.sendall(b"X")
                    time.sleep(0.1)
            except OSError:
                pass
        t = threading.Thread(target=dribble)
        t.start()
        still_serves(srv)   # meanwhile
        st, h, _ = r.response()
        took = time.monotonic() - t0
        answered.set()
        got.append(st)
        assert st == 408 and h["connection"] == "close", h
        assert 0.8 < took < 4 * SLOW, took
        t.join()
        slow.close()
        # A connection that never sends a byte is closed at the deadline, without an answer.
        with tls_sock(srv.https) as s:
            t0 = time.monotonic()
            assert Reader(s).closed()
            assert 0.8 < time.monotonic() - t0 < 4 * SLOW
        still_serves(srv)
    finally:
        assert srv.stop() == 0


def main():
    with tempfile.TemporaryDirectory() as tmp:
        setup(tmp)
        root = make_root()
        tests = [keep_alive_pipelining_and_http10, head_ranges_and_conditionals,
                 paths_and_the_root, dotfiles_are_not_served, rejections_close_only_that_connection,
                 bodies_read_and_discarded, slowloris_head_gets_408_and_others_are_served]
        run_selected(tests, root)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
