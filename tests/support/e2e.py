"""tests/support/e2e.py - what the e2e scripts in tests/e2e/ share: the @test decorator that runs
a test, prints "ok   name (seconds)" or "FAIL name" with the traceback, and counts; the closing
line "N passed, N failed"; SLOW, the factor by which sanitizer builds stretch time limits.

A script imports it with
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
    from e2e import test, summary, SLOW   (and run_selected, stop_process, rss_kib, file_text,
                                           wait_file_match, wait_for, start_serve, TcpServer)
Each program's own harness is beside it: e2e_serve.py (tlsloop serve), e2e_server.py
(examples/echo_server), e2e_proxy.py (tlsloop proxy).
"""
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback

SLOW = 3 if os.environ.get("TLSLOOP_PHASE") == "asan" else 1   # sanitizers run slower
results = {"passed": 0, "failed": 0}


def test(fn):
    """Run fn(*args) as one test: a raised exception (an assert) fails it, the run goes on."""
    def wrapped(*args):
        t0 = time.monotonic()
        try:
            fn(*args)
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
            results["passed"] += 1
        except Exception:
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc()
            results["failed"] += 1
    wrapped.__name__ = fn.__name__
    return wrapped


def fail(name, why):
    """Count a failure found outside a test function (a server that did not start, say)."""
    print(f"FAIL {name}: {why}", flush=True)
    results["failed"] += 1


def run_selected(tests, *args):
    """Run the tests named on the command line (all without names), each with args."""
    only = sys.argv[1:]
    for t in tests:
        if not only or t.__name__ in only:
            t(*args)


def stop_process(proc, timeout, what="the process"):
    """SIGTERM, then wait timeout seconds (stretched by SLOW); the exit status. Kills and raises
    when it did not exit."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout * SLOW)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{what} did not exit after SIGTERM")


def start_serve(args, scheme="https", timeout=20):
    """Start `tlsloop serve ARGS` (TLSLOOP_BIN) and wait for its first "listening on SCHEME://"
    line; (the process, that listener's port). Its stdout is drained from then on."""
    proc = subprocess.Popen([os.environ.get("TLSLOOP_BIN", "build/tlsloop"), "serve"] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"tlsloop serve did not start: {proc.stderr.read()}")
        m = re.search(rf"listening on {scheme}://localhost:(\d+)/", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, int(m.group(1))
    stop_process(proc, 10, "tlsloop serve")
    raise RuntimeError(f"tlsloop serve printed no {scheme} listening line")


def file_text(path):
    """A file's text, "" while it does not exist yet (a log the process has not opened)."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_file_match(path, pattern, timeout=10):
    """Wait (timeout stretched by SLOW) until the file has a match for pattern; return it."""
    end = time.monotonic() + timeout * SLOW
    while time.monotonic() < end:
        m = re.search(pattern, file_text(path))
        if m:
            return m
        time.sleep(0.02)
    raise AssertionError(f"no line of {path} matching {pattern!r}:\n{file_text(path)[-2000:]}")


def wait_for(cond, timeout=10, what="condition"):
    """Wait (timeout stretched by SLOW) until cond() is true; raise naming what when it is not."""
    end = time.monotonic() + timeout * SLOW
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def rss_kib(pid):
    """Resident memory of a process, KiB."""
    with open(f"/proc/{pid}/status") as f:
        return int(next(x for x in f if x.startswith("VmRSS:")).split()[1])


class TcpServer:
    """A TCP server on 127.0.0.1 (an ephemeral port unless given); each connection runs
    handler(sock) in a thread of its own and is closed after it. accepted counts connections."""

    def __init__(self, handler, port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


def summary():
    """Print the closing line; the exit status for sys.exit."""
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0
