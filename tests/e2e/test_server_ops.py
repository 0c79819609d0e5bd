#!/usr/bin/env python3
"""test_server_ops.py - the server core run as a service (through examples/echo_server): SIGHUP
reload during a transfer, SIGTERM drain, PROXY v1/v2 (only from proxy-from), plain, TLS and IPv6
listeners, the check mode and the configuration file, the log's reopen, privileges, loop slices.
"""
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, run_selected, summary, test, wait_for  # noqa: E402
from e2e_server import (ECHO, Server, client_ctx, connect, echo_once, make_certs,  # noqa: E402
                        peer_cn, read_line, setup)

TMP = None   # setup() names it


@test
def sighup_new_certificate_during_transfer(c):
    cert, key = f"{TMP}/reload.pem", f"{TMP}/reload.key"
    shutil.copy(c["localhost"][0], cert)
    shutil.copy(c["localhost"][1], key)
    srv = Server("--listen", "127.0.0.1:0", "--cert", cert, "--key", key)
    try:
        ctx = client_ctx(c["ca"][0])
        s = connect(srv.port, ctx)
        assert peer_cn(s) == "localhost"
        total, sent, got = 8 << 20, 0, 0
        chunk = os.urandom(64 << 10)
        reloaded = False
        while got < total:
            if sent < total:
                s.sendall(chunk)
                sent += len(chunk)
            got += len(s.recv(1 << 20))
            if not reloaded and got > total // 4:
                shutil.copy(c["renewed"][0], cert)
                shutil.copy(c["renewed"][1], key)
                srv.signal(signal.SIGHUP)
                srv.wait_log(r"reloaded: generation 2")
                reloaded = True
        s.close()
        with connect(srv.port, ctx) as s2:
            assert peer_cn(s2) == "renewed-localhost", peer_cn(s2)
        # A broken file at the next reload keeps what runs, and says why.
        with open(key, "w") as f:
            f.write("not a key\n")
        srv.signal(signal.SIGHUP)
        srv.wait_log(r"reload failed, keeping the running configuration: .*reload\.(key|pem)")
        with connect(srv.port, ctx) as s3:
            assert peer_cn(s3) == "renewed-localhost"
            echo_once(s3)
    finally:
        assert srv.stop() == 0


@test
def sigterm_drains(c):
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--drain-timeout", "3s")
    ctx = client_ctx(c["ca"][0])
    conns = [connect(srv.port, ctx) for _ in range(5)]
    for s in conns:
        echo_once(s)
    # One more is mid-transfer: 2 MiB sent, its echo partly read.
    busy = connect(srv.port, ctx)
    busy.sendall(os.urandom(2 << 20))
    got = len(busy.recv(1 << 16))
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    # Every connection gets close_notify (a clean EOF, not a reset or a ragged end).
    for s in conns:
        s.settimeout(5 * SLOW)
        assert s.recv(100) == b""
        s.close()
    busy.settimeout(5 * SLOW)
    while True:
        chunk = busy.recv(1 << 20)   # an SSLError here would be a ragged end
        if not chunk:
            break
        got += len(chunk)
    assert got <= 2 << 20
    busy.close()
    assert srv.proc.wait(10 * SLOW) == 0
    assert time.monotonic() - t0 < 5 * SLOW
    # A client that never answers close_notify is cut at the drain deadline.
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--drain-timeout", "1s", "--close-timeout", "30s")
    s = connect(srv.port, ctx)
    echo_once(s)
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.proc.wait(10 * SLOW) == 0
    took = time.monotonic() - t0
    assert 0.8 < took < 4 * SLOW, took
    srv.wait_log(r"still open at the drain deadline")
    s.close()


def proxy_v2(src, sport, dst, dport):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body)


@test
def proxy_protocol_gives_the_client_address(c):
    # The TLS listener trusts its own from= list, the plain one the global proxy-from.
    srv = Server("--listen", "127.0.0.1:0,proxy,from=127.0.0.1,from=10.0.0.0/8", "--cert",
                 c["localhost"][0], "--key", c["localhost"][1],
                 "--listen", "127.0.0.1:0,plain,proxy", "--proxy-from", "127.0.0.0/30", listens=2)
    try:
        ctx = client_ctx(c["ca"][0])
        headers = [b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 443\r\n",
                   proxy_v2("198.51.100.4", 5555, "127.0.0.1", 443),
                   b"PROXY TCP6 2001:db8::1 ::1 1234 443\r\n"]
        wants = ["203.0.113.9:40000", "198.51.100.4:5555", "[2001:db8::1]:1234"]
        for hdr, want in zip(headers, wants):
            raw = socket.create_connection(("127.0.0.1", srv.port))
            # Dribble the header in two pieces: it may arrive in any number of segments.
            raw.sendall(hdr[:7])
            time.sleep(0.05)
            raw.sendall(hdr[7:])
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"!peer")
                assert read_line(s).strip() == want
        # The plain listener: the header and the first data in one segment.
        raw = socket.create_connection(("127.0.0.1", srv.ports[1]))
        raw.sendall(headers[0] + b"!peer")
        assert read_line(raw).strip() == wants[0]
        raw.close()
        # A malformed header closes only that connection.
        bad = socket.create_connection(("127.0.0.1", srv.port))
        good = connect_proxied(srv.port, ctx, headers[1])
        bad.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n")
        bad.settimeout(5)
        try:
            assert bad.recv(10) == b""
        except ConnectionResetError:
            pass   # closed with the header unread: the kernel resets
        bad.close()
        echo_once(good)
        good.close()
        srv.wait_log(r"invalid PROXY protocol header")
        st = stats_via_proxy(srv, ctx)
        assert st["proxy_invalid"] >= 1, st
    finally:
        assert srv.stop() == 0


@test
def proxy_header_only_from_trusted_sources(c):
    """A PROXY header says who the client is: from a peer outside proxy-from (or the listener's
    from=) it would be a forged address. Such a peer is closed before it is read, counted and
    logged; trusted peers are served as before; a proxy listener without a list cannot start."""
    srv = Server("--listen", "127.0.0.1:0,proxy,from=127.0.0.1/32", "--cert", c["localhost"][0],
                 "--key", c["localhost"][1], "--listen", "127.0.0.1:0,plain,proxy",
                 "--proxy-from", "::1,127.0.0.3", "--max-per-source", "100", listens=2)
    try:
        ctx = client_ctx(c["ca"][0])
        hdr = b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 443\r\n"
        for port, source in ((srv.ports[0], "127.0.0.2"), (srv.ports[1], "127.0.0.1")):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW,
                                           source_address=(source, 0))
            try:
                raw.sendall(hdr + b"!peer")
                got = raw.recv(100)
            except ConnectionResetError:
                got = b""   # closed with our bytes unread: the kernel resets
            raw.close()
            assert got == b"", (port, source, got)
            srv.wait_log(rf"closed {re.escape(source)}:\d+ on 127\.0\.0\.1:0,.*proxy.*: not a "
                         r"trusted PROXY header source")
        # Trusted: the listener's own from= list, and the global list for the other.
        with connect_proxied(srv.ports[0], ctx, hdr) as s:
            s.sendall(b"!peer")
            assert read_line(s).strip() == "203.0.113.9:40000"
        raw = socket.create_connection(("127.0.0.1", srv.ports[1]), timeout=10 * SLOW,
                                       source_address=("127.0.0.3", 0))
        raw.sendall(hdr + b"!peer")
        assert read_line(raw).strip() == "203.0.113.9:40000"
        raw.close()
        st = stats_via_proxy(srv, ctx)
        assert st["proxy_untrusted"] == 2 and st["proxy_invalid"] == 0, st
    finally:
        assert srv.stop() == 0
    # Without a trusted list, a proxy listener is a configuration error that says what to do.
    r = subprocess.run([ECHO, "--listen", "127.0.0.1:0,plain,proxy"], capture_output=True,
                       text=True, timeout=10 * SLOW)
    assert r.returncode != 0 and "proxy-from CIDR" in r.stderr and "from=" in r.stderr, r


def connect_proxied(port, ctx, hdr):
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(hdr)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def stats_via_proxy(srv, ctx):
    with connect_proxied(srv.port, ctx, b"PROXY UNKNOWN\r\n") as s:
        s.sendall(b"!stats")
        line = read_line(s)
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split())}


@test
def check_mode_and_config_file(c):
    conf = f"{TMP}/echo.conf"
    with open(conf, "w") as f:
        f.write(f"# the echo server\nlisten 127.0.0.1:0\ncert {c['localhost'][0]}\n"
                f"key {c['localhost'][1]}\nhandshake-timeout 5s\n")
    r = subprocess.run([ECHO, "--check", "--config", conf], capture_output=True, text=True)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr
    with open(conf, "a") as f:
        f.write("idle-timeout forever\n")
    r = subprocess.run([ECHO, "--check", "--config", conf], capture_output=True, text=True)
    assert r.returncode == 2 and f"{conf}:6: idle-timeout forever" in r.stderr, r.stderr
    r = subprocess.run([ECHO, "--check", "--listen", "127.0.0.1:0", "--cert", c["expired"][0],
                        "--key", c["expired"][1]], capture_output=True, text=True)
    assert r.returncode == 1 and "expired" in r.stdout, r.stdout
    r = subprocess.run([ECHO, "--listen", "127.0.0.1:0", "--cert", f"{TMP}/missing.pem",
                        "--key", c["localhost"][1]], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "missing.pem" in r.stderr, r.stderr
    r = subprocess.run([ECHO, "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "--bogus" in r.stderr and "--help" in r.stderr
    # A port in use (by a socket without SO_REUSEPORT) is named.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    r = subprocess.run([ECHO, "--listen", f"127.0.0.1:{port},plain"], capture_output=True,
                       text=True, timeout=10)
    holder.close()
    assert r.returncode == 1 and f"127.0.0.1:{port}" in r.stderr and "in use" in r.stderr, r.stderr


@test
def sigusr1_reopens_the_log(c):
    log = f"{TMP}/rotate.log"
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], log=log)
    try:
        os.rename(log, log + ".1")
        srv.signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(log), what="a new log file")
        srv.wait_log(r"log reopened")
    finally:
        assert srv.stop() == 0


@test
def plain_and_tls_listeners_and_ipv6(c):
    have_v6 = socket.has_ipv6
    args = ["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0,plain",
            "--cert", c["localhost"][0], "--key", c["localhost"][1]]
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        have_v6 = False
    if have_v6:
        args += ["--listen", "[::1]:0"]
    srv = Server(*args, listens=3 if have_v6 else 2)
    try:
        ctx = client_ctx(c["ca"][0])
        with connect(srv.ports[0], ctx) as s:
            echo_once(s)
        with socket.create_connection(("127.0.0.1", srv.ports[1])) as p:
            echo_once(p, b"plain text")
        if have_v6:
            raw = socket.create_connection(("::1", srv.ports[2]))
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"!peer")
                assert read_line(s).startswith("[::1]:")
    finally:
        assert srv.stop() == 0


@test
def privileges_dropped_after_binding(c):
    if os.geteuid() != 0:
        print("  (not root: skipped)")
        return
    # Keys readable only by root: loaded before the switch to nobody.
    key = f"{TMP}/root-only.key"
    shutil.copy(c["localhost"][1], key)
    os.chmod(key, 0o600)
    os.chmod(TMP, 0o755)
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key", key,
                 "--user", "nobody", log=f"/tmp/tlsloop-priv-{os.getpid()}.log")
    try:
        with open(f"/proc/{srv.proc.pid}/status") as f:
            uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
        import pwd
        nobody = pwd.getpwnam("nobody").pw_uid
        assert all(int(u) == nobody for u in uids), uids
        with connect(srv.port, client_ctx(c["ca"][0])) as s:
            echo_once(s)
        # A reload cannot read the key any more: the old one stays, and the log says why.
        srv.signal(signal.SIGHUP)
        srv.wait_log(r"reload failed, keeping the running configuration: .*root-only\.key")
        with connect(srv.port, client_ctx(c["ca"][0])) as s:
            echo_once(s)
    finally:
        assert srv.stop() == 0
        os.unlink(srv.log)


def thread_slices(pid):
    """The scheduler's slice of each of a process's threads, from /proc (None: not shown)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/sched") as f:
                m = re.search(r"^se\.slice\s*:\s*(\d+)", f.read(), re.M)
        except OSError:
            continue
        if m:
            out.append(int(m.group(1)))
    return out or None


@test
def loop_threads_ask_for_a_short_slice(c):
    """Each worker's loop thread runs with the configured slice (Linux 6.12+), the others keep the
    kernel's; on an older kernel the server says so in its log and runs on."""
    srv = Server("--listen", "127.0.0.1:0", "--cert", c["localhost"][0], "--key",
                 c["localhost"][1], "--workers", "2", "--loop-slice", "300us",
                 "--log-level", "info")
    try:
        ctx = client_ctx(c["ca"][0])
        with connect(srv.port, ctx) as s:   # both loops have started by the time one answers
            echo_once(s)
        slices = thread_slices(srv.proc.pid)
        if slices is None or "loop-slice:" in srv.log_text():
            print(f"  no per-thread slice here: {srv.log_text()[-300:]!r}")
            assert "loop-slice:" in srv.log_text() or slices is None
            return
        wait_for(lambda: thread_slices(srv.proc.pid).count(300000) == 2, what="two 300us loops")
        assert len(thread_slices(srv.proc.pid)) > 2   # main and task threads keep their own
        assert sorted(set(thread_slices(srv.proc.pid)))[-1] != 300000
    finally:
        assert srv.stop() == 0


def main():
    global TMP
    with tempfile.TemporaryDirectory() as tmp:
        TMP = setup(tmp)
        c = make_certs("localhost", "renewed", "expired")
        tests = [sighup_new_certificate_during_transfer, sigterm_drains,
                 proxy_protocol_gives_the_client_address, proxy_header_only_from_trusted_sources,
                 check_mode_and_config_file, sigusr1_reopens_the_log,
                 plain_and_tls_listeners_and_ipv6, privileges_dropped_after_binding,
                 loop_threads_ask_for_a_short_slice]
        run_selected(tests, c)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
