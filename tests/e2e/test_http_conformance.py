#!/usr/bin/env python3
"""test_http_conformance.py - raw HTTP/1.1 requests replayed to a real `tlsloop serve` (a plain
listener on an ephemeral loopback port): where lines, fields, heads and chunks end (request
smuggling). Each case is sent in one piece and the answers are read until the server closes; the
test checks their statuses in order, so a request hidden inside another one (a lone LF, a bad
chunk extension, a second framing) shows as an answer too many. Heads that never end are refused
before the client stops sending, whether they arrive in one read or two. Then the same server with allow-lone-lf: the lone-LF cases are
read, the rest still refused. The unit test tests/unit/http/test_http_smuggling.c holds the larger set.

Runs from the repository root; TLSLOOP_BIN is the tlsloop program (build/tlsloop by default).
Ends with "N passed, N failed".
"""
import os
import re
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, start_serve, stop_process, summary, test  # noqa: E402


H = b"Host: a\r\n"
G = b"GET / HTTP/1.1\r\n" + H
TE = b"Transfer-Encoding: chunked\r\n"
LAST = b"GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"   # answered 404
HIDDEN = b"GET /admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"   # must not be answered
CL_HIDDEN = b"Content-Length: %d" % len(HIDDEN)

# (name, bytes, statuses answered in order; the connection then closes)
CASES = [
    ("plain", G + b"Connection: close\r\n\r\n", [200]),
    ("pipelined", G + b"\r\n" + LAST, [200, 404]),
    ("lone_lf_hides_content_length",
     G + b"Dummy: x\n" + CL_HIDDEN + b"\r\n\r\n" + HIDDEN, [400]),
    ("lone_lf_request_line", b"GET / HTTP/1.1\n" + H + b"\r\n" + HIDDEN, [400]),
    ("lone_lf_empty_line", G + b"\n" + HIDDEN, [400]),
    ("lone_lf_after_chunk_size", G + TE + b"\r\n5\nhello\r\n0\r\n\r\n" + HIDDEN, [400]),
    ("lone_lf_after_chunk_data", G + TE + b"\r\n5\r\nhello\n0\r\n\r\n" + HIDDEN, [400]),
    ("lone_lf_in_trailers", G + TE + b"\r\n0\r\nX: y\n\r\n" + HIDDEN, [400]),
    ("chunk_ext_without_name", G + TE + b"\r\n2;\r\nhi\r\n0\r\n\r\n" + HIDDEN, [400]),
    ("chunk_ext_unclosed_quote",
     G + TE + b"\r\n2;a=\"b\r\nhi\r\n0\r\n\r\n" + HIDDEN, [400]),
    ("chunk_ext_bad_byte", G + TE + b"\r\n2;a@b\r\nhi\r\n0\r\n\r\n" + HIDDEN, [400]),
    ("chunk_ext_too_long",
     G + TE + b"\r\n2;a=" + b"b" * 2000 + b"\r\nhi\r\n0\r\n\r\n" + HIDDEN, [400]),
    ("chunk_ext_valid",
     G + TE + b"\r\n2 ; a = \"b;\\\"c\" ; d\r\nhi\r\n0;e=f\r\n\r\n" + LAST, [200, 404]),
    ("trailer_space_before_colon", G + TE + b"\r\n0\r\nX : y\r\n\r\n" + HIDDEN, [400]),
    ("trailer_folded", G + TE + b"\r\n0\r\nX: y\r\n z\r\n\r\n" + HIDDEN, [400]),
    ("trailer_valid", G + TE + b"\r\n0\r\nX: y\r\n\r\n" + LAST, [200, 404]),
    ("te_then_body_is_two_requests", G + TE + b"\r\n0\r\n\r\n" + LAST, [200, 404]),
    ("cl_then_body_is_two_requests", G + b"Content-Length: 5\r\n\r\nhello" + LAST, [200, 404]),
    ("cl_and_te", G + b"Content-Length: 6\r\n" + TE + b"\r\n0\r\n\r\n" + HIDDEN, [400]),
    ("te_and_cl", G + TE + b"Content-Length: 6\r\n\r\n0\r\n\r\n" + HIDDEN, [400]),
    ("two_content_lengths", G + b"Content-Length: 0\r\n" + CL_HIDDEN + b"\r\n\r\n" + HIDDEN,
     [400]),
    ("content_length_list", G + b"Content-Length: 0, %d\r\n\r\n" % len(HIDDEN) + HIDDEN, [400]),
    ("te_space_before_colon", G + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + HIDDEN,
     [400]),
    ("te_folded", G + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + HIDDEN, [400]),
    ("te_not_last", G + b"Transfer-Encoding: chunked, gzip\r\n\r\n" + HIDDEN, [400]),
    ("te_other_coding", G + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + HIDDEN, [501]),
    ("te_in_http10", b"GET / HTTP/1.0\r\n" + TE + b"\r\n0\r\n\r\n" + HIDDEN, [400]),
    ("bare_cr_in_value", G + b"X: a\r" + CL_HIDDEN + b"\r\n\r\n" + HIDDEN, [400]),
    ("nul_in_value", G + b"X: a\0b\r\n\r\n" + HIDDEN, [400]),
    ("http_2_0", b"GET / HTTP/2.0\r\n" + H + b"\r\n" + HIDDEN, [505]),
]

# Heads that never end (the client keeps its side open): refused at once.
PARTIAL = [
    ("bad_method_byte", b"G\x01T / HTTP/1.1\r\n", 400),
    ("bad_target_byte", b"GET /\x01", 400),
    ("bad_version", b"GET / HTXP/1.1\r\n", 400),
    ("bad_field_name", G + b"Ho st", 400),
    ("obs_fold", G + b"X: a\r\n fold", 400),
    ("lone_lf", G + b"X: a\nY", 400),
    ("bare_cr", G + b"X: a\rb", 400),
    ("version_2", b"GET / HTTP/2.0\r\n", 505),
]

# With allow-lone-lf: (name, bytes, statuses)
LENIENT = [
    ("lenient_lone_lf_head", b"GET / HTTP/1.1\nHost: a\nConnection: close\n\n", [200]),
    ("lenient_lone_lf_content_length",
     G + b"Connection: close\r\nDummy: x\n" + CL_HIDDEN + b"\r\n\r\n" + HIDDEN, [200]),   # the body, not a request
    ("lenient_lone_lf_chunks", G + TE + b"\r\n5\nhello\n0\nX: y\n\n" + LAST, [200, 404]),
    ("lenient_still_checks_extensions", G + TE + b"\r\n2;\nhi\n0\n\n" + HIDDEN, [400]),
]


class Server:
    def __init__(self, tmp, *args):
        self.log = os.path.join(tmp, f"serve-{time.monotonic_ns()}.log")
        self.proc, self.port = start_serve(["--listen", "127.0.0.1:0,plain", "--log", self.log]
                                           + list(args), scheme="http")

    def stop(self):
        stop_process(self.proc, 10)


def exchange(port, data, timeout=5, split=False):
    """Send data (split: its first byte, then the rest in a second read), read until the server
    closes (or timeout); (statuses, closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got, closed = b"", False
    try:
        if split:
            s.sendall(data[:1])
            time.sleep(0.05)
            data = data[1:]
        s.sendall(data)
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
    finally:
        s.close()
    return [int(x) for x in re.findall(rb"HTTP/1\.1 (\d{3}) ", got)], closed


def run_cases(srv, cases):
    bad = []
    for name, data, want in cases:
        statuses, closed = exchange(srv.port, data)
        if statuses != want or not closed:
            bad.append(f"{name}: answered {statuses} (closed {closed}), wanted {want}")
    assert not bad, "\n  " + "\n  ".join(bad)


@test
def smuggling_cases_strict(srv):
    assert len(CASES) >= 30
    run_cases(srv, CASES)


@test
def heads_refused_before_they_end(srv):
    bad = []
    for name, data, want in PARTIAL:
        for split in (False, True):   # in one read (the parser), in two (the scanner goes on)
            t0 = time.monotonic()
            statuses, closed = exchange(srv.port, data, timeout=3, split=split)
            if statuses != [want] or not closed:
                bad.append(f"{name}{' split' if split else ''}: answered {statuses} (closed "
                           f"{closed}) after {time.monotonic() - t0:.1f}s, wanted {want} at once")
    assert not bad, "\n  " + "\n  ".join(bad)


@test
def the_server_still_serves(srv):
    statuses, closed = exchange(srv.port, G + b"Connection: close\r\n\r\n")
    assert statuses == [200] and closed, statuses
    assert srv.proc.poll() is None, "the server exited"


@test
def allow_lone_lf(tmp):
    srv = Server(tmp, "--allow-lone-lf")
    try:
        run_cases(srv, LENIENT)
    finally:
        srv.stop()


def main():
    with tempfile.TemporaryDirectory(prefix="tlsloop-conf-") as tmp:
        try:
            srv = Server(tmp)
        except RuntimeError as e:
            print(f"FAIL start: {e}")
            print("0 passed, 1 failed")
            return 1
        try:
            smuggling_cases_strict(srv)
            heads_refused_before_they_end(srv)
            the_server_still_serves(srv)
        finally:
            srv.stop()
        allow_lone_lf(tmp)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
