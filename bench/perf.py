#!/usr/bin/env python3
"""perf.py - the performance issue's harness: `tlsloop serve` against nginx on every workload, the
limit OpenSSL itself sets, one table and one chart (docs/benchmarks.md, "Performance: tlsloop
serve against nginx and the limit").

Servers: one worker each, pinned to CPU 0 (tlsloop's task thread too); load generators pinned to
CPU 1; the same generated certificates (ECDSA P-256, and RSA-2048 for W1-rsa and W6) and files;
TLS 1.2 and 1.3, session cache and tickets on, access logs off, open files cached. Each workload
runs on both servers in turn, round after round (each round starts with the next server), and the
table gives medians. The primary figure is server CPU per operation (utime+stime from /proc over the
run, divided by the operations completed).

  W1-ecdsa, W1-rsa  full TLS 1.3 handshake + GET + close: `tlsloop bench --new-conn` (checked: 0
                    resumed by the generator; tlsloop's /metrics agree)
  W2-tls13, W2-tls12  resumed handshake + GET + close: `tlsloop bench --resume` (checked: all but
                    each slot's first resumed); TLS 1.2 by session ID (`--no-tickets`; checked
                    on tlsloop's metrics: no ticket decrypted)
  W3                keep-alive GET of 13 bytes over TLS, 50 connections: wrk -t1 -c50 (tlsloop
                    bench gives the same within 1-5%: bench/bench_validate.py)
  W7                the same over plain HTTP
  W4-aes, W4-chacha  a 16 MiB file over TLS, AES-128-GCM or CHACHA20-POLY1305: per MB of body
  W5                server RSS per idle established TLS connection: 5,000 connections held by a
                    client in its own process, one request each (KiB per connection)
  W6                p99 of 200 requests/s on 10 established connections (open loop, from the
                    intended send time) while 50 connections flood full RSA handshakes, both
                    generators at normal priority and the scheduler's default slice, as users
                    run them (--w6-tuned: the earlier footing, 20 connections, a flood of 128
                    at nice 19 and a short slice for the latency client); the ratio is the
                    p99s', beside p99.9, max, each server's idle p99 and flood handshakes/s
  noise             build/bench/hiccups before and after the rounds: how often this machine
                    takes a spinning thread off its CPU for over 1 ms, the floor of any p99 here
  L                 the limit: bench_engine's in-process server CPU per handshake and per MiB,
                    OpenSSL 3.0 alone (its own key derivation, the default)

tlsloop runs with its defaults, OpenSSL's own TLS1-PRF, TLS13-KDF and HMAC. --also tlsloop-kdf adds
the opt-in to tlsloop's (`serve --tls-kdf tlsloop`, src/tls/tls_ctx_kdf.c) as a column of its own.

With --also tlsloop-kdf,h2o,haproxy the same rounds include h2o 2.2.5 and HAProxy 2.6 (one thread each, same
certificates, session cache and tickets on, no access log), and a second table compares tlsloop
with all three. nginx stays the reference of the musts and aims. HAProxy serves the small file
from memory (`http-request return`) and cannot serve the 16 MiB one (W4: "-"); h2o 2.2.5 resumes
only every second TLS 1.3 ticket a client offers, which its W2-tls13 cell shows.

Default: 5 rounds of 6 s per workload and server: many short turns, so that a minute in which the
machine slowed down spoils one round of each server rather than the median.

usage: bench/perf.py [--rounds N] [--duration S] [--quick] [--workloads W1-ecdsa,...]
                     [--also h2o,haproxy] [--w6-tuned] [--build DIR] [--write-docs]
  --quick       1 round of 5 s per workload (about 4 minutes)
  --also        more servers to compare with (each adds about 5 minutes)
  --write-docs  replace the results block in docs/benchmarks.md and draw docs/perf.png
Needs nginx, wrk, taskset, prlimit (scripts/deps.sh --bench; gnuplot for the chart; h2o and
haproxy for --also).
"""
import argparse
import importlib.util
import json
import os
import platform
import re
import resource
import shlex
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("svn", os.path.join(HERE, "serve_vs_nginx.py"))
svn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(svn)

WORKLOADS = ["W1-ecdsa", "W1-rsa", "W2-tls13", "W2-tls12", "W3", "W7", "W4-aes", "W4-chacha",
             "W5", "W6"]
# (description, unit, nginx orientation figure, must ratio, aim ratio) from the issue.
TARGETS = {
    "W1-rsa": ("full TLS 1.3 handshake, RSA-2048", "us/conn", 0.95, 0.90),
    "W1-ecdsa": ("full TLS 1.3 handshake, ECDSA P-256", "us/conn", 0.85, 0.75),
    "W2-tls13": ("resumed TLS 1.3 (ticket)", "us/conn", 0.92, 0.80),
    "W2-tls12": ("resumed TLS 1.2 (session ID)", "us/conn", 0.85, 0.70),
    "W3": ("keep-alive GET 13 B over TLS", "us/req", 0.85, 0.67),
    "W7": ("keep-alive GET 13 B, plain HTTP", "us/req", None, None),
    "W4-aes": ("16 MiB download, AES-128-GCM", "us/MB", 0.80, 0.65),
    "W4-chacha": ("16 MiB download, CHACHA20-POLY1305", "us/MB", None, None),
    "W5": ("RSS per idle TLS connection", "KiB/conn", 1.00, 0.95),
    "W6": ("p99 during a handshake flood", "ms", 0.75, 0.50),
}
LIMIT_KEYS = {"W1-rsa": "hs_full_rsa", "W1-ecdsa": "hs_full_ecdsa", "W2-tls13": "hs_resumed_tls13",
              "W2-tls12": "hs_resumed_tls12", "W4-aes": "tp_s2c"}


# tlsloop-kdf: `tlsloop serve --tls-kdf tlsloop`, the opt-in to tlsloop's own key derivation and
# HMAC (src/tls/tls_ctx_kdf.c); the "tlsloop" column is the default, OpenSSL's own.
# tlsloop-uring: the same server on the io_uring backend (`--io uring`: streams on completions,
# listeners on a multishot accept); tlsloop-uring-single and tlsloop-uring-poll: the same with
# TLSLOOP_IO_ACCEPT=single (a one-shot accept re-armed per connection) or =poll (readiness and
# accept4, as on epoll), to measure what the multishot accept saves per connection.
ALSO = {"tlsloop-kdf": "tlsloop-kdf", "tlsloop-uring": "tlsloop-uring",
        "tlsloop-uring-single": "tlsloop-uring-single", "tlsloop-uring-poll": "tlsloop-uring-poll",
        "h2o": "h2o", "haproxy": "HAProxy"}
OURS = ("tlsloop-kdf", "tlsloop-uring", "tlsloop-uring-single", "tlsloop-uring-poll")
ACCEPT_ENV = {"tlsloop-uring-single": "single", "tlsloop-uring-poll": "poll"}


def h2o_cmd(tmp, kind, https, http, www):
    """h2o with one thread, the same certificate and files; sessions cached and tickets on (its
    defaults), no access log, no OCSP fetching. Its key process (neverbleed) is a child: the
    CPU of the process tree counts."""
    conf = f"{tmp}/h2o-{kind}.conf"
    with open(conf, "w") as f:
        f.write(f"""num-threads: 1
max-connections: 15000
http1-request-timeout: 60
error-log: {tmp}/h2o-{kind}.error.log
listen:
  host: 127.0.0.1
  port: {https}
  ssl:
    certificate-file: {tmp}/{kind}.pem
    key-file: {tmp}/{kind}.key
    minimum-version: TLSv1.2
    ocsp-update-interval: 0
listen:
  host: 127.0.0.1
  port: {http}
hosts:
  default:
    paths:
      /:
        file.dir: {www}
""")
    return ["h2o", "-c", conf]


def haproxy_cmd(tmp, kind, https, http, www):
    """HAProxy with one thread answering /hello.txt from memory (it serves no files from disk),
    the same certificate; its session cache and tickets are on by default."""
    crt = f"{tmp}/haproxy-{kind}.crt"
    with open(crt, "w") as f:
        f.write(open(f"{tmp}/{kind}.pem").read() + open(f"{tmp}/{kind}.key").read())
    conf = f"{tmp}/haproxy-{kind}.cfg"
    with open(conf, "w") as f:
        f.write(f"""global
    nbthread 1
    maxconn 9000
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    option http-keep-alive
    timeout client 60s
    timeout server 60s
    timeout connect 5s
    timeout http-keep-alive 60s
frontend www
    bind 127.0.0.1:{https} ssl crt {crt} alpn http/1.1
    bind 127.0.0.1:{http}
    http-request return status 200 content-type text/plain file {www}/hello.txt if {{ path /hello.txt }}
    http-request return status 404
""")
    return ["haproxy", "-f", conf, "-db"]


def serves(name, w):
    """Whether a server can run a workload (HAProxy has no file to stream for W4)."""
    return not (name == "haproxy" and w.startswith("W4"))


def tl_bench(binary, *args, timeout=180):
    r = subprocess.run(["taskset", "-c", "1", binary, "bench", "--json", "--insecure", *args],
                       capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise SystemExit(f"perf: tlsloop bench gave no report: {r.stderr[-400:]}")


def tickets_decrypted(srv):
    """Session tickets tlsloop decrypted so far (its metrics page), or None for nginx."""
    if not srv.name.startswith("tlsloop"):
        return None
    with urllib.request.urlopen(svn.metrics_url(srv), timeout=10) as r:
        text = r.read().decode()
    return sum(int(n) for n in re.findall(
        r'^tlsloop_tickets_total\{event="decrypted_\w+"\} (\d+)', text, re.M))


def handshake_run(w, srv, binary, tmp, duration):
    url = f"https://127.0.0.1:{srv.https}/hello.txt"
    mode = "--new-conn" if w.startswith("W1") else "--resume"
    # TLS 1.2 resumes by session ID, from the server's cache: the client asks for no ticket.
    extra = ["--tlsv1.2", "--no-tickets"] if w == "W2-tls12" else ["--tlsv1.3"]
    tk0 = tickets_decrypted(srv)
    cpu0 = srv.cpu()
    rep = tl_bench(binary, mode, *extra, "-c", "16", "-d", f"{duration}s", "--warmup", "1s",
                   "--cipher", "TLS_AES_128_GCM_SHA256", url)
    cpu1 = srv.cpu()
    tk1 = tickets_decrypted(srv)
    # The CPU includes the 1 s warm-up: count its operations too, from the rate.
    secs = rep["seconds"] + 1.0
    ops = rep["requests_per_s"] * secs
    h = rep["handshakes"]
    ok = rep["errors_total"] == 0 and (h["resumed"] == 0 if w.startswith("W1") else
                                       h["resumed"] >= 0.98 * (h["full"] + h["resumed"]))
    if w == "W2-tls12" and tk0 is not None and tk1 != tk0:
        ok = False   # resumed by ticket, not by session ID
    total = h["full"] + h["resumed"]
    return {"value": (cpu1 - cpu0) / ops * 1e6 if ops else float("nan"), "ok": ok,
            "rate": rep["requests_per_s"], "gen_cpu": rep["generator_cpu_percent"],
            "p99": rep["latency_ms"]["p99"], "errors": rep["errors_total"],
            "resumed_pct": 100.0 * h["resumed"] / total if total else 0.0}


def wrk_run(w, srv, tmp, duration):
    wl = {"W3": "W3", "W7": "W7", "W4-aes": "W4-aes", "W4-chacha": "W4-chacha"}[w]
    r = svn.one_run(wl, srv, tmp, duration)
    return {"value": r.get("us_per_op", float("nan")), "ok": r["ok"] and not r["errors"],
            "rate": r.get("rate", 0), "gen_cpu": r.get("client_cpu", 0), "p99": r.get("p99")}


def idle_rss(srv, n=5000):
    """KiB of server RSS per idle established TLS connection, n held by this process."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    pids = [srv.proc.pid] + [int(p) for p in os.listdir("/proc") if p.isdigit() and
                              _ppid(int(p)) == srv.proc.pid]

    def rss():
        total = 0
        for p in pids:
            try:
                with open(f"/proc/{p}/status") as f:
                    total += int(next(l for l in f if l.startswith("VmRSS:")).split()[1])
            except (OSError, StopIteration):
                pass
        return total
    time.sleep(0.3)
    before = rss()
    conns = []
    for _ in range(n):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.https), timeout=10),
                            server_hostname="localhost")
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: l\r\n\r\n")
        got = b""
        while not got.endswith(b"Hello, world\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        conns.append(s)
    time.sleep(1.0)
    after = rss()
    for s in conns:
        s.close()
    return {"value": (after - before) / n, "ok": len(conns) == n, "rate": None, "gen_cpu": None,
            "p99": None}


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def storm_run(srv, binary, duration, tuned=False):
    """p99 of the steady client, idle and during a flood of full handshakes.

    As users run it (the default, issue 24's footing): 10 keep-alive connections at 200 requests/s
    in total (open loop), a flood of 50 concurrent full TLS 1.3 handshakes, both generators at
    normal priority with the scheduler's default slice, side by side on CPU 1.
    tuned (--w6-tuned, the footing of the figures before 2026-12-08): 20 connections, 128 in the
    flood at nice 19, and the latency client asks for a short slice, so that its own wake-ups are
    not delayed by its neighbour and the p99 is the server's alone (measured with tcpdump on the
    steady connections: at nice 0 the client added about 3 ms to a server-side p99 of 0.5 ms)."""
    url = f"https://127.0.0.1:{srv.https}/hello.txt"
    steady = ["--rate", "200", "-c", "20" if tuned else "10", "-d", f"{duration}s",
              "--warmup", "1s", "--cipher", "TLS_AES_128_GCM_SHA256", url]
    if not tuned:
        steady.insert(0, "--default-slice")
    idle = tl_bench(binary, *steady)
    flood = subprocess.Popen((["nice", "-n", "19"] if tuned else [])
                             + ["taskset", "-c", "1", binary, "bench", "--json", "--insecure",
                                "--handshake-only", "-c", "128" if tuned else "50",
                                "-d", f"{duration + 3}s", "--warmup", "1s",
                                f"https://127.0.0.1:{srv.https}/"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(2)
    storm = tl_bench(binary, *steady)
    fl = json.loads(flood.communicate(timeout=duration * 4 + 60)[0])
    lat = storm["latency_ms"]
    return {"value": lat["p99"], "ok": storm["errors_total"] == 0,
            "idle_p99": idle["latency_ms"]["p99"], "flood_hs": fl["handshakes"]["full_per_s"],
            "rate": fl["handshakes"]["full_per_s"], "gen_cpu": fl["generator_cpu_percent"],
            "p99": lat["p99"], "p999": lat.get("p99.9"), "max": lat.get("max")}


def limits(build):
    r = subprocess.run([f"{build}/bench/bench_engine", "--json", "--rounds", "3", "--handshakes",
                        "500", "--mib", "64", "--cpu", "0", "--only",
                        ",".join(LIMIT_KEYS.values())], capture_output=True, text=True,
                       timeout=600)   # OpenSSL's own key derivation: the library's default
    try:
        data = json.loads(r.stdout)
    except ValueError:
        return {}
    out = {}
    for wl in data["workloads"]:
        for w, key in LIMIT_KEYS.items():
            if wl["key"] == key:
                v = wl["raw"]["median"]
                out[w] = v / 1.048576 if wl["unit"] == "us/MiB" else v   # per MB, as W4
    return out


def fmt(v, unit):
    if v is None or v != v:
        return "-"
    return f"{v:.2f}" if unit in ("ms", "KiB/conn") else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def hiccups(build):
    """The machine's latency noise while idle (bench/hiccups.c: a spinning thread on each CPU,
    3 s): gaps over 1 ms per second and the longest, or None without the program."""
    try:
        r = subprocess.run([f"{build}/bench/hiccups", "--seconds", "3", "--json", "0", "1"],
                           capture_output=True, text=True, timeout=30)
        cpus = json.loads(r.stdout)["cpus"]
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return None
    return (sum(c["over_1ms_per_s"] for c in cpus), max(c["max_us"] for c in cpus) / 1e3)


def ratio_to(results, w, name):
    """tlsloop's median over another server's, or None where that server did not run."""
    other = [x["value"] for x in results.get((w, name), [])]
    if not other:
        return None
    t = statistics.median([x["value"] for x in results[(w, "tlsloop")]])
    n = statistics.median(other)
    return t / n if n else None


def cell(results, w, name, unit):
    """A server's median, with its resumption rate when it did not resume (nearly) all."""
    runs = results.get((w, name), [])
    if not runs:
        return "-"
    text = fmt(statistics.median([x["value"] for x in runs]), unit)
    if w.startswith("W2"):
        pct = statistics.median([x["resumed_pct"] for x in runs])
        if pct < 98:
            text += f" ({pct:.0f}% resumed)"
    return text


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        return f"{platform.machine()} ({model})"
    except (OSError, StopIteration):
        return platform.machine()


def spread(vals, unit):
    """The median, and [min-max] when there was more than one round."""
    m = fmt(statistics.median(vals), unit)
    return m if len(vals) < 2 else f"{m} [{fmt(min(vals), unit)}-{fmt(max(vals), unit)}]"


def pair(results, w, key, spec):
    """tlsloop's and nginx's median of one side figure ("-" where there is none)."""
    out = []
    for name in ("tlsloop", "nginx"):
        vals = [x[key] for x in results[(w, name)] if x.get(key) is not None]
        out.append(format(statistics.median(vals), spec) if vals else "-")
    return " / ".join(out)


def draw_chart(rows, path, also=()):
    gp = shutil.which("gnuplot")
    if not gp:
        print("perf: gnuplot is not installed: no chart (scripts/deps.sh --bench)", file=sys.stderr)
        return False
    data = path + ".dat"
    refs = ["nginx"] + [ALSO[s] for s in also]
    with open(data, "w") as f:
        for w, ratios, must in rows:
            f.write(f"\"{w}\" {must if must else 'NaN'} "
                    + " ".join("NaN" if r is None else f"{r:.3f}" for r in ratios) + "\n")
    colors = ["#2f6fb0", "#6aa84f", "#e69138"]
    bars = ", ".join(f"\"{data}\" using {3 + i}:xtic(1) title \"tlsloop / {ref}\" "
                     f"lc rgb \"{colors[i % len(colors)]}\"" for i, ref in enumerate(refs))
    script = f"""set terminal pngcairo size 1000,440 font "DejaVu Sans,10"
set output "{path}"
set title "tlsloop serve / {' / '.join(refs)}: server CPU per operation (W5: memory, W6: p99), lower is better"
set style data histogram
set style histogram clustered gap 2
set key top left
set style fill solid 0.8 border -1
set yrange [0:1.4]
set grid ytics
set ylabel "tlsloop / the other server"
set xtics rotate by -30
plot {bars}, \\
     "{data}" using 0:2 with points pt 7 ps 1.2 lc rgb "#c0392b" title "must (against nginx)", \\
     1 with lines lc rgb "#555555" dt 2 title "as fast as the other"
"""
    r = subprocess.run([gp], input=script, text=True, capture_output=True)
    os.unlink(data)
    if r.returncode != 0:
        print(f"perf: gnuplot failed: {r.stderr}", file=sys.stderr)
        return False
    return True


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Workloads: " + ", ".join(WORKLOADS) + ". Needs nginx, wrk, taskset, prlimit "
               "(scripts/deps.sh --bench); gnuplot for the chart; h2o and haproxy for --also.")
    ap.add_argument("--rounds", type=int, default=5, metavar="N",
                    help="rounds per workload and server, interleaved (default 5; W6 has 2 more)")
    ap.add_argument("--duration", type=int, default=6, metavar="S",
                    help="seconds per round (default 6)")
    ap.add_argument("--quick", action="store_true",
                    help="1 round of 5 s per workload (about 4 minutes)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), metavar="W,...",
                    help="comma-separated subset, e.g. W1-ecdsa,W6 (default: all)")
    ap.add_argument("--also", default="tlsloop-kdf", metavar="SERVERS",
                    help="more servers in the same rounds: tlsloop-uring (tlsloop on io_uring), "
                         "tlsloop-uring-single, tlsloop-uring-poll (its listeners on one-shot "
                         "accepts, or polls and accept4, TLSLOOP_IO_ACCEPT), "
                         "tlsloop-kdf (tlsloop with --tls-kdf "
                         "tlsloop; the default), h2o, haproxy (each adds about 5 min); '' for none")
    ap.add_argument("--w6-tuned", action="store_true",
                    help="W6 on the earlier footing: 20 connections, a flood of 128 at nice 19, the "
                         "latency client on a short scheduler slice (default: as users run it)")
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"), metavar="DIR",
                    help="build directory whose tlsloop to measure (default $BUILD or build)")
    ap.add_argument("--write-docs", action="store_true",
                    help="replace the results block in docs/benchmarks.md, draw docs/perf.png")
    a = ap.parse_args()
    also = [s for s in a.also.split(",") if s]
    for s in also:
        if s not in ALSO:
            ap.error(f"unknown server {s} for --also (known: {', '.join(ALSO)})")
    names = ["tlsloop", "nginx"] + also
    if a.quick:
        a.rounds, a.duration = 1, 5
    workloads = a.workloads.split(",")
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w} (known: {', '.join(WORKLOADS)})")
    binary = os.path.abspath(f"{a.build}/tlsloop")
    if not os.access(binary, os.X_OK):
        print(f"perf: no {binary}: build it first (make bench-build, or --build DIR)",
              file=sys.stderr)
        return 2
    missing = [t for t in ("nginx", "wrk", "taskset", "prlimit",
                                *(x for x in also if x not in OURS)) if not shutil.which(t)]
    if missing:
        print(f"perf: missing {', '.join(missing)} (scripts/deps.sh --bench)", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    tmp = tempfile.mkdtemp(prefix="tlsloop-perf.")
    os.chmod(tmp, 0o755)
    www = svn.make_files(tmp)
    t_start = time.monotonic()
    noise = [hiccups(a.build)]
    servers = {}
    results = {}
    ok = True
    try:
        for kind in ("ecdsa", "rsa"):
            p = (svn.free_port(), svn.free_port())
            cmd = ["prlimit", "--nofile=20000"] + svn.tlsloop_cmd(binary, tmp, kind, *p, www)
            cmd[cmd.index("--max-conns") + 1] = "15000"
            servers[("tlsloop", kind)] = svn.Server(f"tlsloop-{kind}", cmd, p, tmp)
            p = (svn.free_port(), svn.free_port())
            ncmd = svn.nginx_conf(tmp, kind, *p, www)
            conf = ncmd[-1]
            text = open(conf).read()
            open(conf, "w").write(text.replace(
                "worker_processes 1;", "worker_processes 1;\nworker_rlimit_nofile 20000;").replace(
                "worker_connections 8192;", "worker_connections 16384;"))
            servers[("nginx", kind)] = svn.Server(f"nginx-{kind}", ["prlimit", "--nofile=20000"]
                                                  + ncmd, p, tmp)
            for name in also:
                p = (svn.free_port(), svn.free_port())
                if name in OURS:
                    cmd = svn.tlsloop_cmd(binary, tmp, kind, *p, www)
                    cmd += ["--tls-kdf", "tlsloop"] if name == "tlsloop-kdf" else []
                    cmd += ["--io", "uring"] if name.startswith("tlsloop-uring") else []
                    cmd[cmd.index("--max-conns") + 1] = "15000"
                else:
                    cmd = (h2o_cmd if name == "h2o" else haproxy_cmd)(tmp, kind, *p, www)
                env = ["env", f"TLSLOOP_IO_ACCEPT={ACCEPT_ENV[name]}"] if name in ACCEPT_ENV else []
                servers[(name, kind)] = svn.Server(f"{name}-{kind}", env + ["prlimit",
                                                   "--nofile=20000"] + cmd, p, tmp)
        for w in workloads:
            kind = "rsa" if w in ("W1-rsa", "W6") else "ecdsa"
            # W5 is a count, not a rate; W6's p99 is the noisiest figure (the VM's millisecond
            # hiccups land in it), so it gets two rounds more for its median.
            rounds = 1 if w == "W5" else a.rounds + 2 if w == "W6" else a.rounds
            for r in range(rounds):
                # Each round starts with the next server: A B C, B C A, ...
                for name in names[r % len(names):] + names[:r % len(names)]:
                    if not serves(name, w):
                        continue
                    srv = servers[(name, kind)]
                    if w.startswith("W1") or w.startswith("W2"):
                        res = handshake_run(w, srv, binary, tmp, a.duration)
                    elif w == "W5":
                        res = idle_rss(srv)
                    elif w == "W6":
                        res = storm_run(srv, binary, a.duration, a.w6_tuned)
                    else:
                        res = wrk_run(w, srv, tmp, a.duration)
                    if name in also and w.startswith("W2"):
                        # Their resumption rate is theirs (h2o 2.2.5: every second TLS 1.3
                        # ticket); it is shown, not held against the run.
                        res["ok"] = res["errors"] == 0
                    ok &= res["ok"]
                    results.setdefault((w, name), []).append(res)
                    extra = (f", p99.9 {res['p999']:.2f} ms, max {res['max']:.2f} ms, idle p99 "
                             f"{res['idle_p99']:.2f} ms, flood {res['flood_hs']:.0f} hs/s"
                             if w == "W6" else "")
                    print(f"  {w:9s} round {r + 1} {name:7s}: {fmt(res['value'], TARGETS[w][1])} "
                          f"{TARGETS[w][1]}{extra}{'' if res['ok'] else '  (NOT CLEAN)'}",
                          flush=True)
    finally:
        for s in servers.values():
            s.stop()
    noise.append(hiccups(a.build))
    lim = limits(a.build) if any(w in LIMIT_KEYS for w in workloads) else {}
    elapsed = (time.monotonic() - t_start) / 60
    shutil.rmtree(tmp, ignore_errors=True)

    lines = ["| workload | unit | nginx | tlsloop | **tlsloop/nginx** | each round's ratio | must | aim "
             "| limit (OpenSSL alone, in-process) | ops/s, tlsloop / nginx | p99 ms, tlsloop / nginx | "
             "client CPU %, tlsloop / nginx |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    chart = []
    for w in workloads:
        desc, unit, must, aim = TARGETS[w]
        tv = [x["value"] for x in results[(w, "tlsloop")]]
        nv = [x["value"] for x in results[(w, "nginx")]]
        t, n = statistics.median(tv), statistics.median(nv)
        ratio = t / n if n else float("nan")
        verdict = "" if must is None else (" ok" if ratio <= must else " MISSED")
        if w == "W6":
            ti = statistics.median([x["idle_p99"] for x in results[(w, "tlsloop")]])
            ni = statistics.median([x["idle_p99"] for x in results[(w, "nginx")]])
            t9 = statistics.median([x["p999"] for x in results[(w, "tlsloop")]])
            n9 = statistics.median([x["p999"] for x in results[(w, "nginx")]])
            tm = max(x["max"] for x in results[(w, "tlsloop")])
            nm = max(x["max"] for x in results[(w, "nginx")])
            desc += (f" (idle p99: {ti:.2f} / {ni:.2f} ms; p99.9 {t9:.2f} / {n9:.2f} ms, max "
                     f"{tm:.2f} / {nm:.2f} ms; ops/s: the flood's full handshakes/s"
                     f"{'; tuned footing' if a.w6_tuned else ''})")
        # The ratio of the medians decides; each round's own ratio shows how far the machine's
        # speed drifted between the servers' turns (back to back without --also).
        rounds_ratio = " ".join(f"{t_ / n_:.2f}" for t_, n_ in zip(tv, nv) if n_)
        lines.append(f"| {w}: {desc} | {unit} | {spread(nv, unit)} | {spread(tv, unit)} | "
                     f"**{ratio:.2f}**{verdict} | {rounds_ratio} | {must or '-'} | {aim or '-'} | "
                     f"{fmt(lim.get(w), unit)} | {pair(results, w, 'rate', '.0f')} | "
                     f"{pair(results, w, 'p99', '.2f')} | {pair(results, w, 'gen_cpu', '.0f')} |")
        chart.append((w, [ratio] + [ratio_to(results, w, s) for s in also], must))
    if also:
        lines += ["", "Against all three (medians; ratio: tlsloop's figure over the other's):", "",
                  "| workload | unit | tlsloop | nginx | " + " | ".join(ALSO[s] for s in also)
                  + " | tlsloop/nginx | " + " | ".join(f"tlsloop/{ALSO[s]}" for s in also) + " |",
                  "|---|---|---|---|" + "---|" * (2 * len(also) + 1)]
        for w in workloads:
            unit = TARGETS[w][1]
            cells = [cell(results, w, s, unit) for s in ["tlsloop", "nginx"] + also]
            ratios = [ratio_to(results, w, s) for s in ["nginx"] + also]
            lines.append(f"| {w} | {unit} | " + " | ".join(cells) + " | "
                         + " | ".join("-" if r is None else f"**{r:.2f}**" for r in ratios) + " |")
    facts = (f"{cpu_model()}, {os.cpu_count()} CPUs, Linux "
             f"{platform.release()}, {subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.strip()}, "
             f"{subprocess.run(['nginx', '-v'], capture_output=True, text=True).stderr.strip()}")
    for s in also:
        if s in OURS:
            facts += (", tlsloop-kdf: `tlsloop serve --tls-kdf tlsloop`" if s == "tlsloop-kdf"
                      else f", {s}: `tlsloop serve --io uring`" + (
                          f" with TLSLOOP_IO_ACCEPT={ACCEPT_ENV[s]}" if s in ACCEPT_ENV else ""))
            continue
        v = subprocess.run([s, "-v"], capture_output=True, text=True)
        facts += ", " + (v.stdout or v.stderr).splitlines()[0].strip()
    if all(noise):
        facts += ("; the machine's own latency noise (build/bench/hiccups, idle, before and after): "
                  + " and ".join(f"{n:.1f} gaps over 1 ms per second on the two CPUs, the "
                                 f"longest {m:.1f} ms"
                                 for n, m in noise))
    command = " ".join(["python3 bench/perf.py"] + [shlex.quote(x) for x in sys.argv[1:]])
    head = (f"`{command}` ({a.rounds} round"
            f"{'s' if a.rounds > 1 else ''} of {a.duration} s per workload and server), "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {elapsed:.1f} min; {facts}")
    print()
    print(head)
    print("\n".join(lines))
    if a.write_docs:
        png = os.path.join(HERE, "..", "docs", "perf.png")
        drew = draw_chart(chart, png, also)
        doc = os.path.join(HERE, "..", "docs", "benchmarks.md")
        text = open(doc).read()
        block = (f"<!-- perf:begin (written by bench/perf.py --write-docs) -->\n{head}\n\n"
                 + "\n".join(lines) + (f"\n\n![tlsloop / {' / '.join(['nginx'] + [ALSO[s] for s in also])} per workload](perf.png)\n"
                                       if drew else "\n") + "<!-- perf:end -->")
        if "<!-- perf:begin" in text:
            text = re.sub(r"<!-- perf:begin.*?<!-- perf:end -->", lambda m: block, text, flags=re.S)
        else:
            text += "\n## Performance: tlsloop serve against nginx and the limit (`bench/perf.py`)\n\n" + block + "\n"
        open(doc, "w").write(text)
        print(f"perf: wrote docs/benchmarks.md{' and docs/perf.png' if drew else ''}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
