#!/usr/bin/env python3
"""test_bench.py - `tlsloop bench` in short, bounded runs against `tlsloop serve` on loopback, and
against servers that misbehave on purpose.

Covers: each mode produces the counters it claims, checked against the server's own /metrics
(keep-alive: one full handshake per connection; --new-conn: full handshakes only; --resume: all
but the first of each slot resumed; --handshake-only: no HTTP request at all); -n stops at
exactly N; --rate holds its rate; latency at a fixed rate counts from the intended send time (a
server that stalls for a second shows it in p99, no coordinated omission); --json parses; errors
are classified (a closed port, a server that resets, one that answers with an alert).

Runs from the repository root; TLSLOOP_BIN is the tlsloop program (build/tlsloop by default).
Ends with "N passed, N failed".
"""
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, TcpServer, summary, test  # noqa: E402

BIN = os.environ.get("TLSLOOP_BIN", "build/tlsloop")
TMP = None


def bench(*args, timeout=60):
    r = subprocess.run([BIN, "bench", "--json", *args], capture_output=True, timeout=timeout * SLOW)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"no JSON report (exit {r.returncode}): {r.stdout[-500:]!r} "
                             f"{r.stderr[-500:]!r}")
    return r.returncode, report


class Serve:
    def __init__(self):
        self.proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--listen",
                                      "127.0.0.1:0,plain", "--state-dir", f"{TMP}/state",
                                      "--root", f"{TMP}/www", "--metrics-listen", "127.0.0.1:0",
                                      "--log", f"{TMP}/serve.log"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ports = []
        while len(ports) < 3:   # https, http, then the metrics listener
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(self.proc.stderr.read())
            m = re.search(r"(?:listening|metrics) on https?://[^ ]+:(\d+)/", line)
            if m:
                ports.append(int(m.group(1)))
        self.https, self.http, self.metrics_port = ports
        self.ca = f"{TMP}/state/ca.pem"
        self.url = f"https://127.0.0.1:{self.https}/hello.txt"

    def metrics(self):
        r = subprocess.run([BIN, "get", f"http://127.0.0.1:{self.metrics_port}/metrics"],
                           capture_output=True, timeout=20 * SLOW)
        text = r.stdout.decode()
        get = lambda pat: int(re.search(pat, text, re.M).group(1))   # noqa: E731
        return {"full": get(r'^tlsloop_handshakes_total\{kind="full"\} (\d+)'),
                "resumed": get(r'^tlsloop_handshakes_total\{kind="resumed"\} (\d+)'),
                "requests": get(r'^tlsloop_http_requests_total (\d+)')}

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(20 * SLOW) == 0


def delta(srv, fn):
    m0 = srv.metrics()
    out = fn()
    m1 = srv.metrics()
    d = {k: m1[k] - m0[k] for k in m0}
    d["requests"] -= 1   # the metrics request itself
    return out, d


@test
def keep_alive_counts(srv):
    (rc, r), d = delta(srv, lambda: bench("-c", "8", "-d", "1s", "--warmup", "0", "--cacert",
                                          srv.ca, srv.url))
    assert rc == 0 and r["errors_total"] == 0, r["errors"]
    assert r["mode"] == "keep-alive" and r["requests"] > 100, r
    assert r["status"]["2xx"] == r["requests"], r["status"]
    assert r["bytes"] == 13 * r["requests"], (r["bytes"], r["requests"])
    # One full handshake per connection, all of it measured (no warm-up): the server agrees.
    assert r["handshakes"]["full"] == 8 and d["full"] == 8 and d["resumed"] == 0, (r, d)
    # Requests the server read = measured + those cut short when the run ended (at most 8).
    assert r["requests"] <= d["requests"] <= r["requests"] + 8, (r["requests"], d)
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"], lat


@test
def new_conn_full_handshakes_only(srv):
    (rc, r), d = delta(srv, lambda: bench("--new-conn", "-c", "4", "-d", "1s", "--warmup", "0",
                                          "--cacert", srv.ca, srv.url))
    assert rc == 0 and r["errors_total"] == 0, r["errors"]
    h = r["handshakes"]
    assert h["resumed"] == 0 and d["resumed"] == 0, (h, d)
    assert h["full"] >= r["requests"] > 20, r
    assert h["full"] <= d["full"] <= h["full"] + 4, (h, d)   # + those cut short at the end
    assert r["connect_ms"]["count"] == h["full"] and r["handshake_ms"]["count"] == h["full"]


@test
def resume_counts_full_and_resumed(srv):
    for version in ("--tlsv1.2", "--tlsv1.3"):
        (rc, r), d = delta(srv, lambda: bench("--resume", version, "-c", "4", "-d", "1s",
                                              "--warmup", "0", "--cacert", srv.ca, srv.url))
        assert rc == 0 and r["errors_total"] == 0, r["errors"]
        h = r["handshakes"]
        assert h["full"] == 4, (version, h)   # the first of each slot
        assert h["resumed"] >= r["requests"] - 4 > 20, (version, h, r["requests"])
        assert d["full"] == 4 and h["resumed"] <= d["resumed"] <= h["resumed"] + 4, (version, h, d)


@test
def handshake_only_sends_no_http(srv):
    (rc, r), d = delta(srv, lambda: bench("--handshake-only", "-c", "4", "-d", "1s", "--warmup",
                                          "0", "--cacert", srv.ca, f"https://127.0.0.1:{srv.https}/"))
    assert rc == 0 and r["errors_total"] == 0, r["errors"]
    assert r["handshakes"]["full"] > 20 and d["requests"] == 0, (r, d)
    # Operations are handshakes closed again; a few may still be closing at the end.
    assert r["requests"] <= r["handshakes"]["full"] <= r["requests"] + 4, r


@test
def n_stops_at_n_and_rate_holds(srv):
    rc, r = bench("-n", "500", "-c", "5", "--cacert", srv.ca, srv.url)
    assert rc == 0 and r["requests"] == 500, r["requests"]
    rc, r = bench("--rate", "400", "-c", "10", "-d", "2s", "--warmup", "500ms", "--cacert", srv.ca,
                  srv.url)
    assert rc == 0, r["errors"]
    assert abs(r["requests_per_s"] - 400) < 400 * 0.05, r["requests_per_s"]
    assert r["send_lag_ms"]["count"] > 0


class StallingServer:
    """A plain HTTP/1.1 keep-alive server that answers at once, except for one second once."""

    def __init__(self, stall_after):
        self.t0 = time.monotonic()
        self.stall_after = stall_after
        self.lock = threading.Lock()
        self.stalled = False
        self.server = TcpServer(self.serve)
        self.port = self.server.port

    def serve(self, c):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = c.recv(4096)
                if not chunk:
                    return
                buf += chunk
            _, buf = buf.split(b"\r\n\r\n", 1)
            with self.lock:   # everyone waits during the stall: the server is stuck
                if not self.stalled and time.monotonic() - self.t0 > self.stall_after:
                    self.stalled = True
                    time.sleep(1.0)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self):
        self.server.close()


@test
def fixed_rate_latency_counts_from_the_intended_time(srv):
    """200/s for 3 s; the server freezes for 1 s at 1.5 s. The requests due during the freeze
    wait for it: about a third of them are late by up to a second, so p99 is close to 1 s. A
    closed-loop generator would have sent nothing meanwhile and shown a small p99."""
    s = StallingServer(stall_after=1.5)
    try:
        rc, r = bench("--rate", "200", "-c", "50", "-d", "3s", "--warmup", "0",
                      f"http://127.0.0.1:{s.port}/", timeout=60)
    finally:
        s.close()
    lat = r["latency_ms"]
    assert r["requests"] >= 550, r["requests"]
    assert 700 <= lat["p99"] <= 1300, lat
    assert lat["p50"] < 100, lat   # most requests were not delayed


def resetting_server():
    """Accepts and resets every connection at once (SO_LINGER 0)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)

    def run():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.recv(1)
            c.close()
    threading.Thread(target=run, daemon=True).start()
    return s


@test
def errors_are_classified(srv):
    port = resetting_server()
    try:
        rc, r = bench("--new-conn", "-c", "2", "-d", "500ms", "--warmup", "0", "--insecure",
                      f"https://127.0.0.1:{port.getsockname()[1]}/")
    finally:
        port.close()
    assert rc == 1 and r["requests"] == 0, r
    assert any(k.startswith("reset") for k in r["errors"]), r["errors"]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = free.getsockname()[1]
    rc, r = bench("-c", "2", "-d", "300ms", "--warmup", "0", f"http://127.0.0.1:{closed}/")
    assert rc == 1 and list(r["errors"]) == ["refused"], r["errors"]
    # An alert: the server speaks TLS 1.2 only, the generator asks for 1.3 only.
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    p = port.getsockname()[1]
    port.close()
    s = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{p}", "-tls1_2",
                          "-cert", f"{TMP}/state/localhost.pem", "-key",
                          f"{TMP}/state/localhost.key", "-www"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while b"ACCEPT" not in s.stdout.readline():
            pass
        rc, r = bench("--tlsv1.3", "--new-conn", "-c", "1", "-d", "300ms", "--warmup", "0",
                      "--cacert", srv.ca, f"https://localhost:{p}/")
    finally:
        s.kill()
        s.wait()
    assert rc == 1, r
    kinds = list(r["errors"])
    assert len(kinds) == 1 and kinds[0].startswith("tls:") and "version" in kinds[0], kinds
    # A 404 is an error too, by its class.
    rc, r = bench("-n", "20", "-c", "2", "--cacert", srv.ca,
                  f"https://127.0.0.1:{srv.https}/missing")
    assert rc == 1 and r["errors"] == {"HTTP 4xx": 20} and r["status"]["4xx"] == 20, r


@test
def usage_and_text_report(srv):
    for args, msg in ((["--bogus", srv.url], "unknown option --bogus"), ([], "no URL"),
                      (["-c", "0", srv.url], "-c needs a number"),
                      (["--new-conn", f"http://127.0.0.1:{srv.http}/"], "need an https:// URL"),
                      (["--source-ips", "4", "https://localhost:1/"], "127.x.x.x")):
        r = subprocess.run([BIN, "bench", *args], capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and msg in r.stderr, (args, r.returncode, r.stderr)
    r = subprocess.run([BIN, "bench", "-n", "50", "-c", "2", "--source-ips", "3", "--resume",
                        "--cacert", srv.ca, srv.url], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    for want in ("requests     50", "TLS          full handshakes 2", "latency", "connect",
                 "handshake", "errors       0", "generator"):
        assert want in r.stdout, (want, r.stdout)
    assert "\r" not in r.stdout   # no progress line when stdout is not a terminal


def main():
    global TMP
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        os.makedirs(f"{tmp}/www")
        with open(f"{tmp}/www/hello.txt", "w") as f:
            f.write("Hello, world\n")
        srv = Serve()
        try:
            tests = [keep_alive_counts, new_conn_full_handshakes_only,
                     resume_counts_full_and_resumed, handshake_only_sends_no_http,
                     n_stops_at_n_and_rate_holds, fixed_rate_latency_counts_from_the_intended_time,
                     errors_are_classified, usage_and_text_report]
            only = sys.argv[1:]
            for t in tests:
                if not only or t.__name__ in only:
                    t(srv)
        finally:
            srv.stop()
    return summary()


if __name__ == "__main__":
    sys.exit(main())
