#!/usr/bin/env python3
"""accept_bench.py - what a listener's way of accepting costs per new connection: `tlsloop serve`
on epoll (readiness, accept4) and on io_uring with a multishot accept (the default), a one-shot
accept re-armed per connection (TLSLOOP_IO_ACCEPT=single) and polls with accept4 (=poll), side by
side in one run (docs/design.md, decision 15).

The workload is a new plain-HTTP connection per request (wrk -t1 -c16 with "Connection: close"
on a 13-byte file): no TLS, so accepting is a larger share of the connection's cost than in a
handshake (perf.py's W1/W2 measure those). One worker pinned to CPU 0, wrk on CPU 1, rounds
interleaved (A B C D, B C D A, ...), a fresh server for each run; the figure is the server's CPU
(utime+stime from /proc) per connection, median [min-max] over the rounds, with connections per
second and each round's ratio to uring-poll beside it.
With --syscalls, each server instead runs N connections under strace -f -c, and the system calls
per connection that accepting involves are printed (a count, not a timing: repeatable).

usage: bench/accept_bench.py [--rounds N (9)] [--duration S (2)] [--build DIR] [--syscalls N]
Needs wrk and taskset (and strace for --syscalls). Exit status 0, 1 when a run had errors, 2 when
something needed is missing.
"""
import argparse
import importlib.util
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("svn", os.path.join(HERE, "serve_vs_nginx.py"))
svn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(svn)

# name: (io backend, TLSLOOP_IO_ACCEPT)
WAYS = {"epoll": ("epoll", None), "uring-multishot": ("uring", None),
        "uring-single": ("uring", "single"), "uring-poll": ("uring", "poll")}


def serve_cmd(binary, tmp, name, port):
    io, acc = WAYS[name]
    env = ["env", f"TLSLOOP_IO_ACCEPT={acc}"] if acc else ["env", "-u", "TLSLOOP_IO_ACCEPT"]
    www = f"{tmp}/www"
    os.makedirs(www, exist_ok=True)
    with open(f"{www}/hello.txt", "wb") as f:
        f.write(b"Hello, world\n")
    return env + [binary, "serve", "--workers", "1", "--io", io, "--state-dir", f"{tmp}/state",
                  "--listen", f"127.0.0.1:{port},plain", "--root", www,
                  "--log", f"{tmp}/{name}.log", "--max-conns", "8000"]


def start(cmd, port, pin=True):
    proc = subprocess.Popen((["taskset", "-c", "0"] if pin else []) + cmd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"accept_bench: {' '.join(cmd)} did not start")
            time.sleep(0.05)
    raise SystemExit("accept_bench: a server did not start within 20 s")


def wrk(port, duration):
    r = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", f"-d{duration}s",
                        "-H", "Connection: close", f"http://127.0.0.1:{port}/hello.txt"],
                       capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"(\d+) requests in ([\d.]+)s", r.stdout)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     r.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    if not m:
        raise SystemExit(f"accept_bench: wrk gave no count: {r.stdout[-400:]} {r.stderr[-400:]}")
    # wrk counts a connection the server closed after its answer as a read error: not an error.
    bad = (int(errs.group(1)) + int(errs.group(4)) if errs else 0) + (
        int(non2xx.group(1)) if non2xx else 0)
    return int(m.group(1)), float(m.group(2)), bad


def cpu_run(a, binary, tmp):
    # A fresh server on a fresh port for every run: the server closes first, and the TIME_WAIT
    # sockets it leaves (one per connection, for a minute) would make later runs' SYNs to the
    # same port collide with them, which costs the client a second's retransmit now and then.
    results = {name: [] for name in WAYS}
    names = list(WAYS)
    for r in range(a.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            port = svn.free_port()
            proc = start(serve_cmd(binary, tmp, name, port), port)
            try:
                cpu0 = svn.tree_cpu(proc.pid)
                n, secs, bad = wrk(port, a.duration)
                cpu1 = svn.tree_cpu(proc.pid)
            finally:
                proc.terminate()
                proc.wait(20)
            results[name].append(((cpu1 - cpu0) / n * 1e6, n / secs, bad))
            print(f"  round {r + 1} {name:16s}: {(cpu1 - cpu0) / n * 1e6:6.1f} us/conn, "
                  f"{n / secs:7.0f} conn/s{'' if not bad else f', {bad} errors'}", flush=True)
    # Each round's own ratio to uring-poll (the way io_uring accepted before multishot), run
    # next to it: less exposed to the machine's drift than the medians alone.
    print("\n| accept | server CPU per connection, us | connections/s | to uring-poll, per round |"
          "\n|---|---|---|---|")
    ok = True
    for name, rs in results.items():
        us = [x[0] for x in rs]
        rate = [x[1] for x in rs]
        ok &= all(x[2] == 0 for x in rs)
        ratios = [x[0] / p[0] for x, p in zip(rs, results["uring-poll"])]
        print(f"| {name} | {statistics.median(us):.1f} [{min(us):.1f}-{max(us):.1f}] | "
              f"{statistics.median(rate):.0f} [{min(rate):.0f}-{max(rate):.0f}] | "
              f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] |")
    return ok


def syscall_run(a, binary, tmp):
    if not shutil.which("strace"):
        print("accept_bench: --syscalls needs strace", file=sys.stderr)
        return False
    print(f"\nsystem calls per connection ({a.syscalls} connections, strace -f -c):\n\n"
          "| accept | accept4 | getpeername | io_uring_enter | epoll_wait | all |\n"
          "|---|---|---|---|---|---|")
    for name in WAYS:
        port = svn.free_port()
        out = f"{tmp}/{name}.strace"
        proc = start(["strace", "-f", "-c", "-o", out] + serve_cmd(binary, tmp, name, port), port,
                     pin=False)
        before = 1   # start()'s probe connection
        done = 0
        while done < a.syscalls:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while s.recv(4096):
                    pass
            done += 1
        # SIGTERM to the server, not to strace (which would detach and leave it running).
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        for pid in kids.stdout.split():
            os.kill(int(pid), 15)
        proc.wait(30)
        calls = {}
        for line in open(out):
            f = line.split()
            if len(f) >= 5 and f[-1] in ("accept4", "getpeername", "io_uring_enter", "epoll_wait"):
                calls[f[-1]] = int(f[3])
            elif len(f) >= 4 and f[-1] == "total":
                calls["total"] = int(f[3])
        n = done + before
        print(f"| {name} | " + " | ".join(f"{calls.get(k, 0) / n:.2f}" for k in
                                         ("accept4", "getpeername", "io_uring_enter", "epoll_wait",
                                          "total")) + " |")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--duration", type=int, default=2, help="seconds per run")
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--syscalls", type=int, default=0, metavar="N",
                    help="count system calls over N connections instead of timing")
    a = ap.parse_args()
    binary = os.path.abspath(f"{a.build}/tlsloop")
    missing = [t for t in ("wrk", "taskset") if not shutil.which(t)]
    if missing or not os.access(binary, os.X_OK):
        print(f"accept_bench: missing {', '.join(missing) or binary}", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="tlsloop-accept.")
    try:
        ok = syscall_run(a, binary, tmp) if a.syscalls else cpu_run(a, binary, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
