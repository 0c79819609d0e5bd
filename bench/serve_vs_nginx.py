#!/usr/bin/env python3
"""serve_vs_nginx.py - `tlsloop serve` against nginx, side by side in one run (docs/benchmarks.md,
"tlsloop serve against nginx").

Both servers run ONE worker pinned to CPU 0 (taskset; tlsloop's task threads too), with the same
certificates, the same files, TLS 1.2 and 1.3, session cache and tickets on, access logs off,
open files cached (nginx's open_file_cache, tlsloop's file cache: both on). The
load generators (wrk, openssl s_time) run pinned to CPU 1. Each workload runs on both servers in
turn, round after round (A B, then B A, ...), and the table gives medians with [min-max]. The
primary figure is the server's CPU time per operation (utime+stime of the server's processes
from /proc over the run, divided by the operations completed); throughput and the client's CPU
share are printed beside it so a reader sees which side was saturated.

Workloads (names from the performance issue):
  W1-ecdsa, W1-rsa  full TLS 1.3 handshake + GET + close (openssl s_time -new: one connection at a
                    time, so client-bound; server CPU per connection is the figure)
  W2-tls13, W2-tls12  resumed handshakes: wrk with "Connection: close" (wrk resumes its session;
                    tlsloop's counters give the resumption rate)
  W3                keep-alive GET of a 13-byte file over TLS, 50 connections (wrk -t1 -c50)
  W7                the same over plain HTTP
  W4-aes, W4-chacha  a 16 MiB file over TLS with AES-128-GCM / CHACHA20-POLY1305, 2 connections;
                    CPU per MB (10^6 bytes) of body
wrk's TLS 1.3 suite is set with an OPENSSL_CONF file (it has no option for it): AES-128-GCM
unless the workload says otherwise.

usage: bench/serve_vs_nginx.py [--rounds N] [--duration S] [--workloads W1-ecdsa,W3,...]
                               [--build DIR] [--markdown FILE]
Needs nginx, wrk and openssl (scripts/deps.sh --bench installs them). Exit status 0 when every run
completed without errors, 1 otherwise, 2 when something needed is missing.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CLK = os.sysconf("SC_CLK_TCK")
WORKLOADS = ["W1-ecdsa", "W1-rsa", "W2-tls13", "W2-tls12", "W3", "W7", "W4-aes", "W4-chacha"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu(pid):
    """utime+stime in seconds of pid and its children (nginx: master and worker)."""
    total = 0.0
    pids = [pid]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read().rsplit(")", 1)[1].split()
                if int(st[1]) == pid:
                    pids.append(int(d))
            except (OSError, IndexError):
                pass
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            total += (int(st[11]) + int(st[12])) / CLK
        except OSError:
            pass
    return total


def run_client(cmd, env=None, timeout=120):
    """Run a load generator pinned to CPU 1; returns (output, exit status, wall seconds). Its
    CPU time shows in os.times() once it has been waited for (client_cpu)."""
    t0 = time.monotonic()
    p = subprocess.Popen(["taskset", "-c", "1"] + cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env, text=True)
    out = p.communicate(timeout=timeout)[0]
    wall = time.monotonic() - t0
    return out, p.returncode, wall


def client_cpu():
    r = os.times()
    return r.children_user + r.children_system


class Server:
    def __init__(self, name, cmd, ports, tmp):
        self.name = name
        self.cmd = cmd
        self.https, self.http = ports
        self.proc = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(f"{tmp}/{name}.stderr", "w"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.https), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.http), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"serve_vs_nginx: {name} did not start "
                                     f"(see {tmp}/{name}.stderr)")
                time.sleep(0.05)

    def cpu(self):
        return tree_cpu(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_files(tmp):
    www = f"{tmp}/www"
    os.makedirs(www)
    with open(f"{www}/hello.txt", "wb") as f:
        f.write(b"Hello, world\n")   # 13 bytes
    with open(f"{www}/16m.bin", "wb") as f:
        f.write(os.urandom(16 * 1024 * 1024))
    for kind, args in (("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                       ("rsa", ["-newkey", "rsa:2048"])):
        subprocess.run(["openssl", "req", "-x509", *args, "-nodes", "-days", "30",
                        "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", f"{tmp}/{kind}.key", "-out", f"{tmp}/{kind}.pem"],
                       check=True, capture_output=True)
    for name, suite, maxp in (("aes", "TLS_AES_128_GCM_SHA256", "TLSv1.3"),
                              ("chacha", "TLS_CHACHA20_POLY1305_SHA256", "TLSv1.3"),
                              ("tls12", "TLS_AES_128_GCM_SHA256", "TLSv1.2")):
        with open(f"{tmp}/openssl-{name}.cnf", "w") as f:
            f.write("openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\nsystem_default = sys\n"
                    f"[sys]\nCiphersuites = {suite}\nMaxProtocol = {maxp}\n"
                    "CipherString = ECDHE+AESGCM\n")
    return www


def nginx_conf(tmp, kind, https, http, www):
    conf = f"{tmp}/nginx-{kind}.conf"
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {tmp}/nginx-{kind}.pid;
error_log {tmp}/nginx-{kind}.error.log warn;
events {{ worker_connections 8192; }}
http {{
    types {{ text/plain txt; application/octet-stream bin; }}
    default_type application/octet-stream;
    access_log off;
    # Open files kept, as tlsloop's small-file cache does by default: the tuned nginx.
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 1s;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    client_body_temp_path {tmp}/ngx-body;
    proxy_temp_path {tmp}/ngx-proxy;
    fastcgi_temp_path {tmp}/ngx-fcgi;
    uwsgi_temp_path {tmp}/ngx-uwsgi;
    scgi_temp_path {tmp}/ngx-scgi;
    server {{
        listen 127.0.0.1:{https} ssl;
        listen 127.0.0.1:{http};
        ssl_certificate {tmp}/{kind}.pem;
        ssl_certificate_key {tmp}/{kind}.key;
        root {www};
    }}
}}
""")
    return ["nginx", "-p", tmp, "-e", f"{tmp}/nginx-{kind}.error.log", "-c", conf]


def tlsloop_cmd(binary, tmp, kind, https, http, www):
    return [binary, "serve", "--workers", "1", "--task-threads", "1",
            "--listen", f"127.0.0.1:{https}", "--listen", f"127.0.0.1:{http},plain",
            "--cert", f"{tmp}/{kind}.pem", "--key", f"{tmp}/{kind}.key", "--root", www,
            "--metrics-listen", f"127.0.0.1:{free_port()}", "--log", f"{tmp}/tlsloop-{kind}.log",
            "--max-conns", "8000"] + os.environ.get("TLSLOOP_EXTRA", "").split()


def metrics_url(srv):
    """tlsloop's metrics page: on its own listener (metrics-listen), never the public ones."""
    return f"http://{srv.cmd[srv.cmd.index('--metrics-listen') + 1]}/metrics"


def tlsloop_handshakes(srv):
    """(full, resumed) from tlsloop's metrics page, over plain HTTP."""
    with urllib.request.urlopen(metrics_url(srv), timeout=10) as r:
        text = r.read().decode()
    full = int(re.search(r'tlsloop_handshakes_total\{kind="full"\} (\d+)', text).group(1))
    res = int(re.search(r'tlsloop_handshakes_total\{kind="resumed"\} (\d+)', text).group(1))
    return full, res


def wrk_parse(out):
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if not m:
        return None
    reqs = int(m.group(1))
    secs = float(m.group(2)) * {"ms": 1e-3, "s": 1, "m": 60}.get(m.group(3), 1)
    size = float(m.group(4)) * {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}[m.group(5)]
    errors = 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if e:
        errors += sum(int(x) for x in e.groups()[:3])
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if n:
        errors += int(n.group(1))
    lat = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(lat.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[lat.group(2)] if lat else None
    return reqs, secs, size, errors, p99


def one_run(workload, srv, tmp, duration):
    """Run one workload against one server. Returns a dict of figures."""
    env = dict(os.environ)
    ops_unit = "req"
    if workload.startswith("W1"):
        cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{srv.https}", "-new",
               "-time", str(duration), "-www", "/hello.txt"]
    else:
        conns, path, extra, conf = 50, "/hello.txt", [], "aes"
        url = f"https://127.0.0.1:{srv.https}"
        if workload == "W7":
            url = f"http://127.0.0.1:{srv.http}"
        elif workload.startswith("W2"):
            conns, extra = 20, ["-H", "Connection: close"]
            conf = "tls12" if workload == "W2-tls12" else "aes"
        elif workload.startswith("W4"):
            conns, path = 2, "/16m.bin"
            conf = "chacha" if workload == "W4-chacha" else "aes"
            ops_unit = "MB"
        env["OPENSSL_CONF"] = f"{tmp}/openssl-{conf}.cnf"
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", *extra, url + path]
    hs0 = tlsloop_handshakes(srv) if srv.name.startswith("tlsloop") else None
    cli0 = client_cpu()
    cpu0, t0 = srv.cpu(), time.monotonic()
    out, rc, wall = run_client(cmd, env=env, timeout=duration * 4 + 30)
    cpu1 = srv.cpu()
    cli = client_cpu() - cli0
    hs1 = tlsloop_handshakes(srv) if hs0 else None
    res = {"ok": rc == 0, "errors": 0, "p99": None}
    if workload.startswith("W1"):
        m = re.search(r"(\d+) connections in ([\d.]+)s", out)
        if not m:
            res["ok"] = False
            res["out"] = out[-600:]
            return res
        ops, secs = int(m.group(1)), wall
    else:
        p = wrk_parse(out)
        if not p:
            res["ok"] = False
            res["out"] = out[-600:]
            return res
        reqs, secs, size, errors, p99 = p
        res["errors"], res["p99"] = errors, p99
        ops = size / 1e6 if ops_unit == "MB" else reqs
    res.update(ops=ops, unit=ops_unit, rate=ops / secs if secs else 0,
               us_per_op=(cpu1 - cpu0) / ops * 1e6 if ops else float("nan"),
               server_cpu=(cpu1 - cpu0) / wall * 100, client_cpu=cli / wall * 100)
    if hs0 and hs1:
        full, resumed = hs1[0] - hs0[0], hs1[1] - hs0[1]
        res["resumed_pct"] = 100.0 * resumed / (full + resumed) if full + resumed else None
    return res


def med(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    m = statistics.median(vals)
    return f"{m:.1f} [{min(vals):.1f}-{max(vals):.1f}]" if len(vals) > 1 else f"{m:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--markdown", help="also append the table to this file")
    a = ap.parse_args()
    workloads = a.workloads.split(",")
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w} (known: {', '.join(WORKLOADS)})")
    binary = os.path.abspath(f"{a.build}/tlsloop")
    missing = [t for t in ("nginx", "wrk", "openssl", "taskset") if not shutil.which(t)]
    if missing or not os.access(binary, os.X_OK):
        print(f"serve_vs_nginx: missing {', '.join(missing) or binary} "
              "(scripts/deps.sh --bench installs nginx and wrk; make builds tlsloop)",
              file=sys.stderr)
        return 2
    if os.cpu_count() < 2:
        print("serve_vs_nginx: needs 2 CPUs (server on 0, load on 1)", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="tlsloop-vs-nginx.")
    os.chmod(tmp, 0o755)   # nginx's worker runs as another user: it must read the files
    www = make_files(tmp)
    servers = {}
    try:
        for kind in ("ecdsa", "rsa"):
            if kind == "rsa" and "W1-rsa" not in workloads:
                continue
            p = (free_port(), free_port())
            servers[("tlsloop", kind)] = Server(f"tlsloop-{kind}",
                                                tlsloop_cmd(binary, tmp, kind, *p, www), p, tmp)
            p = (free_port(), free_port())
            servers[("nginx", kind)] = Server(f"nginx-{kind}", nginx_conf(tmp, kind, *p, www),
                                              p, tmp)
        results = {}
        ok = True
        t_start = time.monotonic()
        for w in workloads:
            kind = "rsa" if w == "W1-rsa" else "ecdsa"
            for r in range(a.rounds):
                order = ("tlsloop", "nginx") if r % 2 == 0 else ("nginx", "tlsloop")
                for name in order:
                    res = one_run(w, servers[(name, kind)], tmp, a.duration)
                    results.setdefault((w, name), []).append(res)
                    if not res["ok"] or res["errors"]:
                        ok = False
                        print(f"  {w} {name}: FAILED or errors: {res.get('out', res)}",
                              file=sys.stderr)
                    print(f"  {w} round {r + 1} {name:8s}: {res.get('us_per_op', 0):8.1f} us/"
                          f"{res.get('unit', '?')}, {res.get('rate', 0):9.0f}/s, server "
                          f"{res.get('server_cpu', 0):3.0f}% client {res.get('client_cpu', 0):3.0f}%"
                          + (f", resumed {res['resumed_pct']:.0f}%"
                             if res.get("resumed_pct") is not None else ""), flush=True)
        elapsed = time.monotonic() - t_start
    finally:
        for s in servers.values():
            s.stop()
    lines = [f"| workload | unit | tlsloop us/op | nginx us/op | ratio | tlsloop ops/s | "
             f"nginx ops/s | tlsloop p99 ms | nginx p99 ms | server CPU % (t/n) | "
             f"client CPU % (t/n) | tlsloop resumed % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in workloads:
        t, n = results[(w, "tlsloop")], results[(w, "nginx")]
        tu = [x.get("us_per_op") for x in t if x["ok"]]
        nu = [x.get("us_per_op") for x in n if x["ok"]]
        ratio = statistics.median(tu) / statistics.median(nu) if tu and nu else float("nan")
        lines.append(
            f"| {w} | {t[0].get('unit', '?')} | {med(tu)} | {med(nu)} | **{ratio:.2f}** | "
            f"{med([x.get('rate') for x in t])} | {med([x.get('rate') for x in n])} | "
            f"{med([x.get('p99') for x in t])} | {med([x.get('p99') for x in n])} | "
            f"{med([x.get('server_cpu') for x in t])} / {med([x.get('server_cpu') for x in n])} | "
            f"{med([x.get('client_cpu') for x in t])} / {med([x.get('client_cpu') for x in n])} | "
            f"{med([x.get('resumed_pct') for x in t])} |")
    head = (f"tlsloop serve vs nginx {subprocess.run(['nginx', '-v'], capture_output=True, text=True).stderr.strip().split('/')[-1]}: "
            f"{a.rounds} rounds of {a.duration} s per workload and server, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {elapsed / 60:.1f} min; "
            "server CPU per operation, medians [min-max]")
    print()
    print(head)
    print("\n".join(lines))
    if a.markdown:
        with open(a.markdown, "a") as f:
            f.write(f"\n{head}\n\n" + "\n".join(lines) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
