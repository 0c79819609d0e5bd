#!/usr/bin/env python3
"""test_proxy_stream.py - `tlsloop proxy` carrying the byte stream: echo over TLS 1.3, 1.2 and
plain; 64 MiB both ways and into a slow sink with RSS bounded (1 GiB with SOAK=1); half-close;
resets either way; SIGTERM mid-transfer; curl and s_client to an HTTP backend.
"""
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, run_selected, summary, test  # noqa: E402
from e2e_proxy import (Backend, Proxy, ctx_for, echo, echo_roundtrip, setup,  # noqa: E402
                       tls_connect)

BIG = (1 << 30) if os.environ.get("SOAK") == "1" else (64 << 20)


# ---- backends ---------------------------------------------------------------------------------

def answer_after_eof(c):
    """Count what arrives until EOF, then answer with the count: needs half-close."""
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
    c.sendall(f"got {n}\n".encode())
    c.shutdown(socket.SHUT_WR)


def slow_sink(total):
    """A sink: read and drop total bytes, slowly (a millisecond per 64 KiB read), then answer
    with the count."""
    def handler(c):
        n = 0
        while n < total:
            d = c.recv(65536)
            if not d:
                break
            n += len(d)
            time.sleep(0.001)
        c.sendall(f"got {n}\n".encode())
        c.shutdown(socket.SHUT_WR)
    return handler


def reset_after_first_read(c):
    c.recv(100)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def http_hello(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(4096)
        if not d:
            return
        buf += d
    body = b"hello through the proxy\n"
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
              + body)
    c.shutdown(socket.SHUT_WR)
    while c.recv(4096):
        pass


# ---- tests ------------------------------------------------------------------------------------

@test
def echo_tls13_tls12_and_plain(cert):
    be = Backend(echo)
    px = Proxy(cert, be.port)
    try:
        data = os.urandom(300000)
        for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            with tls_connect(px.tls, cert, v) as s:
                assert s.version() == ("TLSv1.3" if v == ssl.TLSVersion.TLSv1_3 else "TLSv1.2")
                echo_roundtrip(s, data)
        with socket.create_connection(("127.0.0.1", px.plain), timeout=20 * SLOW) as p:
            echo_roundtrip(p, data)
    finally:
        assert px.stop() == 0
        be.close()


def pump_both_ways(s, total, slow_reader, on_progress=None):
    """Send total bytes while reading the echo, in one thread (an SSLSocket must not be read and
    written from two threads at once); returns the bytes read. slow_reader: pause a millisecond
    every 256 KiB read."""
    chunk = os.urandom(1 << 16)
    s.setblocking(False)
    sent = got = reads = 0
    deadline = time.monotonic() + 300 * SLOW
    try:
        while got < total:
            assert time.monotonic() < deadline, f"stuck: sent {sent}, got {got} of {total}"
            want_w = sent < total
            r, w, _ = select.select([s], [s] if want_w else [], [], 5)
            if w or (want_w and s.pending() == 0 and not r):
                try:
                    sent += s.send(chunk[:min(len(chunk), total - sent)])
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    pass
            while True:   # what TLS holds decrypted is not signalled by select
                try:
                    d = s.recv(1 << 16)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    break
                assert d, f"ended after {got} of {total} bytes"
                got += len(d)
                reads += 1
                if on_progress:
                    on_progress(got)
                if slow_reader and reads % 4 == 0:
                    time.sleep(0.001)
                if not s.pending():
                    break
    finally:
        s.setblocking(True)
    return got


@test
def big_both_ways_slow_readers_rss_bounded(cert):
    """BIG bytes through the echo backend, first with a slow client, then with a slow backend:
    backpressure keeps the proxy's memory flat whatever the speeds."""
    for slow_backend in (False, True):
        be = Backend(lambda c: echo(c, slow=slow_backend))
        px = Proxy(cert, be.port)
        try:
            with tls_connect(px.tls, cert) as s:
                echo_roundtrip(s, b"warm")
                base = px.rss_kib()
                peak = [base]
                done = threading.Event()

                def watch():
                    while not done.is_set():
                        try:
                            peak[0] = max(peak[0], px.rss_kib())
                        except OSError:
                            return
                        time.sleep(0.05)
                threading.Thread(target=watch, daemon=True).start()
                assert pump_both_ways(s, BIG, slow_reader=not slow_backend) == BIG
                done.set()
            grew = peak[0] - base
            print(f"  {'slow backend' if slow_backend else 'slow client'}: {BIG >> 20} MiB each "
                  f"way, proxy RSS {base} KiB -> peak {peak[0]} KiB")
            # Unbounded buffering would hold most of BIG. Under ASan freed memory sits in its
            # quarantine, so RSS says nothing about buffering there: the transfer alone is checked.
            if os.environ.get("TLSLOOP_PHASE") != "asan":
                assert grew < 24 * 1024, f"the proxy's RSS grew by {grew} KiB"
        finally:
            assert px.stop() == 0
            be.close()


@test
def upload_to_a_slow_sink_rss_bounded(cert):
    """BIG bytes one way into a sink that reads slowly: the client is held back by
    backpressure (the proxy stops reading it), every byte arrives, the proxy's memory stays flat."""
    be = Backend(slow_sink(BIG))
    px = Proxy(cert, be.port)
    try:
        with tls_connect(px.tls, cert) as s:
            chunk = os.urandom(1 << 16)
            base = px.rss_kib()
            peak = base
            sent = 0
            while sent < BIG:
                n = min(len(chunk), BIG - sent)
                s.sendall(chunk[:n])
                sent += n
                if sent % (4 << 20) == 0:
                    peak = max(peak, px.rss_kib())
            answer = b""
            while not answer.endswith(b"\n"):
                d = s.recv(100)
                assert d, answer
                answer += d
            assert answer == f"got {BIG}\n".encode(), answer
        print(f"  {BIG >> 20} MiB into a slow sink, proxy RSS {base} KiB -> peak {peak} KiB")
        if os.environ.get("TLSLOOP_PHASE") != "asan":
            assert peak - base < 24 * 1024, f"the proxy's RSS grew by {peak - base} KiB"
    finally:
        assert px.stop() == 0
        be.close()


@test
def half_close_carried_tls13_and_plain(cert):
    """The client sends, ends its data (close_notify / FIN), and still gets the backend's answer,
    which the backend sends only after it saw the end: the proxy carried it as a FIN."""
    be = Backend(answer_after_eof)
    px = Proxy(cert, be.port)
    try:
        data = os.urandom(200000)
        # TLS 1.3 over a memory BIO: python's sockets cannot send close_notify and keep reading.
        ctx = ctx_for(cert, ssl.TLSVersion.TLSv1_3)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
        raw = socket.create_connection(("127.0.0.1", px.tls), timeout=20 * SLOW)

        def flush():
            pending = out.read()
            if pending:
                raw.sendall(pending)

        def feed():
            d = raw.recv(65536)
            if d:
                inc.write(d)
            else:
                inc.write_eof()
            return d
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                feed()
        flush()
        obj.write(data)
        flush()
        try:
            obj.unwrap()   # our close_notify; the answer has not come yet
        except ssl.SSLWantReadError:
            pass
        flush()
        answer = b""
        while True:
            try:
                d = obj.read(65536)
                if not d:
                    break
                answer += d
            except ssl.SSLWantReadError:
                if not feed():
                    break
            except ssl.SSLZeroReturnError:
                break
        raw.close()
        assert answer == f"got {len(data)}\n".encode(), answer
        with socket.create_connection(("127.0.0.1", px.plain), timeout=20 * SLOW) as p:
            p.sendall(data)
            p.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                d = p.recv(65536)
                if not d:
                    break
                answer += d
            assert answer == f"got {len(data)}\n".encode(), answer
    finally:
        assert px.stop() == 0
        be.close()


@test
def backend_reset_is_carried(cert):
    be = Backend(reset_after_first_read)
    px = Proxy(cert, be.port)
    try:
        raw = socket.create_connection(("127.0.0.1", px.tls), timeout=20 * SLOW)
        with ctx_for(cert).wrap_socket(raw, server_hostname="localhost",
                                       suppress_ragged_eofs=False) as s:
            s.sendall(b"hello")
            try:
                d = s.recv(100)
                raise AssertionError(f"a clean end ({d!r}) where a reset was expected")
            except (ConnectionResetError, ssl.SSLEOFError):
                pass   # python reports the RST under TLS as either; never a clean end
        with socket.create_connection(("127.0.0.1", px.plain), timeout=20 * SLOW) as p:
            p.sendall(b"hello")
            try:
                d = p.recv(100)
                raise AssertionError(f"{d!r} where a reset was expected")
            except ConnectionResetError:
                pass
    finally:
        assert px.stop() == 0
        be.close()


@test
def client_reset_is_carried(cert):
    outcomes = []

    def record(c):
        try:
            while c.recv(65536):
                pass
            outcomes.append("eof")
        except ConnectionResetError:
            outcomes.append("reset")
    be = Backend(record)
    px = Proxy(cert, be.port)
    try:
        s = tls_connect(px.tls, cert)
        s.sendall(b"hello")
        deadline = time.monotonic() + 10 * SLOW
        while be.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()   # an RST
        while not outcomes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert outcomes == ["reset"], outcomes
    finally:
        assert px.stop() == 0
        be.close()


@test
def sigterm_during_a_transfer_lets_it_finish(cert):
    be = Backend(lambda c: echo(c, slow=True))
    px = Proxy(cert, be.port)
    try:
        with tls_connect(px.tls, cert) as s:
            total = 16 << 20
            signalled = []

            def midway(got):
                if got > total // 4 and not signalled:
                    signalled.append(got)
                    px.proc.send_signal(signal.SIGTERM)
            assert pump_both_ways(s, total, slow_reader=False, on_progress=midway) == total
            assert signalled
        assert px.proc.wait(30 * SLOW) == 0
        assert "SIGTERM" in px.log_text()
    finally:
        px.stop()
        be.close()


@test
def curl_and_s_client_through_the_proxy(cert):
    be = Backend(http_hello)
    px = Proxy(cert, be.port)
    try:
        r = subprocess.run(["curl", "-sS", "--cacert", cert[0], f"https://localhost:{px.tls}/"],
                           capture_output=True, text=True, timeout=20 * SLOW)
        assert r.returncode == 0 and r.stdout == "hello through the proxy\n", (r.stdout, r.stderr)
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{px.tls}",
                            "-servername", "localhost", "-CAfile", cert[0],
                            "-verify_return_error", "-ign_eof", "-quiet"],
                           input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True,
                           timeout=20 * SLOW)
        assert b"hello through the proxy" in r.stdout, (r.stdout, r.stderr[-500:])
    finally:
        assert px.stop() == 0
        be.close()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        cert = setup(tmp)
        tests = [echo_tls13_tls12_and_plain, big_both_ways_slow_readers_rss_bounded,
                 upload_to_a_slow_sink_rss_bounded, half_close_carried_tls13_and_plain,
                 backend_reset_is_carried, client_reset_is_carried,
                 sigterm_during_a_transfer_lets_it_finish, curl_and_s_client_through_the_proxy]
        run_selected(tests, cert)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
