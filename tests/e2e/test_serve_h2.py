#!/usr/bin/env python3
"""test_serve_h2.py - `tlsloop serve`'s HTTP/2: ALPN h2 by default and h2c prior knowledge as an
option; the semantics of HTTP/1.1 over h2 (curl: bodies, ranges, 304, 404, HEAD, the access log
and the metrics by protocol); nghttp with many streams and h2load; a 16 MiB download compared by
SHA-256; a stream whose client never opens its window while another one on the same connection
completes; GOAWAY on SIGTERM with a stream in flight that still completes; and each known attack
provoked with crafted frames (python's h2, hpack and hyperframe): rapid reset, CONTINUATION flood,
HPACK bomb, SETTINGS/PING/empty DATA/WINDOW_UPDATE floods, too many concurrent streams, a window
held shut, a request body over max-body, idle and header deadlines.
"""
import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, summary, test  # noqa: E402
from e2e_serve import Serve, curl, get, make_root, plain_sock, setup  # noqa: E402
import e2e_serve  # noqa: E402

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    import hpack
    import hyperframe.frame as hf
except ImportError:   # Debian's python3-h2 lives in the system's dist-packages
    sys.path.append("/usr/lib/python3/dist-packages")
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    import hpack
    import hyperframe.frame as hf

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = 0xB
BIG = 16 * 1024 * 1024


def h2_sock(port, tls=True, timeout=10):
    """A socket to the server that speaks h2 (ALPN checked), or plain for h2c."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    if not tls:
        return raw
    c = ssl.create_default_context(cafile=e2e_serve.CA)
    c.set_alpn_protocols(["h2", "http/1.1"])
    s = c.wrap_socket(raw, server_hostname="localhost")
    assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
    return s


class Client:
    """python's h2 as a client over one socket."""

    def __init__(self, port, tls=True, settings=None, conn_window=0):
        self.s = h2_sock(port, tls)
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.c.initiate_connection()
        if settings:
            self.c.update_settings(settings)
        if conn_window:
            self.c.increment_flow_control_window(conn_window)
        self.flush()
        self.bodies, self.status, self.ended, self.resets = {}, {}, set(), {}
        self.terminated = None
        self.closed = False

    def flush(self):
        d = self.c.data_to_send()
        if d:
            self.s.sendall(d)

    def request(self, path, method="GET", extra=(), end=True):
        sid = self.c.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "https"),
                (":authority", "localhost")] + list(extra)
        self.c.send_headers(sid, hdrs, end_stream=end)
        self.bodies[sid] = b""
        self.flush()
        return sid

    def pump(self, timeout=1.0, ack=lambda sid: True):
        """Read what arrives within timeout; returns False once the connection is gone."""
        self.s.settimeout(timeout)
        try:
            data = self.s.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        for ev in self.c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                self.status[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                self.bodies[ev.stream_id] = self.bodies.get(ev.stream_id, b"") + ev.data
                if ack(ev.stream_id):
                    self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.resets[ev.stream_id] = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.terminated = ev
        try:
            self.flush()
        except OSError:
            pass
        return True

    def until(self, cond, timeout=10, ack=lambda sid: True):
        end = time.monotonic() + timeout * SLOW
        while not cond() and time.monotonic() < end:
            if not self.pump(0.2, ack):
                break
        return cond()

    def close(self):
        self.s.close()


class Raw:
    """Crafted frames (hyperframe) on a socket that sent the preface; frames read back."""

    def __init__(self, port, settings=None, tls=True):
        self.s = h2_sock(port, tls)
        self.enc = hpack.Encoder()
        self.buf = b""
        self.s.sendall(PREFACE + hf.SettingsFrame(0, settings=settings or {}).serialize())

    def send(self, *frames):
        self.s.sendall(b"".join(f.serialize() if not isinstance(f, bytes) else f for f in frames))

    def headers(self, sid, path="/index.html", end_stream=True, extra=()):
        block = self.enc.encode([(":method", "GET"), (":path", path), (":scheme", "https"),
                                 (":authority", "localhost")] + list(extra))
        return hf.HeadersFrame(sid, block, flags=["END_HEADERS"] + (["END_STREAM"] if end_stream
                                                                     else []))

    def frames(self, timeout=5):
        """Frames until the connection ends or nothing arrives for timeout seconds."""
        end = time.monotonic() + timeout * SLOW
        while time.monotonic() < end:
            while len(self.buf) >= 9:
                f, n = hf.Frame.parse_frame_header(memoryview(self.buf[:9]), strict=False)
                if len(self.buf) < 9 + n:
                    break
                f.parse_body(memoryview(self.buf[9:9 + n]))
                self.buf = self.buf[9 + n:]
                yield f
            self.s.settimeout(max(0.05, end - time.monotonic()))
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return
            except (ConnectionResetError, ssl.SSLError, OSError):
                d = b""
            if not d:
                return
            self.buf += d

    def goaway(self, timeout=5):
        """The GOAWAY frame that ends the connection (None without one), reading until it ends."""
        got = None
        for f in self.frames(timeout):
            if isinstance(f, hf.GoAwayFrame):
                got = f
        return got

    def close(self):
        self.s.close()


def metric(srv, name, label=None):
    st, _, body, _ = get(srv.metrics, "/metrics", tls=False)
    assert st == 200
    pat = rf"^tlsloop_{name}" + (rf'\{{[a-z]+="{re.escape(label)}"\}}' if label else "") + r" (\d+)"
    m = re.search(pat, body.decode(), re.M)
    assert m, (name, label)
    return int(m.group(1))


def make_files(root):
    big = os.urandom(BIG)
    with open(f"{root}/big.bin", "wb") as f:
        f.write(big)
    return hashlib.sha256(big).hexdigest()


def serve(root, *args):
    return Serve("--root", root, "--metrics-listen", "127.0.0.1:0", "--h2c", *args)


@test
def curl_over_h2_same_semantics_as_http1(root):
    alog = f"{e2e_serve.TMP}/h2-access.log"
    srv = serve(root, "--access-log", alog)
    try:
        base = f"https://localhost:{srv.https}"
        r = curl("--http2", "-w", "%{http_version} %{http_code}", f"{base}/index.html")
        assert r.stdout == b"hello tlsloop\n2 200", r
        data = open(f"{root}/data.bin", "rb").read()
        r = curl("--http2", f"{base}/data.bin")
        assert r.returncode == 0 and r.stdout == data
        r = curl("--http2", "-r", "100-199", "-w", "%{http_code}", f"{base}/data.bin")
        assert r.stdout == data[100:200] + b"206", r.stdout[-10:]
        r = curl("--http2", "-r", "999999999-", "-w", "%{http_code}", f"{base}/data.bin")
        assert r.stdout.endswith(b"416"), r.stdout
        r = curl("--http2", "-D", "-", "-o", "/dev/null", f"{base}/index.html")
        etag = re.search(rb"etag: (\S+)", r.stdout).group(1).decode()
        lm = re.search(rb"last-modified: ([^\r\n]+)", r.stdout).group(1).decode()
        for h in (f"If-None-Match: {etag}", f"If-Modified-Since: {lm}"):
            r = curl("--http2", "-H", h, "-w", "%{http_code}", f"{base}/index.html")
            assert r.stdout == b"304", (h, r.stdout)
        r = curl("--http2", "-w", "%{http_code}", "-o", "/dev/null", f"{base}/nothing-here")
        assert r.stdout == b"404"
        r = curl("--http2", "-I", f"{base}/data.bin")
        assert b"HTTP/2 200" in r.stdout and b"content-length: 262144" in r.stdout, r.stdout
        r = curl("--http2", "-w", "%{http_code} %{redirect_url}", "-o", "/dev/null", f"{base}/sub")
        assert r.stdout == f"301 {base}/sub/".encode(), r.stdout
        r = curl("--http2", "-w", "%{http_code}", "-o", "/dev/null", f"{base}/.git/config")
        assert r.stdout == b"404"
        r = curl("--http2", "-X", "DELETE", "-w", "%{http_code}", "-o", "/dev/null", f"{base}/")
        assert r.stdout == b"405"
        # A client that offers only http/1.1 gets it; h2c with prior knowledge on plain.
        r = curl("--http1.1", "-w", " %{http_version}", f"{base}/index.html")
        assert r.stdout == b"hello tlsloop\n 1.1", r.stdout
        r = curl("--http2-prior-knowledge", "-w", " %{http_version}",
                 f"http://localhost:{srv.http}/index.html")
        assert r.stdout == b"hello tlsloop\n 2", r
        r = curl("-w", " %{http_version}", f"http://localhost:{srv.http}/index.html")
        assert r.stdout == b"hello tlsloop\n 1.1", r   # and HTTP/1.1 there still
        log = open(alog).read()
        assert re.search(r'"GET /index\.html HTTP/2\.0" 200 14 "-" "curl/[^"]+" TLSv1\.3 ',
                         log), log
        assert re.search(r'"GET /data\.bin HTTP/2\.0" 206 100 ', log), log
        assert re.search(r'"GET /index\.html HTTP/1\.1" 200 14 ', log), log
        assert metric(srv, "http_requests_by_protocol_total", "HTTP/2") >= 12
        assert metric(srv, "http_requests_by_protocol_total", "HTTP/1.1") >= 2
    finally:
        assert srv.stop() == 0
    # Without the h2c option, a plain listener does not take the preface (505 over HTTP/1.1);
    # the alpn option rules: http/1.1 alone keeps curl on HTTP/1.1.
    srv = Serve("--root", root, "--alpn", "http/1.1")
    try:
        with plain_sock(srv.http) as s:
            s.sendall(PREFACE)
            assert b" 505 " in s.recv(4096).split(b"\r\n")[0] + b" "
        r = curl("--http2", "-w", " %{http_version}", f"https://localhost:{srv.https}/index.html")
        assert r.stdout == b"hello tlsloop\n 1.1", r
    finally:
        assert srv.stop() == 0


@test
def h2c_preface_in_pieces(root):
    srv = serve(root)
    try:
        # The preface a byte at a time, then the frames: HTTP/2 all the same.
        with plain_sock(srv.http) as s:
            for b in PREFACE:
                s.sendall(bytes([b]))
                time.sleep(0.005)
            enc = hpack.Encoder()
            block = enc.encode([(":method", "GET"), (":path", "/index.html"),
                                (":scheme", "http"), (":authority", "localhost")])
            s.sendall(hf.SettingsFrame(0).serialize() +
                      hf.HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"]).serialize())
            data, end = b"", time.monotonic() + 5 * SLOW
            while b"hello tlsloop" not in data and time.monotonic() < end:
                data += s.recv(65536)
            assert b"hello tlsloop\n" in data, data
        # A beginning of the preface that turns out otherwise is HTTP/1.1 after all.
        with plain_sock(srv.http) as s:
            s.sendall(b"PR")
            time.sleep(0.05)
            s.sendall(b"OPFIND / HTTP/1.1\r\nHost: l\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 405 "), "not answered over HTTP/1.1"
    finally:
        assert srv.stop() == 0


@test
def nghttp_many_streams_and_h2load(root):
    srv = serve(root)
    try:
        base = f"https://127.0.0.1:{srv.https}"
        urls = ([f"{base}/index.html?n={i}" for i in range(60)] +
                [f"{base}/data.bin?n={i}" for i in range(4)])
        r = subprocess.run(["nghttp", "-n", "-s", "-m", "1", *urls], capture_output=True,
                           text=True, timeout=60 * SLOW)
        assert r.returncode == 0, r.stderr[-2000:]
        codes = re.findall(r"^\s*\d+\s+\+\S+\s+\+\S+\s+\S+\s+(\d{3})\s", r.stdout, re.M)
        assert len(codes) == 64 and set(codes) == {"200"}, r.stdout[-2000:]
        r = subprocess.run(["h2load", "-n", "200", "-c", "4", "-m", "10",
                            f"{base}/index.html"], capture_output=True, text=True,
                           timeout=60 * SLOW)
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"requests: 200 total, 200 started, 200 done, 200 succeeded", r.stdout)
        assert re.search(r"status codes: 200 2xx", r.stdout), r.stdout
        assert metric(srv, "http2_connections_total") >= 5
    finally:
        assert srv.stop() == 0


@test
def big_download_by_sha256(root, sha):
    srv = serve(root)
    try:
        out = f"{e2e_serve.TMP}/big.out"
        r = curl("--http2", "-o", out, "-w", "%{http_version}",
                 f"https://localhost:{srv.https}/big.bin", timeout=60)
        assert r.stdout == b"2", r
        assert hashlib.sha256(open(out, "rb").read()).hexdigest() == sha
        os.unlink(out)
        # The same over h2c.
        r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge",
                            f"http://localhost:{srv.http}/big.bin"], capture_output=True,
                           timeout=60 * SLOW)
        assert hashlib.sha256(r.stdout).hexdigest() == sha
    finally:
        assert srv.stop() == 0


@test
def slow_stream_does_not_hold_the_others(root):
    srv = serve(root)
    try:
        rss0 = srv.rss_kib()
        # The connection's window is wide; the first stream's stays at its initial 64 KiB, since
        # its data is never acknowledged. The second completes on the same connection.
        c = Client(srv.https, conn_window=256 * 1024 * 1024)
        slow = c.request("/big.bin")
        fast = c.request("/data.bin")
        assert c.until(lambda: fast in c.ended, ack=lambda sid: sid != slow), (c.status, c.resets)
        assert c.bodies[fast] == open(f"{root}/data.bin", "rb").read()
        assert len(c.bodies[slow]) <= 65535 and slow not in c.ended
        # And more on it, while the slow one still waits.
        again = [c.request("/index.html") for _ in range(20)]
        assert c.until(lambda: all(s in c.ended for s in again), ack=lambda sid: sid != slow)
        assert len(c.bodies[slow]) <= 65535
        # The server did not read the big file ahead for it.
        assert srv.rss_kib() - rss0 < 8 * 1024, (rss0, srv.rss_kib())
        # Opening its window lets it finish.
        c.c.acknowledge_received_data(len(c.bodies[slow]), slow)
        c.c.increment_flow_control_window(BIG, slow)
        c.flush()
        assert c.until(lambda: slow in c.ended, timeout=60)
        assert len(c.bodies[slow]) == BIG
        c.close()
    finally:
        assert srv.stop() == 0


@test
def goaway_on_sigterm_streams_in_flight_finish(root, sha):
    srv = serve(root)
    r = None
    try:
        # Raw frames: python's h2 takes no DATA after a GOAWAY, which the protocol allows.
        r = Raw(srv.https, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1})
        r.send(hf.WindowUpdateFrame(0, window_increment=2**31 - 1 - 65535),
               r.headers(1, "/big.bin"))
        got = bytearray()
        for f in r.frames(10):
            if isinstance(f, hf.DataFrame):
                got += f.data
                if len(got) > 100000:
                    break
        # Not reading for a moment: the download is in flight when the server is told to stop.
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        goaways, ended = [], False
        t0 = time.monotonic()
        for f in r.frames(60):
            if isinstance(f, hf.GoAwayFrame):
                goaways.append((f.last_stream_id, f.error_code))
                assert not ended
            elif isinstance(f, hf.DataFrame) and f.stream_id == 1:
                got += f.data
                ended = "END_STREAM" in f.flags
        assert time.monotonic() - t0 < 50 * SLOW, "the connection stayed open"
        # The shutdown notice (the largest id), then the last stream taken, both without error.
        assert goaways and goaways[-1] == (1, 0), goaways
        assert ended and hashlib.sha256(got).hexdigest() == sha, len(got)
        r.close()   # (else the server's close lingers for our end)
        assert srv.proc.wait(20 * SLOW) == 0
    finally:
        if r:
            r.close()
        srv.stop()


@test
def goaway_on_reload(root):
    srv = serve(root)
    try:
        r = Raw(srv.https)
        r.send(r.headers(1))
        assert any(isinstance(f, hf.DataFrame) and "END_STREAM" in f.flags for f in r.frames(2))
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"reloaded: generation")
        t0 = time.monotonic()
        g = r.goaway(5)
        assert g is not None and (g.last_stream_id, g.error_code) == (1, 0), g
        assert time.monotonic() - t0 < 3 * SLOW   # and the connection ended
        r.close()
        c = Client(srv.https)   # a new connection is served
        sid = c.request("/index.html")
        assert c.until(lambda: sid in c.ended) and c.bodies[sid] == b"hello tlsloop\n"
        c.close()
    finally:
        assert srv.stop() == 0


@test
def rapid_reset_ends_the_connection(root):
    srv = serve(root)
    try:
        r = Raw(srv.https)
        frames = []
        for i in range(600):
            sid = 1 + 2 * i
            frames += [r.headers(sid, "/data.bin"), hf.RstStreamFrame(sid, error_code=8)]
        r.send(*frames)
        g = r.goaway()
        assert g is not None and g.error_code == ENHANCE_YOUR_CALM, g
        r.close()
        assert metric(srv, "http2_defended_total", "rapid_reset") == 1
        # A client that cancels now and then is served.
        c = Client(srv.https)
        for i in range(20):
            sid = c.request("/data.bin")
            c.c.reset_stream(sid)
            c.flush()
        ok = c.request("/index.html")
        assert c.until(lambda: ok in c.ended) and c.bodies[ok] == b"hello tlsloop\n"
        c.close()
    finally:
        assert srv.stop() == 0


@test
def continuation_flood_ends_the_connection(root):
    srv = serve(root)
    try:
        r = Raw(srv.https)
        block = r.enc.encode([(":method", "GET"), (":path", "/index.html"), (":scheme", "https"),
                              (":authority", "localhost"), ("x-pad", "a" * 3000)])
        frames = [hf.HeadersFrame(1, block[:1], flags=["END_STREAM"])]
        frames += [hf.ContinuationFrame(1, block[i:i + 1]) for i in range(1, 200)]
        r.send(*frames)
        g = r.goaway()
        assert g is not None and g.error_code == ENHANCE_YOUR_CALM, g
        r.close()
        # Endless empty CONTINUATION frames too.
        r = Raw(srv.https)
        r.send(hf.HeadersFrame(1, block[:10], flags=["END_STREAM"]),
               *[hf.ContinuationFrame(1, b"") for _ in range(100)])
        g = r.goaway()
        assert g is not None and g.error_code == ENHANCE_YOUR_CALM, g
        r.close()
        assert metric(srv, "http2_defended_total", "continuation") == 2
        # A block over a few CONTINUATION frames is fine.
        r = Raw(srv.https)
        r.send(hf.HeadersFrame(1, block[:1000], flags=["END_STREAM"]),
               hf.ContinuationFrame(1, block[1000:2000]),
               hf.ContinuationFrame(1, block[2000:], flags=["END_HEADERS"]))
        got = [f for f in r.frames(2) if f.stream_id == 1]
        assert any(isinstance(f, hf.DataFrame) and f.data == b"hello tlsloop\n" for f in got)
        r.close()
    finally:
        assert srv.stop() == 0


@test
def hpack_bomb_gets_431(root):
    srv = serve(root)
    try:
        # One 4000-byte field in the dynamic table, then named again and again: a few bytes on
        # the wire, 400 KB once decoded.
        c = Client(srv.https)
        bomb = [("x-bomb", "b" * 4000)] * 100
        sid = c.request("/index.html", extra=bomb)
        assert c.until(lambda: sid in c.ended), c.resets
        assert c.status[sid][b":status"] == b"431"
        ok = c.request("/index.html")   # the connection goes on
        assert c.until(lambda: ok in c.ended) and c.status[ok][b":status"] == b"200"
        # Again and again: the connection ends.
        for _ in range(12):
            c.request("/index.html", extra=bomb)
        assert c.until(lambda: c.terminated is not None or c.closed)
        assert c.terminated is None or c.terminated.error_code == ENHANCE_YOUR_CALM
        c.close()
        assert metric(srv, "http2_defended_total", "header_list") >= 9
    finally:
        assert srv.stop() == 0


@test
def control_frame_floods_end_the_connection(root):
    srv = serve(root)
    try:
        kinds = {
            "settings": lambda r: [hf.SettingsFrame(0) for _ in range(3000)],
            "ping": lambda r: [hf.PingFrame(0, opaque_data=b"12345678") for _ in range(3000)],
            "window_update": lambda r: [hf.WindowUpdateFrame(0, window_increment=1)
                                        for _ in range(3000)],
            "empty_data": lambda r: [r.headers(1, "/index.html", end_stream=False)] +
                                    [hf.DataFrame(1, b"") for _ in range(3000)],
        }
        for name, make in kinds.items():
            r = Raw(srv.https)
            r.send(*make(r))
            g = r.goaway()
            assert g is not None and g.error_code == ENHANCE_YOUR_CALM, (name, g)
            r.close()
        assert metric(srv, "http2_defended_total", "flood") == 4
        # Some PINGs and SETTINGS are fine.
        r = Raw(srv.https)
        r.send(*[hf.PingFrame(0, opaque_data=b"12345678") for _ in range(50)],
               *[hf.SettingsFrame(0) for _ in range(50)], r.headers(1))
        got = list(r.frames(2))
        assert sum(isinstance(f, hf.PingFrame) and "ACK" in f.flags for f in got) == 50
        assert any(isinstance(f, hf.DataFrame) and f.stream_id == 1 for f in got)
        assert not any(isinstance(f, hf.GoAwayFrame) for f in got)
        r.close()
    finally:
        assert srv.stop() == 0


@test
def concurrent_streams_over_the_limit_are_refused(root):
    srv = serve(root, "--h2-max-streams", "10")
    try:
        # A shut window (0) keeps every stream open: its answer cannot send data.
        r = Raw(srv.https, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        r.send(*[r.headers(1 + 2 * i, "/data.bin") for i in range(15)])
        answered, refused = set(), set()
        for f in r.frames(2):
            if isinstance(f, hf.HeadersFrame):
                answered.add(f.stream_id)
            elif isinstance(f, hf.RstStreamFrame) and f.error_code == 7:   # REFUSED_STREAM
                refused.add(f.stream_id)
        assert len(answered) == 10 and len(refused) == 5, (answered, refused)
        r.close()
        assert metric(srv, "http2_defended_total", "streams") == 5
    finally:
        assert srv.stop() == 0


@test
def shut_window_hits_the_send_timeout(root):
    srv = serve(root, "--h2-send-timeout", "1s")
    try:
        # Every window shut: no answer can move, the connection ends.
        r = Raw(srv.https, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        r.send(r.headers(1, "/data.bin"))
        t0 = time.monotonic()
        g = r.goaway(10)
        assert g is not None and g.error_code == 3, g   # FLOW_CONTROL_ERROR
        assert 0.8 < time.monotonic() - t0 < 5 * SLOW
        r.close()
        # One stream shut while another one moves: that stream alone is reset.
        c = Client(srv.https, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0},
                   conn_window=64 * 1024 * 1024)
        stuck = c.request("/data.bin")
        moving = c.request("/big.bin")
        end = time.monotonic() + 8 * SLOW
        while stuck not in c.resets and time.monotonic() < end:
            c.c.increment_flow_control_window(4096, moving)   # a trickle, paced
            c.flush()
            c.pump(0.05, ack=lambda sid: False)
            time.sleep(0.05)
        assert c.resets.get(stuck) == 8, c.resets   # CANCEL
        assert moving not in c.resets and c.terminated is None and len(c.bodies[moving]) > 0
        c.close()
        assert metric(srv, "http2_defended_total", "stall") == 2
    finally:
        assert srv.stop() == 0


@test
def request_bodies_over_max_body_get_413(root):
    srv = serve(root, "--max-body", "1k")
    try:
        c = Client(srv.https)
        small = c.request("/index.html", method="POST", extra=[("content-length", "100")],
                          end=False)
        c.c.send_data(small, b"x" * 100, end_stream=True)
        told = c.request("/index.html", method="POST", extra=[("content-length", "5000")],
                         end=False)
        streamed = c.request("/index.html", method="POST", end=False)
        c.c.send_data(streamed, b"y" * 2000)
        c.flush()
        assert c.until(lambda: {small, told, streamed} <= set(c.status) and
                       {told, streamed} <= set(c.resets) | c.ended)
        assert c.status[small][b":status"] == b"405"   # read whole; a static server takes no POST
        assert c.status[told][b":status"] == b"413" and c.status[streamed][b":status"] == b"413"
        ok = c.request("/index.html")
        assert c.until(lambda: ok in c.ended) and c.status[ok][b":status"] == b"200"
        c.close()
        assert metric(srv, "http2_defended_total", "body") == 2
    finally:
        assert srv.stop() == 0


@test
def idle_and_header_deadlines(root):
    srv = serve(root, "--keepalive-timeout", "1s", "--header-timeout", "1s")
    try:
        # Idle after a request: GOAWAY (no error) and close.
        c = Client(srv.https)
        sid = c.request("/index.html")
        assert c.until(lambda: sid in c.ended)
        t0 = time.monotonic()
        assert c.until(lambda: c.closed, timeout=6), "not closed when idle"
        assert c.terminated is not None and c.terminated.error_code == 0
        assert 0.8 < time.monotonic() - t0 < 4 * SLOW
        c.close()
        # A header block that never ends (HEADERS without END_HEADERS, then nothing).
        r = Raw(srv.https)
        block = r.enc.encode([(":method", "GET"), (":path", "/"), (":scheme", "https")])
        r.send(hf.HeadersFrame(1, block, flags=["END_STREAM"]))
        t0 = time.monotonic()
        g = r.goaway(6)
        assert g is not None and g.error_code == 1, g   # PROTOCOL_ERROR
        assert 0.8 < time.monotonic() - t0 < 4 * SLOW
        r.close()
        # TLS with ALPN h2 and then no preface at all: closed at header-timeout.
        with h2_sock(srv.https) as s:
            t0 = time.monotonic()
            s.settimeout(6 * SLOW)
            data = b""
            try:
                while True:
                    d = s.recv(4096)
                    if not d:
                        break
                    data += d
            except (ConnectionResetError, ssl.SSLError):
                pass
            assert 0.8 < time.monotonic() - t0 < 4 * SLOW
    finally:
        assert srv.stop() == 0


@test
def h2_through_tlsloop_proxy_to_an_h2c_backend(root, sha):
    """The proxy is TCP-level: with `--alpn h2,http/1.1` it selects h2 for a client that offers
    it and carries the bytes to a backend that speaks h2c with prior knowledge (here tlsloop
    serve --h2c); a client that offers only http/1.1 gets HTTP/1.1 through the same proxy, which
    the backend tells apart by the preface. PROXY v2 carries the ALPN chosen (PP2_TYPE_ALPN,
    docs/proxy.md)."""
    tmp = e2e_serve.TMP
    cert, key = f"{tmp}/px-cert.pem", f"{tmp}/px-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-days", "2",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    srv = serve(root)
    plog = f"{tmp}/px-{time.monotonic_ns()}.log"
    px = subprocess.Popen([e2e_serve.BIN, "proxy", "--listen", "127.0.0.1:0", "--cert", cert,
                           "--key", key, "--alpn", "h2,http/1.1", "--workers", "1", "--log", plog,
                           "--backend", f"127.0.0.1:{srv.http}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        m = re.match(r"tlsloop proxy: listening on port (\d+)", px.stdout.readline())
        assert m, px.stderr.read()
        base = f"https://localhost:{m.group(1)}"
        r = curl("--cacert", cert, "--http2", "-w", " %{http_version}", f"{base}/index.html")
        assert r.stdout == b"hello tlsloop\n 2", r
        r = curl("--cacert", cert, "--http2", f"{base}/big.bin")
        assert r.returncode == 0 and hashlib.sha256(r.stdout).hexdigest() == sha
        r = curl("--cacert", cert, "--http1.1", "-w", " %{http_version}", f"{base}/index.html")
        assert r.stdout == b"hello tlsloop\n 1.1", r
        assert metric(srv, "http_requests_by_protocol_total", "HTTP/2") >= 2
        assert metric(srv, "http_requests_by_protocol_total", "HTTP/1.1") >= 1
    finally:
        px.terminate()
        assert px.wait(20 * SLOW) == 0, px.stderr.read()
        assert srv.stop() == 0


def main():
    with tempfile.TemporaryDirectory() as tmp:
        setup(tmp)
        root = make_root()
        sha = make_files(root)
        tests = [(curl_over_h2_same_semantics_as_http1, ()), (h2c_preface_in_pieces, ()),
                 (nghttp_many_streams_and_h2load, ()),
                 (big_download_by_sha256, (sha,)), (slow_stream_does_not_hold_the_others, ()),
                 (goaway_on_sigterm_streams_in_flight_finish, (sha,)), (goaway_on_reload, ()),
                 (rapid_reset_ends_the_connection, ()),
                 (continuation_flood_ends_the_connection, ()), (hpack_bomb_gets_431, ()),
                 (control_frame_floods_end_the_connection, ()),
                 (concurrent_streams_over_the_limit_are_refused, ()),
                 (shut_window_hits_the_send_timeout, ()),
                 (request_bodies_over_max_body_get_413, ()), (idle_and_header_deadlines, ()),
                 (h2_through_tlsloop_proxy_to_an_h2c_backend, (sha,))]
        only = sys.argv[1:]
        for t, extra in tests:
            if not only or t.__name__ in only:
                t(root, *extra)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
