#!/usr/bin/env python3
"""idle_memory.py - server RSS per idle established TLS connection.

Starts examples/echo_server (one loop, TLS), opens N TLS connections to it from this separate
process (default 5,000; a process may hold at most 20,000 fds here), sends one message on each and
reads the echo, so every connection is established and idle; then reads the server's VmRSS from
/proc and reports (after - before) / N. Usage: bench/idle_memory.py [N] [--build DIR]
"""
import argparse
import re
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=5000)
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.n + 100), hard))
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = f"{tmp}/c.pem", f"{tmp}/k.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost", "-days", "1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        # The server needs as many fds as connections: raise its limit through prlimit.
        srv = subprocess.Popen(["prlimit", f"--nofile={args.n + 100}",
                                f"{args.build}/examples/echo_server", "--workers", "1",
                                "--listen", "127.0.0.1:0", "--cert", cert, "--key", key],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = int(re.search(r"port (\d+)", srv.stdout.readline()).group(1))
        # Drain the server's output so it never blocks on a full pipe.
        subprocess.Popen(["cat"], stdin=srv.stdout, stdout=subprocess.DEVNULL)
        ctx = ssl.create_default_context(cafile=cert)
        time.sleep(0.2)
        before = rss_kib(srv.pid)
        conns = []
        t0 = time.monotonic()
        for _ in range(args.n):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                server_hostname="localhost")
            s.sendall(b"x")
            s.recv(1)
            conns.append(s)
        took = time.monotonic() - t0
        time.sleep(0.5)
        after = rss_kib(srv.pid)
        per = (after - before) * 1024 / args.n
        print(f"idle TLS connections: {args.n} (opened in {took:.1f} s)")
        print(f"server RSS: {before} KiB before, {after} KiB after")
        print(f"RSS per idle connection: {per:.0f} bytes ({per / 1024:.1f} KiB)")
        for s in conns:
            s.close()
        srv.terminate()
        srv.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
