#!/usr/bin/env python3
"""test_server_limits.py - the server core's limits and deadlines (through examples/echo_server):
the connection limit, the handshake cap, the per-source limit, the handshake rate, running out of
file descriptors (EMFILE), the handshake deadline on a partial ClientHello and the send-stall
deadline on a peer that stops reading.
"""
import os
import resource
import ssl
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, run_selected, summary, test, wait_for  # noqa: E402
from e2e_server import Server, client_ctx, connect, echo_once, make_certs, setup  # noqa: E402

def waits_until_freed(srv, ctx, free_slot, limit):
    """A new client at the limit is not served, and is served once free_slot() frees a slot."""
    done = []

    def client():
        with connect(srv.port, ctx, timeout=20) as s:
            echo_once(s)
            done.append(True)
    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.7)
    assert not done, f"a client was served above {limit}"
    free_slot()
    t.join(15 * SLOW)
    assert done, f"the waiting client was not served after {limit} freed a slot"


@test
def connection_limit_makes_clients_wait(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--max-conns", "2", "--workers", "2")
    try:
        ctx = client_ctx(c["ca"][0])
        held = [connect(srv.port, ctx) for _ in range(2)]
        for s in held:
            echo_once(s)
        waits_until_freed(srv, ctx, held[0].close, "max-conns")
        held[1].close()
        st = srv.stats(ctx)
        assert st["accept_pauses"] >= 1, st
    finally:
        assert srv.stop() == 0


@test
def handshake_cap_and_per_source_limit(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--max-handshakes", "2", "--workers", "1")
    try:
        ctx = client_ctx(c["ca"][0])
        silent = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(2)]
        time.sleep(0.2)
        waits_until_freed(srv, ctx, silent[0].close, "max-handshakes")
        silent[1].close()
    finally:
        assert srv.stop() == 0
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--max-per-source", "2")
    try:
        ctx = client_ctx(c["ca"][0])
        held = [connect(srv.port, ctx) for _ in range(2)]
        refused = False
        try:
            with connect(srv.port, ctx) as s:
                echo_once(s)
        except (ssl.SSLError, ConnectionError, AssertionError, OSError):
            refused = True
        assert refused, "a third connection from one source was served"
        with connect(srv.port, ctx, source="127.0.0.2") as s:   # another source is fine
            echo_once(s)
        held[0].close()
        wait_for(lambda: srv.stats(ctx, "127.0.0.3")["conns_open"] <= 2, what="close")
        with connect(srv.port, ctx) as s:   # a freed slot is usable again
            echo_once(s)
        st = srv.stats(ctx, "127.0.0.3")
        assert st["refused_source"] == 1, st
        held[1].close()
        srv.wait_log(r"refused 127\.0\.0\.1:\d+ .*max-per-source")
    finally:
        assert srv.stop() == 0


@test
def handshake_deadline_drops_partial_client_hello(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--handshake-timeout", "1s")
    try:
        ctx = client_ctx(c["ca"][0])
        partial = socket.create_connection(("127.0.0.1", srv.port))
        partial.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]))   # a start
        t0 = time.monotonic()
        with connect(srv.port, ctx) as s:   # others are served meanwhile
            echo_once(s)
        partial.settimeout(10)
        try:
            assert partial.recv(100) == b""
        except ConnectionResetError:
            pass
        took = time.monotonic() - t0
        assert 0.8 < took < 2.5 * SLOW, took
        srv.wait_log(r"handshake failed from 127\.0\.0\.1:\d+ .*\(timeout\)")
        assert srv.stats(ctx)["failed_timeout"] == 1
    finally:
        assert srv.stop() == 0


@test
def send_stall_deadline_drops_a_peer_that_stops_reading(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--send-timeout", "1s", quiet=False)
    try:
        # Default buffers: a tiny SO_RCVBUF makes the kernel compact and drop segments, and each
        # retransmission it then takes is progress the server rightly sees.
        raw = socket.create_connection(("127.0.0.1", srv.port))
        s = client_ctx(c["ca"][0]).wrap_socket(raw, server_hostname="localhost")
        s.setblocking(False)
        chunk = os.urandom(16384)
        t_end = time.monotonic() + 20 * SLOW
        ended = False
        while time.monotonic() < t_end and not ended:   # send, never read
            try:
                s.send(chunk)
            except (ssl.SSLWantWriteError, BlockingIOError):
                time.sleep(0.02)
            except (ConnectionError, ssl.SSLError, OSError):
                ended = True
            if any("send stalled" in line for line in srv.lines):
                ended = True
        wait_for(lambda: any("closed (" in l for l in srv.lines), 5, "the close line")
        line = next((l for l in srv.lines if "closed (" in l), None)
        assert line and "send stalled" in line, srv.lines[-5:]
        s.close()
    finally:
        assert srv.stop() == 0


@test
def handshake_rate_paces_new_handshakes(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--handshake-rate", "10", "--handshake-burst", "2",
                 "--workers", "1")
    try:
        ctx = client_ctx(c["ca"][0])
        t0 = time.monotonic()
        for _ in range(12):   # 2 at once, then 10 at 10/s: about a second, none refused
            with connect(srv.port, ctx) as s:
                echo_once(s)
        took = time.monotonic() - t0
        assert 0.8 < took < 5 * SLOW, took
        st = srv.stats(ctx)
        assert st["accept_pauses"] >= 5 and st["full"] + st["resumed"] >= 12, st
    finally:
        assert srv.stop() == 0


@test
def out_of_descriptors_pauses_and_resumes(c):
    """At the open-file limit accept fails with EMFILE: the server says so, pauses the listener
    and retries (the connections wait in the backlog, on io_uring too, whose accept the pause
    cancels), and serves the waiting clients once descriptors are free."""
    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--max-conns", "1000", "--workers", "1", preexec=low_nofile)
    ctx = client_ctx(c["ca"][0])
    n = 72
    served, lock = [], threading.Lock()

    def client():
        try:
            s = connect(srv.port, ctx, timeout=30)
            echo_once(s)
        except OSError:
            return
        with lock:
            served.append(s)
    threads = [threading.Thread(target=client) for _ in range(n)]
    try:
        for t in threads:
            t.start()
        srv.wait_log(r"accept on .*: Too many open files; pausing")
        wait_for(lambda: len(served) > 10, what="the first clients served")
        time.sleep(0.3)   # the ones the server could take are served by now
        with lock:
            first = list(served)
        assert 10 < len(first) < n, len(first)
        for s in first:   # descriptors free again: the rest are served
            s.close()
        for t in threads:
            t.join(30 * SLOW)
        assert len(served) == n, f"{len(served)} of {n} served after descriptors were freed"
    finally:
        for s in served:
            s.close()
        assert srv.stop() == 0


def main():
    with tempfile.TemporaryDirectory() as tmp:
        setup(tmp)
        c = make_certs("localhost")
        tests = [connection_limit_makes_clients_wait,
                 handshake_cap_and_per_source_limit, handshake_deadline_drops_partial_client_hello,
                 send_stall_deadline_drops_a_peer_that_stops_reading,
                 handshake_rate_paces_new_handshakes, out_of_descriptors_pauses_and_resumes]
        run_selected(tests, c)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
