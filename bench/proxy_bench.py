#!/usr/bin/env python3
"""proxy_bench.py - `tlsloop proxy` against HAProxy (TCP mode) and stunnel, in front of the same
plain backend (`tlsloop serve` on plain HTTP), with the same ECDSA P-256 certificate.

Each proxy runs with one thread (HAProxy nbthread 1; stunnel's threads all pinned) on CPU 0; the
backend and the load generator (`tlsloop bench`) on CPU 1. Proxies are interleaved round by
round; each figure is the median of the rounds. Workloads:
  H  full TLS 1.3 handshakes per second (`tlsloop bench --new-conn`, a GET each), and the proxy's
     CPU per connection
  K  keep-alive GET of 13 bytes, 50 connections: requests/s and the proxy's CPU per request
  M  MB/s of a 16 MiB file through the proxy, 4 connections
  P  p99 latency of 1,000 requests/s on 20 connections (open loop)
The proxy's CPU is utime+stime of its process over the run (/proc/PID/stat), the primary figure
on 2 shared cores where the generator often saturates first (its CPU is printed beside).

Usage: python3 bench/proxy_bench.py [--rounds N] [--duration S] [--build DIR] [--write-docs]
Needs haproxy and stunnel4 (scripts/deps.sh --bench installs them).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND_PORT, PROXY_PORT = 19380, 19443
BIG = 16 << 20


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port, timeout=10):
    import socket
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"proxy_bench: nothing listens on port {port}")


def proxy_cmds(tmp, binary):
    cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
    with open(f"{tmp}/combined.pem", "w") as out:
        out.write(open(cert).read() + open(key).read())
    with open(f"{tmp}/haproxy.cfg", "w") as f:
        f.write(f"""global
    nbthread 1
    maxconn 8000
    tune.ssl.default-dh-param 2048
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend tls
    bind 127.0.0.1:{PROXY_PORT} ssl crt {tmp}/combined.pem alpn http/1.1
    default_backend plain
backend plain
    server s1 127.0.0.1:{BACKEND_PORT}
""")
    with open(f"{tmp}/stunnel.conf", "w") as f:
        f.write(f"""foreground = yes
pid =
debug = 3
output = {tmp}/stunnel.log
[tls]
accept = 127.0.0.1:{PROXY_PORT}
connect = 127.0.0.1:{BACKEND_PORT}
cert = {cert}
key = {key}
""")
    return {
        "tlsloop": [binary, "proxy", "--workers", "1", "--listen", f"127.0.0.1:{PROXY_PORT}",
                    "--cert", cert, "--key", key, "--backend", f"127.0.0.1:{BACKEND_PORT}",
                    "--log", f"{tmp}/tlsloop-proxy.log", "--max-conns", "8000"],
        "haproxy": ["haproxy", "-db", "-f", f"{tmp}/haproxy.cfg"],
        "stunnel": ["stunnel", f"{tmp}/stunnel.conf"],
    }


def bench(binary, *args):
    r = subprocess.run(["taskset", "-c", "1", binary, "bench", "--json", "--insecure", *args],
                       capture_output=True, text=True, timeout=600)
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise SystemExit(f"proxy_bench: tlsloop bench gave no report: {r.stderr[-400:]}")


def measured(binary, pid, *args):
    """One tlsloop bench run, with the proxy's CPU seconds over it and the operations it did."""
    c0 = cpu_seconds(pid)
    rep = bench(binary, *args)
    cpu = cpu_seconds(pid) - c0
    return rep, cpu, rep["requests_per_s"] * (rep["seconds"] + 1)   # warm-up included


def run_workloads(binary, pid, duration):
    base = f"https://127.0.0.1:{PROXY_PORT}"
    d = ["-d", f"{duration}s", "--warmup", "1s"]
    out = {}

    def row(rep, rate, us):
        return {"rate": rate, "us": us, "errors": rep["errors_total"],
                "gen": rep["generator_cpu_percent"]}
    rep, cpu, ops = measured(binary, pid, "--new-conn", "-c", "16", *d, f"{base}/hello.txt")
    out["H"] = row(rep, rep["handshakes"]["full_per_s"], cpu / ops * 1e6)
    rep, cpu, ops = measured(binary, pid, "-c", "50", *d, f"{base}/hello.txt")
    out["K"] = row(rep, rep["requests_per_s"], cpu / ops * 1e6)
    rep, cpu, ops = measured(binary, pid, "-c", "4", *d, f"{base}/big.bin")
    out["M"] = row(rep, rep["requests_per_s"] * BIG / 1e6, cpu / (ops * BIG / 1e6) * 1e6)
    # p99 of 1,000 requests/s: twice the duration, as a tail needs samples (12,000 at 6 s).
    d2 = ["-d", f"{2 * duration}s", "--warmup", "1s"]
    rep, _, _ = measured(binary, pid, "--rate", "1000", "-c", "20", *d2, f"{base}/hello.txt")
    out["P"] = row(rep, rep["latency_ms"]["p99"], float("nan"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    binary = os.path.join(a.build, "tlsloop")
    for tool in ("haproxy", "stunnel", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"proxy_bench: {tool} is not installed (scripts/deps.sh --bench)")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2",
                        "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem"], check=True,
                       capture_output=True)
        os.makedirs(f"{tmp}/www")
        with open(f"{tmp}/www/hello.txt", "w") as f:
            f.write("Hello, world\n")
        with open(f"{tmp}/www/big.bin", "wb") as f:
            f.write(os.urandom(BIG))
        backend = subprocess.Popen(["taskset", "-c", "1", binary, "serve", "--workers", "1",
                                    "--listen", f"127.0.0.1:{BACKEND_PORT},plain", "--root",
                                    f"{tmp}/www", "--log", f"{tmp}/backend.log"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results = {}
        try:
            wait_port(BACKEND_PORT)
            cmds = proxy_cmds(tmp, binary)
            for r in range(a.rounds):
                for name, cmd in cmds.items():
                    p = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                    try:
                        wait_port(PROXY_PORT)
                        res = run_workloads(binary, p.pid, a.duration)
                    finally:
                        p.terminate()
                        try:
                            p.wait(15)
                        except subprocess.TimeoutExpired:
                            p.kill()
                            p.wait()
                    for w, v in res.items():
                        results.setdefault((w, name), []).append(v)
                        print(f"  round {r + 1} {name:8} {w}: {v['rate']:.3f} "
                              f"({v['us']:.1f} us of proxy CPU per op, {v['errors']} errors, "
                              f"generator {v['gen']:.0f}%)", flush=True)
        finally:
            backend.terminate()
            backend.wait()
    names = ["tlsloop", "haproxy", "stunnel"]
    rows = [("H", "full TLS 1.3 handshakes/s (higher is better)", "hs/s"),
            ("K", "keep-alive 13-byte GETs/s (higher is better)", "req/s"),
            ("M", "16 MiB downloads, MB/s (higher is better)", "MB/s"),
            ("P", "p99 at 1,000 req/s (lower is better)", "ms")]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"`python3 bench/proxy_bench.py --rounds {a.rounds} --duration {a.duration}`, "
             f"{stamp}, {(time.monotonic() - t0) / 60:.1f} min; medians of {a.rounds} rounds, "
             "proxies on CPU 0 with one thread, backend and load on CPU 1.", "",
             "| workload | tlsloop | haproxy | stunnel | proxy CPU per op (H: us per connection, "
             "K: per request, M: per MB), tlsloop / haproxy / stunnel |", "|---|---|---|---|---|"]
    for w, desc, unit in rows:
        med = {n: statistics.median(v["rate"] for v in results[(w, n)]) for n in names}
        cpu = {n: statistics.median(v["us"] for v in results[(w, n)]) for n in names}
        errs = sum(v["errors"] for n in names for v in results[(w, n)])
        fmt = (lambda x: f"{x:.3f}") if unit == "ms" else (lambda x: f"{x:,.0f}")
        cpus = " / ".join("-" if c != c else f"{c:.1f}" for c in cpu.values())
        lines.append(f"| {w}: {desc} | {fmt(med['tlsloop'])} | {fmt(med['haproxy'])} | "
                     f"{fmt(med['stunnel'])} | {cpus}{' (errors: %d)' % errs if errs else ''} |")
    table = "\n".join(lines)
    print("\n" + table)
    if a.write_docs:
        path = os.path.join(ROOT, "docs", "benchmarks.md")
        text = open(path).read()
        begin, end = "<!-- proxy:begin (written by bench/proxy_bench.py --write-docs) -->", \
            "<!-- proxy:end -->"
        block = f"{begin}\n{table}\n{end}"
        if begin in text:
            text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
        else:
            text += ("\n## `tlsloop proxy` against HAProxy and stunnel (`bench/proxy_bench.py`)\n\n"
                     + block + "\n")
        with open(path, "w") as f:
            f.write(text)
        print("proxy_bench: wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
