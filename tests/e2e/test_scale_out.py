#!/usr/bin/env python3
"""test_scale_out.py - several tlsloop serve instances as one service (docs/scale-out.md).

- health_endpoints_and_drain_grace: /health and /ready on the metrics listener answer 200, then
  503 "draining" from SIGTERM on while the listeners still accept (drain-grace), then the
  listeners close.
- upgrade_keeps_the_backlog: connections waiting in the kernel's accept queue of a server that
  cannot accept them (max-conns reached) are served by the new process SIGUSR2 started: the queue
  goes with the socket.
- a_failed_upgrade_leaves_the_old_one_serving: the new process cannot start; the old one says
  why and serves on; a second SIGUSR2 once the cause is gone upgrades.
- sigusr2_upgrade_under_load: keep-alive and handshake load on one instance, SIGUSR2: the old
  pid drains and exits 0, the new pid serves, not one failed request or reset.
- upgrade_socket_takeover_by_hand: with upgrade-socket PATH, a process started by hand with the
  same options takes over (twice); one with other listeners is refused.
- socket_activation_and_sd_notify: a launcher that does what systemd does (LISTEN_FDS,
  LISTEN_PID, LISTEN_FDNAMES, the sockets at 3 and 4) and a NOTIFY_SOCKET the test reads:
  READY=1, RELOADING=1 with MONOTONIC_USEC then READY=1 on SIGHUP, STOPPING=1 on SIGTERM.
- systemd_socket_activate: the same with systemd's own systemd-socket-activate, which starts
  tlsloop on the first connection (answered from the queue).
- three_instances_behind_haproxy: three instances on 127.0.0.2, .3 and .4 sharing a ticket key
  file, HAProxy in TCP mode (round-robin, health checks on /health) in front: a client that
  reconnects N times resumes >= 99% of its TLS 1.3 sessions across instances (and N/5 TLS 1.2
  reconnects with tickets); then under
  keep-alive and handshake load one instance is upgraded by SIGUSR2 and another (socket-activated)
  restarted as systemd would: zero failed requests, zero resets.
- three_instances_session_store_and_rotation: the same three behind HAProxy with one memcached
  (started here on an ephemeral port, stopped by pid) given to all with --session-store, and a
  key file made by `tlsloop ticket-keys new`: a TLS 1.3 client (tickets) and a TLS 1.2 client
  asking for no ticket (session IDs, through the store) reconnect N times, each connection on
  another instance than the client's previous one, while `ticket-keys rotate` runs twice: >= 99%
  of each resume, the servers' ticket counters show no ticket from the TLS 1.2 client. Then
  memcached is SIGKILLed mid-run: full handshakes, p95 < 50 ms; started again on its port:
  resumption returns. SCALE_OUT_NO_STORE=1 (by hand) runs it without the store: it must fail.

Counts are small in make test; SOAK=1 (make soak) runs 1,000 reconnects and longer load.
A keep-alive connection the server closes between two requests (as every HTTP/1.1 server may, and
does when it drains) is reconnected and the request sent again, as HTTP clients do for a request
that got no byte of answer (RFC 9112 section 9.3.1); those are counted and printed apart, never as
failures. TLS 1.2 session IDs across instances need the shared session store (docs/session-store.md).
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, fail, run_selected, summary, test, wait_for  # noqa: E402
import e2e_serve  # noqa: E402
from e2e_serve import BIN, make_root, setup  # noqa: E402
from e2e_store import Store  # noqa: E402

SOAK = os.environ.get("SOAK") == "1"
TMP = STATE = CA = None
RECONNECTS = 1000 if SOAK else 150
LOAD_SECONDS = 20 if SOAK else 3


# ---- processes -------------------------------------------------------------------------------

def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_pid_gone(pid, timeout):
    end = time.monotonic() + timeout * SLOW
    while time.monotonic() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def stop_pid(pid, timeout=20):
    """SIGTERM a process we did not start ourselves (a successor), wait for it to go."""
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        if not wait_pid_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"pid {pid} did not exit after SIGTERM")


def log_text(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_log(path, pattern, timeout=10, start=0):
    """The first match of pattern in the log from offset start on, once it is there."""
    end = time.monotonic() + timeout * SLOW
    while time.monotonic() < end:
        m = re.search(pattern, log_text(path)[start:])
        if m:
            return m
        time.sleep(0.02)
    raise AssertionError(f"no line matching {pattern!r} in {path}:\n{log_text(path)[-3000:]}")


class Instance:
    """tlsloop serve on addr (an HTTPS listener and a metrics listener on ephemeral ports)."""

    def __init__(self, addr, *args, root=None, env=None, pass_fds=(), cmd_prefix=(), ports=None):
        self.addr = addr
        self.log = f"{TMP}/serve-{addr}-{time.monotonic_ns()}.log"
        https, metrics = ports or (0, 0)
        self.args = ["--listen", f"{addr}:{https}", "--metrics-listen", f"{addr}:{metrics}",
                     "--state-dir", STATE, "--log", self.log, "--workers", "2",
                     "--root", root, *args]
        self.proc = subprocess.Popen(list(cmd_prefix) + [BIN, "serve"] + self.args,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace", env=env, pass_fds=pass_fds)
        self.out = []
        self.https = self.metrics = None
        end = time.monotonic() + 20 * SLOW
        while (self.https is None or self.metrics is None) and time.monotonic() < end:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"tlsloop serve did not start: {self.proc.stderr.read()}\n"
                                   f"{log_text(self.log)}")
            self.out.append(line)
            m = re.search(r"listening on https://localhost:(\d+)/", line)
            if m:
                self.https = int(m.group(1))
            m = re.search(r"metrics on http://[^ ]+:(\d+)/", line)
            if m:
                self.metrics = int(m.group(1))
        threading.Thread(target=lambda: [self.out.append(l) for l in self.proc.stdout],
                         daemon=True).start()
        wait_log(self.log, r"listening on")
        self.pid = self.proc.pid
        self.successors = []   # pids SIGUSR2 started, stopped with the instance whatever happens

    def health(self, path="/health"):
        return http_get(self.addr, self.metrics, path)

    def upgrade(self):
        """SIGUSR2; returns the new pid once it serves and the old one has exited."""
        old = self.pid
        before = len(log_text(self.log))
        os.kill(old, signal.SIGUSR2)
        m = wait_log(self.log, rf"SIGUSR2: started \S+ as pid (\d+)", start=before)
        new = int(m.group(1))
        self.successors.append(new)
        wait_log(self.log, rf"upgrade: pid {new} serves our listening sockets: draining",
                 start=before)
        if not wait_pid_gone(old, 20):
            raise AssertionError(f"the old pid {old} did not exit after the hand-off")
        assert self.proc.wait(5) == 0, f"the old process exited with {self.proc.returncode}"
        wait_log(self.log, r"takeover: serving", start=before)
        self.pid = new
        return new

    def stop(self):
        """Stop the instance (the process started here, or its successor); what any of them wrote
        to stderr (a successor inherits the pipe) must hold no sanitizer report."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(20 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        for pid in reversed(self.successors):
            stop_pid(pid)
        err = self.proc.stderr.read()   # every writer has gone: read to the end
        assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]
        assert rc == 0, f"tlsloop serve exited with {rc}: {err[-2000:]}"
        return rc


def http_get(addr, port, path):
    """A plain HTTP/1.1 GET: (status, body), or (None, error) when it could not connect."""
    try:
        with socket.create_connection((addr, port), timeout=5 * SLOW) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()
    except OSError as e:
        return None, str(e)


def free_port(addr="127.0.0.1"):
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def tls_ctx(version=ssl.TLSVersion.TLSv1_3):
    c = ssl.create_default_context(cafile=CA)
    c.minimum_version = c.maximum_version = version
    return c


def reconnects(addr, port, n, version=ssl.TLSVersion.TLSv1_3):
    """n connections one after another, each offering the previous one's session; how many of
    the n-1 that could resume did."""
    ctx, session, resumed = tls_ctx(version), None, 0
    for i in range(n):
        raw = socket.create_connection((addr, port), timeout=10 * SLOW)
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            if i and s.session_reused:
                resumed += 1
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
            assert Load._response(s, b"")[0] == 200
            session = s.session
    return resumed


# ---- the load client -------------------------------------------------------------------------

class Load:
    """Keep-alive and handshake clients against addr:port until stopped, counting requests,
    resumptions, failures and resets. A keep-alive connection that ends before any byte of the
    next answer is reconnected and the request sent again (counted as `resent`)."""

    def __init__(self, addr, port, keepalive=3, handshakes=2):
        self.addr, self.port = addr, port
        self.ctx = tls_ctx()
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.n = {"requests": 0, "handshakes": 0, "resumed": 0, "resent": 0, "failed": 0,
                  "resets": 0}
        self.errors = []
        self.threads = [threading.Thread(target=self._keepalive, daemon=True)
                        for _ in range(keepalive)]
        self.threads += [threading.Thread(target=self._handshakes, daemon=True)
                         for _ in range(handshakes)]
        for t in self.threads:
            t.start()

    def _count(self, key, err=None):
        with self.lock:
            self.n[key] += 1
            if err is not None and len(self.errors) < 20:
                self.errors.append(f"{key}: {err!r}")

    def _connect(self, session=None):
        raw = socket.create_connection((self.addr, self.port), timeout=10 * SLOW)
        try:
            s = self.ctx.wrap_socket(raw, server_hostname="localhost", session=session,
                                     suppress_ragged_eofs=False)
        except BaseException:
            raw.close()
            raise
        return s

    @staticmethod
    def _response(s, buf):
        """One response off s; (status, rest of the buffer). EOFError when the stream ends
        before a byte of it came."""
        while b"\r\n\r\n" not in buf:
            try:
                chunk = s.recv(65536)
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                chunk = b""
            if not chunk:
                if buf:
                    raise ConnectionError(f"the stream ended inside an answer head: {buf[:80]!r}")
                raise EOFError()
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        status = int(head.split()[1])
        m = re.search(rb"(?i)content-length: *(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the stream ended inside an answer body")
            buf += chunk
        return status, buf[n:], head

    def _keepalive(self):
        s, used = None, 0
        req = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"
        while not self.stop_ev.is_set():
            try:
                if s is None:
                    s, used = self._connect(), 0
                s.sendall(req)
                try:
                    status, rest, head = self._response(s, b"")
                except EOFError:
                    if used == 0:
                        raise ConnectionError("a new connection ended before its first answer")
                    self._count("resent")
                    s.close()
                    s = None
                    continue
                used += 1
                if status != 200:
                    self._count("failed", f"status {status}")
                else:
                    self._count("requests")
                if re.search(rb"(?i)connection: *close", head):
                    s.close()
                    s = None
            except ConnectionResetError as e:
                self._count("resets", e)
                s = None
            except Exception as e:   # noqa: BLE001 - every other way counts as a failure
                self._count("failed", e)
                if s:
                    s.close()
                s = None
        if s:
            s.close()

    def _handshakes(self):
        session = None
        while not self.stop_ev.is_set():
            try:
                with self._connect(session) as s:
                    resumed = s.session_reused
                    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n"
                              b"Connection: close\r\n\r\n")
                    status, _, _ = self._response(s, b"")
                    session = s.session
                self._count("handshakes")
                if resumed:
                    self._count("resumed")
                if status != 200:
                    self._count("failed", f"status {status}")
                else:
                    self._count("requests")
            except ConnectionResetError as e:
                self._count("resets", e)
            except Exception as e:   # noqa: BLE001
                self._count("failed", e)

    def finish(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30 * SLOW)
        return dict(self.n)

    def check(self, what):
        n = self.finish()
        print(f"  {what}: {n}", flush=True)
        assert n["failed"] == 0 and n["resets"] == 0, (n, self.errors)
        assert n["requests"] > 20, n
        return n


# ---- tests -----------------------------------------------------------------------------------

@test
def health_endpoints_and_drain_grace(root):
    inst = Instance("127.0.0.1", "--drain-grace", "1s", root=root)
    try:
        assert inst.health() == (200, "ok\n"), inst.health()
        assert inst.health("/ready") == (200, "ready\n"), inst.health("/ready")
        assert inst.health("/nothing")[0] == 404
        inst.proc.send_signal(signal.SIGTERM)
        wait_log(inst.log, r"drain-grace: /health answers 503")
        assert inst.health() == (503, "draining\n"), inst.health()
        assert inst.health("/ready") == (503, "draining\n")
        # The public listener still takes connections during the grace.
        c = tls_ctx()
        with c.wrap_socket(socket.create_connection(("127.0.0.1", inst.https), timeout=5),
                           server_hostname="localhost") as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n")
            assert Load._response(s, b"")[0] == 200
        assert inst.proc.wait(20 * SLOW) == 0
        assert http_get("127.0.0.1", inst.metrics, "/health")[0] is None   # closed by now
    finally:
        inst.stop()


@test
def upgrade_keeps_the_backlog(root):
    """A server at max-conns leaves new connections in the accept queue; SIGUSR2's successor
    accepts and answers every one of them."""
    inst = Instance("127.0.0.1", "--max-conns", "1", "--close-timeout", "1s", root=root)
    held = queued = None
    try:
        c = tls_ctx()
        held = c.wrap_socket(socket.create_connection(("127.0.0.1", inst.https), timeout=5),
                             server_hostname="localhost")
        held.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\n\r\n")
        assert Load._response(held, b"")[0] == 200
        # These complete TCP's handshake in the kernel and wait there: nobody accepts them.
        queued = [socket.create_connection(("127.0.0.1", inst.https), timeout=20 * SLOW)
                  for _ in range(8)]
        time.sleep(0.3)
        # Their clients wait for the TLS handshake: from whichever process accepts them (the old
        # one serves a socket its listener had taken from the kernel already, while it drains).
        got = []

        def one(raw):
            try:
                with c.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
                    got.append(Load._response(s, b"")[0])
            except Exception as e:   # noqa: BLE001
                got.append(repr(e))
        ts = [threading.Thread(target=one, args=(raw,)) for raw in queued]
        for t in ts:
            t.start()
        time.sleep(0.3)
        assert got == [], got   # nobody served them yet: the server is at max-conns
        inst.upgrade()
        for t in ts:
            t.join(60 * SLOW)
        assert got == [200] * len(queued), got
        queued = None
    finally:
        if held:
            held.close()
        inst.stop()


@test
def a_failed_upgrade_leaves_the_old_one_serving(root):
    """The new process cannot start (its --root is gone): the old one logs why and serves on;
    a second SIGUSR2 once the cause is fixed upgrades."""
    www = f"{TMP}/www-failing"
    shutil.copytree(root, www)
    inst = Instance("127.0.0.1", root=www)
    try:
        os.rename(www, www + ".away")
        os.kill(inst.pid, signal.SIGUSR2)
        wait_log(inst.log, r"upgrade: the new process \(pid \d+\) exited with 2 before it "
                           r"served .*still serving")
        assert inst.proc.poll() is None and inst.health() == (200, "ok\n")
        os.rename(www + ".away", www)
        load = Load("127.0.0.1", inst.https, keepalive=1, handshakes=1)
        time.sleep(0.2)
        inst.upgrade()
        time.sleep(0.2)
        load.check("after a failed upgrade")
    finally:
        inst.stop()


@test
def sigusr2_upgrade_under_load(root):
    inst = Instance("127.0.0.1", root=root)
    try:
        load = Load("127.0.0.1", inst.https)
        time.sleep(0.7)
        old = inst.pid
        new = inst.upgrade()
        assert new != old and pid_alive(new)
        time.sleep(0.7)
        n = load.check("upgrade alone")
        assert n["handshakes"] > 5, n
        assert inst.health() == (200, "ok\n")
        # Once more, from the new process (its own abstract socket).
        load = Load("127.0.0.1", inst.https)
        time.sleep(0.3)
        inst.upgrade()
        time.sleep(0.3)
        load.check("second upgrade")
        # And under tlsloop bench, keep-alive then reconnecting: its error counts stay empty.
        for mode in ([], ["--resume"]):
            secs = LOAD_SECONDS if SOAK else 2
            bench = subprocess.Popen([BIN, "bench", "--cacert", CA, "-c", "8", "-d", f"{secs}s",
                                      "--warmup", "0", "--json", *mode,
                                      f"https://localhost:{inst.https}/index.html"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(secs / 2)
            inst.upgrade()
            out, err = bench.communicate(timeout=60 * SLOW)
            rep = json.loads(out)
            print(f"  tlsloop bench {' '.join(mode) or 'keep-alive'}: {rep['requests']} requests, "
                  f"handshakes {rep['handshakes']['full']} full {rep['handshakes']['resumed']} "
                  f"resumed, errors {rep['errors']}", flush=True)
            assert bench.returncode == 0 and rep["errors_total"] == 0, (rep["errors"], err)
            assert rep["requests"] > 100, rep
    finally:
        inst.stop()


@test
def upgrade_socket_takeover_by_hand(root):
    """With upgrade-socket PATH a second process started with the same options takes over; its
    own successor finds it on the same PATH; one with other listeners is refused and the running
    one goes on serving."""
    path = f"{TMP}/upgrade.sock"
    first = Instance("127.0.0.1", "--upgrade-socket", path, root=root)
    insts = [first]
    try:
        for workers in (2, 3):   # more workers than the old one: the extra one shares a socket
            old = insts[-1]
            load = Load("127.0.0.1", old.https, keepalive=2, handshakes=1)
            time.sleep(0.3)
            new = Instance("127.0.0.1", "--upgrade-socket", path, "--workers", str(workers),
                           root=root, ports=(old.https, old.metrics))
            insts.append(new)
            wait_log(new.log, r"takeover: serving")
            assert old.proc.wait(20 * SLOW) == 0
            time.sleep(0.3)
            load.check("takeover by hand")
            assert os.path.exists(path)
        # Other listeners: refused, and the running one is untouched.
        bad = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--state-dir", STATE,
                              "--root", root, "--workers", "2", "--upgrade-socket", path],
                             capture_output=True, text=True, timeout=20 * SLOW)
        assert bad.returncode != 0 and "start the new server with the same listen options" in \
            bad.stderr, (bad.returncode, bad.stderr)
        last = insts[-1]
        assert last.proc.poll() is None and last.health() == (200, "ok\n")
        # Fewer workers than the running one (3): a socket's queue would have nobody.
        few = subprocess.run([BIN, "serve", *last.args, "--workers", "2"], capture_output=True,
                             text=True, timeout=20 * SLOW)
        assert few.returncode != 0 and "at least as many --workers" in few.stderr, few.stderr
        assert last.proc.poll() is None and last.health() == (200, "ok\n")
        wait_log(last.log, r"went away before it served.*still serving")
    finally:
        for x in insts:
            x.stop()
    assert not os.path.exists(path), "the last server left its upgrade socket behind"


LAUNCHER = r"""
import fcntl, os, sys
# What systemd does for a socket-activated service: the sockets at 3.., LISTEN_PID our own pid.
n = int(sys.argv[1]); names = sys.argv[2]; fds = [int(x) for x in sys.argv[3:3 + n]]
high = [fcntl.fcntl(f, fcntl.F_DUPFD, 100) for f in fds]
for i, f in enumerate(high):
    os.dup2(f, 3 + i, inheritable=True)
for f in high + [f for f in fds if f >= 3 + n]:   # (high ones are >= 100)
    os.close(f)
os.environ.update(LISTEN_FDS=str(n), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=names)
os.execv(sys.argv[3 + n], sys.argv[3 + n:])
"""


class Activated:
    """systemd's part: the listening sockets, held across restarts of the service, and the
    NOTIFY_SOCKET it reads."""

    def __init__(self, addr, extra=None):
        self.addr = addr
        self.socks = []
        for a in [addr, addr] + ([extra] if extra else []):   # HTTPS, metrics, one nobody wants
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((a, 0))
            s.listen(4096)
            self.socks.append(s)
        self.ports = [s.getsockname()[1] for s in self.socks[:2]]
        self.notify_path = f"{TMP}/notify-{addr}-{time.monotonic_ns()}"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(0.1)
        self.messages = []

    def start(self, root, *args):
        fds = [s.fileno() for s in self.socks]
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path)
        names = ":".join(["https", "metrics", "extra"][:len(fds)])
        prefix = [sys.executable, "-c", LAUNCHER, str(len(fds)), names, *map(str, fds)]
        return Instance(self.addr, *args, root=root, env=env, pass_fds=fds, cmd_prefix=prefix,
                        ports=self.ports)

    def read_notify(self, want, timeout=10):
        """Messages until one has the line want."""
        end = time.monotonic() + timeout * SLOW
        while time.monotonic() < end:
            try:
                m = self.notify.recv(4096).decode()
            except socket.timeout:
                continue
            self.messages.append(m)
            if want in m.split("\n"):
                return m
        raise AssertionError(f"no {want} from the service; got {self.messages}")

    def read_pending(self):
        while True:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except socket.timeout:
                return

    def close(self):
        for s in self.socks:
            s.close()
        self.notify.close()


@test
def socket_activation_and_sd_notify(root):
    act = Activated("127.0.0.1", extra="127.0.0.9")
    inst = None
    try:
        # A plain listener systemd has no socket for: bound by tlsloop itself.
        inst = act.start(root, "--listen", "127.0.0.1:0,plain")
        assert (inst.https, inst.metrics) == tuple(act.ports), (inst.https, inst.metrics, act.ports)
        ready = act.read_notify("READY=1")
        assert f"MAINPID={inst.pid}" in ready and "STATUS=serving" in ready, ready
        text = log_text(inst.log)
        assert "socket activation: 3 sockets from systemd" in text, text
        assert re.search(r"fd 5 extra on 127\.0\.0\.9:\d+ matches no listen option", text), text
        plain = int(re.search(r"listening on http://localhost:(\d+)/", "".join(inst.out)).group(1))
        assert plain not in act.ports and http_get("127.0.0.1", plain, "/index.html")[0] == 200
        st, body = inst.health()
        assert st == 200, (st, body)
        inst.proc.send_signal(signal.SIGHUP)
        rel = act.read_notify("RELOADING=1")
        assert re.search(r"^MONOTONIC_USEC=\d+$", rel, re.M), rel
        assert "READY=1" in act.read_notify("READY=1")
        # A binary upgrade of a socket-activated service: systemd hears the new MAINPID from the
        # old process, READY=1 from the new one, and no STOPPING=1 (the service goes on).
        act.messages.clear()
        new = inst.upgrade()
        act.read_notify(f"STATUS=handed over to pid {new}, draining")
        act.read_pending()   # the old one has exited: all it said is here
        if not any("READY=1" in m and f"MAINPID={new}" in m for m in act.messages):
            act.read_notify("READY=1")
        msgs = "\n".join(act.messages)
        assert f"READY=1\nMAINPID={new}" in msgs and "STOPPING=1" not in msgs, msgs
        assert st == 200 and inst.health()[0] == 200
        os.kill(new, signal.SIGTERM)
        act.read_notify("STOPPING=1")
        assert wait_pid_gone(new, 20)
        # The sockets stay with "systemd": a connection made now waits in the queue, and the
        # next start answers it.
        raw = socket.create_connection(("127.0.0.1", act.ports[0]), timeout=20 * SLOW)
        inst = act.start(root)
        with tls_ctx().wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
            assert Load._response(s, b"")[0] == 200
    finally:
        if inst:
            inst.stop()
        act.close()


@test
def systemd_socket_activate(root):
    """systemd's own launcher (systemd-socket-activate, from the systemd package) holds the
    sockets and starts tlsloop on the first connection, which waits in the queue meanwhile."""
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        raise AssertionError("systemd-socket-activate is not installed (package systemd)")
    https, metrics = free_port(), free_port()
    log = f"{TMP}/socket-activate.log"
    p = subprocess.Popen([tool, "-l", f"127.0.0.1:{https}", "-l", f"127.0.0.1:{metrics}",
                          "--fdname=https:metrics", BIN, "serve", "--listen", f"127.0.0.1:{https}",
                          "--metrics-listen", f"127.0.0.1:{metrics}", "--state-dir", STATE,
                          "--root", root, "--log", log], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(2):
            assert "Listening on" in p.stderr.readline()
        assert http_get("127.0.0.1", metrics, "/health") == (200, "ok\n")   # starts it
        assert "socket activation: 2 sockets from systemd" in log_text(log), log_text(log)
        with tls_ctx().wrap_socket(socket.create_connection(("127.0.0.1", https), timeout=10),
                                   server_hostname="localhost") as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
            assert Load._response(s, b"")[0] == 200
    finally:
        p.terminate()
        assert p.wait(20 * SLOW) == 0, p.stderr.read()


def haproxy_config(port, instances):
    servers = "\n".join(
        f"    server s{i} {x.addr}:{x.https} check port {x.metrics} inter 100ms fall 1 rise 1"
        for i, x in enumerate(instances))
    return f"""global
    maxconn 4000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 0
frontend tls
    bind 127.0.0.1:{port}
    default_backend tlsloop
backend tlsloop
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
{servers}
"""


@test
def three_instances_behind_haproxy(root):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(haproxy):
        raise AssertionError("haproxy is not installed (scripts/deps.sh installs it)")
    key = f"{TMP}/ticket.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, os.urandom(80))
    os.close(fd)
    common = ["--ticket-key-file", key]
    a = Instance("127.0.0.2", *common, root=root)                 # upgraded by SIGUSR2
    act = Activated("127.0.0.3")
    b = act.start(root, *common, "--drain-grace", "1s")      # restarted by "systemd"
    c = Instance("127.0.0.4", *common, root=root)
    insts = [a, b, c]
    port = free_port()
    cfg = f"{TMP}/haproxy.cfg"
    with open(cfg, "w") as f:
        f.write(haproxy_config(port, insts))
    hap = subprocess.Popen([haproxy, "-f", cfg, "-db"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 10 * SLOW
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.5)   # the first health checks
        # Resumption across instances: each reconnect lands on the next instance.
        resumed = reconnects("127.0.0.1", port, RECONNECTS)
        served = []
        for x in insts:
            st, body = http_get(x.addr, x.metrics, "/metrics")
            m = re.search(r"^tlsloop_handshakes_total\{[^}]*kind=\"resumed\"[^}]*\} (\d+)", body,
                          re.M)
            served.append(int(m.group(1)) if m else body[:0])
        rate = resumed / (RECONNECTS - 1)
        print(f"  {RECONNECTS} reconnects through HAProxy: {resumed} resumed ({rate:.1%}); "
              f"resumed per instance {served}", flush=True)
        assert rate >= 0.99, (resumed, RECONNECTS)
        # TLS 1.2 tickets too (the same key file); session IDs need the shared store.
        n12 = RECONNECTS // 5
        r12 = reconnects("127.0.0.1", port, n12, ssl.TLSVersion.TLSv1_2)
        print(f"  {n12} TLS 1.2 reconnects (tickets): {r12} resumed", flush=True)
        assert r12 / (n12 - 1) >= 0.99, (r12, n12)
        # The switch, under load.
        load = Load("127.0.0.1", port, keepalive=4, handshakes=2)
        time.sleep(LOAD_SECONDS / 3)
        a.upgrade()
        time.sleep(LOAD_SECONDS / 3)
        b.proc.send_signal(signal.SIGTERM)          # systemctl restart: stop ...
        act.read_notify("STOPPING=1")
        time.sleep(0.15)
        st = b.health()
        assert b.proc.wait(20 * SLOW) == 0
        b = insts[1] = act.start(root, *common, "--drain-grace", "1s")   # ... and start
        time.sleep(LOAD_SECONDS / 3 + 0.5)
        n = load.check("three instances, one upgraded, one restarted")
        assert st == (503, "draining\n"), st
        assert n["resumed"] > 0, n
    finally:
        hap.terminate()
        try:
            hap.wait(10)
        except subprocess.TimeoutExpired:
            hap.kill()
        for x in insts:
            try:
                x.stop()
            except Exception as e:   # noqa: BLE001
                print(f"  stopping {x.addr}: {e}")
        act.close()


# ---- three instances, one session store, two key rotations -----------------------------------

def metrics(x):
    """An instance's counters: {(family, event): value} for the ticket and store families."""
    st, body = http_get(x.addr, x.metrics, "/metrics")
    assert st == 200, (st, body)
    return {(f, e): int(v) for f, e, v in re.findall(
        r'^tlsloop_(tickets_total|session_store_total)\{event="(\w+)"\} (\d+)', body, re.M)}


def total(insts, family, *events):
    return sum(metrics(x).get((family, e), 0) for x in insts for e in events)


def start_haproxy(insts):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(haproxy):
        raise AssertionError("haproxy is not installed (scripts/deps.sh installs it)")
    port = free_port()
    cfg = f"{TMP}/haproxy-{port}.cfg"
    with open(cfg, "w") as f:
        f.write(haproxy_config(port, insts))
    hap = subprocess.Popen([haproxy, "-f", cfg, "-db"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: http_ok("127.0.0.1", port), 10, "HAProxy accepting")
    time.sleep(0.5)   # the first health checks: every server up
    return hap, port


def http_ok(addr, port):
    try:
        socket.create_connection((addr, port), timeout=1).close()
        return True
    except OSError:
        return False


def stop_haproxy(hap):
    hap.terminate()
    try:
        hap.wait(10)
    except subprocess.TimeoutExpired:
        hap.kill()
        hap.wait()


class Client:
    """One client through the balancer, for one kind of resumption:
    - tls13: TLS 1.3, each connection offers the ticket the previous one got;
    - tls12-id: TLS 1.2 asking for no ticket (OP_NO_TICKET): a session ID only. A TLS 1.2
      session keeps its ID when it resumes, so an instance that saw it once resumes it from its
      own cache; to make every resumption one through the store, the client starts a new
      session every third connection and offers it to the next two (other instances).
    Every handshake is timed (from the ClientHello to the end of the handshake, on the client)."""

    def __init__(self, kind, port):
        self.kind, self.port = kind, port
        self.ctx = tls_ctx(ssl.TLSVersion.TLSv1_3 if kind == "tls13" else ssl.TLSVersion.TLSv1_2)
        if kind == "tls12-id":
            self.ctx.options |= ssl.OP_NO_TICKET
        self.session, self.chain = None, 0
        self.tried = self.resumed = 0
        self.times = []

    def connect(self):
        offer = self.session
        if self.kind == "tls12-id" and self.chain == 3:
            offer, self.chain = None, 0
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
        t0 = time.monotonic()
        s = self.ctx.wrap_socket(raw, server_hostname="localhost", session=offer,
                                 do_handshake_on_connect=False)
        with s:
            s.do_handshake()
            self.times.append(time.monotonic() - t0)
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
            assert Load._response(s, b"")[0] == 200   # (TLS 1.3 tickets come after the handshake)
            if self.kind == "tls12-id":
                assert s.version() == "TLSv1.2" and not s.session.has_ticket, \
                    (s.version(), "a ticket in a session that asked for none")
            else:
                assert s.version() == "TLSv1.3" and s.session.has_ticket
            if offer is not None:
                self.tried += 1
                self.resumed += s.session_reused
            self.session = s.session
            self.chain += 1
        return s.session_reused


def key_file_seen(insts, starts):
    """Whether every instance logged that it took the changed key file (after offset starts[i])."""
    return all(re.search(r"ticket key file \S+ changed: \d+ keys", log_text(x.log)[start:])
               for x, start in zip(insts, starts))


@test
def three_instances_session_store_and_rotation(root):
    """Three instances behind HAProxy (round-robin), one memcached for all (--session-store),
    one ticket key file for all: N reconnects of a TLS 1.3 client (tickets) and N of a TLS 1.2
    client without tickets (session IDs, through the store), interleaved so that every
    connection of a client lands on another instance than its previous one; the key file rotated
    twice meanwhile: >= 99% of each kind resume. Then memcached is killed (SIGKILL) in the
    middle of TLS 1.2 reconnects: handshakes go on, full, none waiting for the store; started
    again on its port, resumption returns."""
    key = f"{TMP}/store-ticket.keys"
    r = subprocess.run([BIN, "ticket-keys", "new", key], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    store = Store("memcached")
    use_store = os.environ.get("SCALE_OUT_NO_STORE") != "1"   # 1: the control run, by hand
    common = ["--ticket-key-file", key]
    if use_store:
        common += ["--session-store", f"memcached://127.0.0.1:{store.port}"]
    insts, hap = [], None
    try:
        for addr in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            insts.append(Instance(addr, *common, root=root))
        if use_store:
            wait_for(lambda: total(insts, "session_store_total", "connect") == 6, 10,
                     "every worker connected to memcached")
        hap, port = start_haproxy(insts)
        # Part 1: reconnects, the key file rotated twice.
        t13, t12 = Client("tls13", port), Client("tls12-id", port)
        before = {k: total(insts, "tickets_total", k)
                  for k in ("decrypted_current", "decrypted_old")}
        hits0 = total(insts, "session_store_total", "hit")
        # Rotate a third of the way in; again once past two thirds and every instance took the
        # first (the procedure: every host has a file before the next rotation); go on until
        # every instance took the second and 10 reconnects more. Nothing waits: the reconnects
        # run all along.
        rotated, seen, events, starts, t_rotated, i = 0, [], [], None, None, 0
        while True:
            if len(seen) < rotated and key_file_seen(insts, starts):
                seen.append(i)
                events.append(f"every instance took rotation {rotated} before reconnect {i}, "
                              f"{time.monotonic() - t_rotated:.2f} s after it")
            if rotated == 0 and i >= RECONNECTS // 3 or \
                    rotated == 1 and len(seen) == 1 and i >= 2 * RECONNECTS // 3:
                starts = [len(log_text(x.log)) for x in insts]
                r = subprocess.run([BIN, "ticket-keys", "rotate", key], capture_output=True,
                                   text=True)
                assert r.returncode == 0, r.stderr
                t_rotated = time.monotonic()
                rotated += 1
                events.append(f"rotation {rotated} before reconnect {i}")
            if i >= RECONNECTS and len(seen) == 2 and i >= seen[1] + 10:
                break
            assert len(seen) == rotated or time.monotonic() - t_rotated < 10 * SLOW, \
                f"the instances did not all take the changed key file: {events}"
            t13.connect()
            if t12.chain == 3:   # one more: the next new TLS 1.2 session starts on the next
                t13.connect()    # instance (each in turn issues, the other two resume)
            t12.connect()
            i += 1
        decrypted = {k: total(insts, "tickets_total", k) - v for k, v in before.items()}
        hits = total(insts, "session_store_total", "hit") - hits0
        for c in (t13, t12):
            print(f"  figure: {c.kind}: {c.resumed}/{c.tried} resumed through HAProxy "
                  f"({100.0 * c.resumed / c.tried:.1f}%), handshake median "
                  f"{statistics.median(c.times) * 1e3:.2f} ms", flush=True)
        print(f"  figure: {'; '.join(events)}; tickets decrypted {decrypted}, store hits {hits}",
              flush=True)
        per = []
        for x in insts:
            m = metrics(x)
            per.append(f"{x.addr}: tickets issued {m[('tickets_total', 'issued')]}, store "
                       f"lookups {m[('session_store_total', 'lookup')]} hits "
                       f"{m[('session_store_total', 'hit')]} stored "
                       f"{m[('session_store_total', 'stored')]}" if use_store else x.addr)
        print(f"  figure: per instance: {'; '.join(per)}", flush=True)
        assert t13.resumed >= 0.99 * t13.tried, (t13.resumed, t13.tried)
        assert t12.resumed >= 0.99 * t12.tried, (t12.resumed, t12.tried)
        # The server's side of it: the TLS 1.2 client never used a ticket (every ticket the
        # servers opened was a TLS 1.3 one), and each of its resumptions came from the store.
        assert sum(decrypted.values()) == t13.resumed, (decrypted, t13.resumed)
        assert decrypted["decrypted_old"] > 0, "no ticket under a key the rotations replaced"
        assert hits >= t12.resumed, (hits, t12.resumed)
        # Part 2: memcached killed in the middle of reconnects (SIGKILL from another thread, so
        # it can come during a handshake), then started again on the same port.
        n = max(30, RECONNECTS // 5)
        up = Client("tls12-id", port)
        for _ in range(n):
            up.connect()
        down = Client("tls12-id", port)
        killer = threading.Timer(0.05 if not SOAK else 0.2, store.kill)
        killer.start()
        for _ in range(n):
            down.connect()
        while killer.is_alive():   # (a machine fast enough to be done before it)
            down.connect()
        killer.join()
        wait_for(lambda: total(insts, "session_store_total", "disconnect") == 6, 5,
                 "every worker noticed memcached gone")
        after = Client("tls12-id", port)   # wholly after the kill
        for _ in range(n):
            after.connect()
        store = Store("memcached", store.port)
        # The workers reconnect with a backoff of at most 2 s; the client goes on meanwhile.
        gap = Client("tls12-id", port)
        end = time.monotonic() + 10 * SLOW
        while total(insts, "session_store_total", "connect") < 12 and time.monotonic() < end:
            gap.connect()
        assert total(insts, "session_store_total", "connect") == 12, "workers did not reconnect"
        back = Client("tls12-id", port)
        for _ in range(n):
            back.connect()
        for name, c in (("store up", up), ("store killed during these", down),
                        ("store killed", after), ("store back", back)):
            t = c.times
            print(f"  figure: {name}: {len(t)} TLS 1.2 handshakes, median "
                  f"{statistics.median(t) * 1e3:.2f} ms, p95 {pct(t, 0.95):.2f} ms, max "
                  f"{max(t) * 1e3:.2f} ms; {c.resumed}/{c.tried} resumed", flush=True)
        print(f"  figure: while it restarted: {len(gap.times)} handshakes, "
              f"{gap.resumed}/{gap.tried} resumed", flush=True)
        assert up.resumed >= 0.95 * up.tried, (up.resumed, up.tried)
        assert after.resumed == 0, f"{after.resumed} resumed across instances with no store"
        for c in (down, after):
            assert pct(c.times, 0.95) < 50 * SLOW, sorted(c.times)[-5:]
            assert max(c.times) < 0.5 * SLOW, max(c.times)
        assert back.resumed >= 0.95 * back.tried, (back.resumed, back.tried)
    finally:
        if hap:
            stop_haproxy(hap)
        for x in insts:
            try:
                x.stop()
            except Exception as e:   # noqa: BLE001
                print(f"  stopping {x.addr}: {e}")
        store.kill()


def pct(times, q):
    t = sorted(times)
    return t[min(len(t) - 1, int(q * len(t)))] * 1000


def stop_strays(tmp):
    """Whatever process still runs with our temporary directory on its command line (a
    successor a failed test lost track of) is stopped, by pid."""
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if tmp in cmd and "tlsloop" in cmd and "serve" in cmd:
            print(f"  stopping a stray process {d}: {cmd.replace(chr(0), ' ')[:120]}")
            try:
                stop_pid(int(d), 5)
            except Exception as e:   # noqa: BLE001
                print(f"  {e}")


def main():
    global TMP, STATE, CA
    with tempfile.TemporaryDirectory() as tmp:
        TMP, STATE, CA = setup(tmp)
        e2e_serve.TMP = tmp
        root = make_root()
        # The first start makes the CA and the certificate the others share.
        try:
            Instance("127.0.0.1", root=root).stop()
        except Exception as e:   # noqa: BLE001
            fail("first start", e)
            return summary()
        tests = [health_endpoints_and_drain_grace, upgrade_keeps_the_backlog,
                 a_failed_upgrade_leaves_the_old_one_serving, sigusr2_upgrade_under_load,
                 upgrade_socket_takeover_by_hand,
                 socket_activation_and_sd_notify, systemd_socket_activate,
                 three_instances_behind_haproxy, three_instances_session_store_and_rotation]
        try:
            run_selected(tests, root)
        finally:
            stop_strays(tmp)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
