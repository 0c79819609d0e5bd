#!/usr/bin/env python3
"""bench_validate.py - is `tlsloop bench` right? (docs/benchmarks.md, "Validating tlsloop bench")

On `tlsloop serve` and nginx, each with one worker pinned to CPU 0, the generators pinned to
CPU 1:
  1. keep-alive requests/s of `tlsloop bench` and of wrk with the same threads and connections
     (-t1 -c50), interleaved round by round: the ratio should stay within 10%;
  2. handshakes: `tlsloop bench --new-conn` and `--resume` against both servers, the generator's
     full/resumed counts against the servers' own (tlsloop's /metrics; nginx's access log with
     $ssl_session_reused);
  3. the generator's capacity: its own CPU per operation (from getrusage over the window), hence
     how many operations per second one generator thread can drive;
  4. HTTP/2: `tlsloop bench --h2 -m 10` against h2load with the same -c and -m, on h2o and on
     nginx (http2 on its TLS listener): first the counts (-n N each: both report N requests
     succeeded, no error, and the server's access log grows by N, every line HTTP/2), then
     requests/s in interleaved rounds (the ratio should stay within 10%), with the server's CPU
     per request under each generator (the same work, whoever asks for it).

usage: bench/bench_validate.py [--rounds N] [--duration S] [--build DIR] [--only h1|h2]
Needs nginx, wrk, h2o, h2load (scripts/deps.sh, scripts/deps.sh --bench). Exit status 0 when
every check held, 1 otherwise.
"""
import argparse
import importlib.util
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("svn", os.path.join(HERE, "serve_vs_nginx.py"))
svn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(svn)
spec = importlib.util.spec_from_file_location("perf", os.path.join(HERE, "perf.py"))
perf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(perf)


def tl_bench(binary, *args, timeout=120):
    r = subprocess.run(["taskset", "-c", "1", binary, "bench", "--json", "--insecure", *args],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode not in (0, 1):
        raise SystemExit(f"tlsloop bench failed: {r.stderr}")
    return json.loads(r.stdout)


def wrk(url, duration, conf):
    r = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{duration}s", url],
                       capture_output=True, text=True, timeout=duration * 4 + 30,
                       env=dict(os.environ, OPENSSL_CONF=conf))
    p = svn.wrk_parse(r.stdout)
    return p[0] / p[1] if p else 0.0


def h2load(url, args, timeout):
    """h2load on CPU 1: (requests, succeeded, failed, errored, 2xx, req/s, mean ms)."""
    r = subprocess.run(["taskset", "-c", "1", "h2load", *args, url], capture_output=True,
                       text=True, timeout=timeout)
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) "
                  r"failed, (\d+) errored", r.stdout)
    st = re.search(r"status codes: (\d+) 2xx", r.stdout)
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", r.stdout)
    lat = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", r.stdout)
    if not (m and st and rate):
        raise SystemExit(f"h2load failed: {r.stdout}{r.stderr}")
    mean = float(lat.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[lat.group(2)] if lat else 0.0
    return (int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)),
            int(st.group(1)), float(rate.group(1)), mean)


def h2o_conf(tmp, https, http, www):
    """perf.py's h2o (one thread, the same certificate and files) with an access log of the
    protocol and status of every request."""
    cmd = perf.h2o_cmd(tmp, "ecdsa", https, http, www)
    conf = cmd[-1]
    log = f'access-log:\n  path: {tmp}/h2o-access.log\n  format: "%H %s"\n'
    text = open(conf).read().replace("error-log:", log + "error-log:", 1)
    open(conf, "w").write(text)
    return cmd


def log_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def h2load_tls(url):
    """The TLS version and suite h2load negotiates with this server, as tlsloop bench options:
    both generators then differ in their HTTP/2 only."""
    r = subprocess.run(["h2load", "-n", "1", "-c", "1", url], capture_output=True, text=True,
                       timeout=30)
    v = re.search(r"TLS Protocol: (TLSv1\.[23])", r.stdout)
    c = re.search(r"Cipher: (\S+)", r.stdout)
    if not (v and c):
        raise SystemExit(f"h2load failed: {r.stdout}{r.stderr}")
    return ["--tlsv1.3" if v.group(1) == "TLSv1.3" else "--tlsv1.2", "--cipher", c.group(1)]


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def h2_checks(binary, a, out, servers):
    """Section 4; servers: (name, Server, access log, what an HTTP/2 line contains)."""
    ok = True
    n = 20000
    out.append("")
    out.append(f"HTTP/2 counts: -n {n} -c 50 -m 10, each generator, the server's access log:")
    out.append("| server | generator | requests | succeeded (2xx) | failed/errored | "
               "server log lines | all HTTP/2 | agree |")
    out.append("|---|---|---|---|---|---|---|---|")
    tls_args = {}
    for name, srv, log, mark in servers:
        url = f"https://127.0.0.1:{srv.https}/hello.txt"
        tls_args[name] = h2load_tls(url)
        for gen in ("h2load", "tlsloop bench"):
            before = len(log_lines(log))
            if gen == "h2load":
                done, succ, failed, errored, ok2, _, _ = h2load(
                    url, ["-n", str(n), "-c", "50", "-m", "10"], 120)
                bad = failed + errored
            else:
                rep = tl_bench(binary, "--h2", "-m", "10", "-c", "50", "-n", str(n),
                               *tls_args[name], url)
                done, ok2, bad = rep["requests"], rep["status"]["2xx"], rep["errors_total"]
                succ = ok2
            time.sleep(0.5)   # the last lines reach the log
            lines = log_lines(log)[before:]
            all_h2 = all(mark in x for x in lines)
            agree = done == succ == ok2 == n and bad == 0 and len(lines) == n and all_h2
            ok &= agree
            out.append(f"| {name} | {gen} | {done} | {ok2} | {bad} | {len(lines)} | "
                       f"{'yes' if all_h2 else 'NO'} | {'yes' if agree else 'NO'} |")
    out.append("")
    out.append("HTTP/2 requests/s, -c 50 -m 10, %d s runs after 1 s of warm-up (medians of %d "
               "rounds, interleaved), server CPU per request under each generator:" %
               (a.duration, a.rounds))
    out.append("| server | tlsloop bench req/s | h2load req/s | bench/h2load | "
               "server us/req (bench, h2load) | generator us/req (bench, h2load) | "
               "mean latency ms (bench, h2load) |")
    out.append("|---|---|---|---|---|---|---|")
    for name, srv, _, _ in servers:
        url = f"https://127.0.0.1:{srv.https}/hello.txt"
        ours, theirs, cpu_o, cpu_t, lat_o, lat_t, gen_o, gen_t = ([] for _ in range(8))
        for r in range(a.rounds):
            for which in (("ours", "h2load") if r % 2 == 0 else ("h2load", "ours")):
                c0, g0 = srv.cpu(), children_cpu()
                if which == "ours":
                    rep = tl_bench(binary, "--h2", "-m", "10", "-c", "50", "-d", f"{a.duration}s",
                                   *tls_args[name], url)
                    ok &= rep["errors_total"] == 0
                    ours.append(rep["requests_per_s"])
                    lat_o.append(rep["latency_ms"]["mean"])
                    # CPU over the whole run (warm-up included), requests at the measured rate
                    total = rep["requests"] / rep["seconds"] * (a.duration + 1)
                    cpu_o.append((srv.cpu() - c0) / total * 1e6 if total else 0)
                    gen_o.append((children_cpu() - g0) / total * 1e6 if total else 0)
                else:
                    done, succ, failed, errored, _, rate, mean = h2load(
                        url, ["-c", "50", "-m", "10", "-D", str(a.duration),
                              "--warm-up-time", "1"], a.duration * 4 + 30)
                    ok &= failed + errored == 0
                    theirs.append(rate)
                    lat_t.append(mean)
                    total = rate * (a.duration + 1)
                    cpu_t.append((srv.cpu() - c0) / total * 1e6 if total else 0)
                    gen_t.append((children_cpu() - g0) / total * 1e6 if total else 0)
        mo, mt = statistics.median(ours), statistics.median(theirs)
        ratio = mo / mt if mt else 0
        ok &= 0.9 <= ratio <= 1.1
        med = statistics.median
        tls = f"{tls_args[name][0][2:]} {tls_args[name][2]}"   # "tlsv1.3 TLS_AES_128_GCM_SHA256"
        out.append(f"| {name} ({tls}) | {mo:.0f} | {mt:.0f} | **{ratio:.2f}** | "
                   f"{med(cpu_o):.1f}, {med(cpu_t):.1f} | {med(gen_o):.1f}, {med(gen_t):.1f} | "
                   f"{med(lat_o):.2f}, {med(lat_t):.2f} |")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--only", choices=("h1", "h2"), help="sections 1-3 (h1) or 4 (h2) alone")
    a = ap.parse_args()
    binary = os.path.abspath(f"{a.build}/tlsloop")
    if not all(shutil.which(t) for t in ("nginx", "wrk", "taskset", "h2o", "h2load")):
        print("bench_validate: needs nginx, wrk, taskset, h2o and h2load (scripts/deps.sh, "
              "scripts/deps.sh --bench)", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="tlsloop-validate.")
    os.chmod(tmp, 0o755)
    www = svn.make_files(tmp)
    ok = True
    p1 = (svn.free_port(), svn.free_port())
    tls = svn.Server("tlsloop", svn.tlsloop_cmd(binary, tmp, "ecdsa", *p1, www), p1, tmp)
    p2 = (svn.free_port(), svn.free_port())
    cmd = svn.nginx_conf(tmp, "ecdsa", *p2, www)
    conf = cmd[-1]
    text = open(conf).read().replace(
        "access_log off;",
        f"log_format reuse '$ssl_session_reused $server_protocol';\n"
        f"    access_log {tmp}/reuse.log reuse;")
    # HTTP/2 on the TLS listener too (section 4); wrk offers no ALPN: HTTP/1.1 as before.
    text = text.replace(f"listen 127.0.0.1:{p2[0]} ssl;", f"listen 127.0.0.1:{p2[0]} ssl http2;")
    open(conf, "w").write(text)
    ngx = svn.Server("nginx", cmd, p2, tmp)
    p3 = (svn.free_port(), svn.free_port())
    h2o = svn.Server("h2o", h2o_conf(tmp, *p3, www), p3, tmp)
    cnf = f"{tmp}/openssl-aes.cnf"
    out = []
    try:
        if a.only != "h2":
            ok &= h1_checks(binary, a, out, tls, ngx, tmp, cnf)
        if a.only != "h1":
            ok &= h2_checks(binary, a, out, [
                ("h2o", h2o, f"{tmp}/h2o-access.log", "HTTP/2"),
                ("nginx", ngx, f"{tmp}/reuse.log", "HTTP/2.0")])
    finally:
        tls.stop()
        ngx.stop()
        h2o.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(out))
    print("\nbench_validate: " + ("every check held" if ok else "A CHECK FAILED"))
    return 0 if ok else 1


def h1_checks(binary, a, out, tls, ngx, tmp, cnf):
    """Sections 1 to 3."""
    ok = True
    # 1. keep-alive against wrk
    out.append("Keep-alive requests/s, -t1 -c50, %d s runs (medians of %d rounds):" %
               (a.duration, a.rounds))
    out.append("| server | tlsloop bench req/s | wrk req/s | bench/wrk | bench CPU % |")
    out.append("|---|---|---|---|---|")
    capacity = {}
    for name, srv in (("tlsloop serve", tls), ("nginx", ngx)):
        url = f"https://127.0.0.1:{srv.https}/hello.txt"
        ours, theirs, cpus = [], [], []
        for r in range(a.rounds):
            for which in (("ours", "wrk") if r % 2 == 0 else ("wrk", "ours")):
                if which == "ours":
                    rep = tl_bench(binary, "-t1", "-c50", "-d", f"{a.duration}s",
                                   "--cipher", "TLS_AES_128_GCM_SHA256", url)
                    ours.append(rep["requests_per_s"])
                    cpus.append(rep["generator_cpu_percent"])
                else:
                    theirs.append(wrk(url, a.duration, cnf))
        mo, mt = statistics.median(ours), statistics.median(theirs)
        ratio = mo / mt if mt else 0
        ok &= 0.9 <= ratio <= 1.1
        capacity[name] = (mo, statistics.median(cpus))
        out.append(f"| {name} | {mo:.0f} | {mt:.0f} | **{ratio:.2f}** | "
                   f"{statistics.median(cpus):.0f} |")
    # 2. handshakes against the servers' own counters
    out.append("")
    out.append("Handshakes counted by the generator and by the servers (%d s runs, -c 20):" %
               a.duration)
    out.append("| server | mode | bench full | bench resumed | server full | server resumed "
               "| agree |")
    out.append("|---|---|---|---|---|---|---|")
    for name, srv in (("tlsloop serve", tls), ("nginx", ngx)):
        for mode in ("--new-conn", "--resume"):
            url = f"https://127.0.0.1:{srv.https}/hello.txt"
            if srv is tls:
                f0, r0 = svn.tlsloop_handshakes(srv)
            else:
                n0 = len(log_lines(f"{tmp}/reuse.log"))
            rep = tl_bench(binary, mode, "-c", "20", "-d", f"{a.duration}s", "--warmup", "0",
                           url)
            time.sleep(0.5)   # the last closes reach the server's counters and log
            if srv is tls:
                f1, r1 = svn.tlsloop_handshakes(srv)
                sf, sr = f1 - f0, r1 - r0
            else:
                marks = [x.split()[0] for x in log_lines(f"{tmp}/reuse.log")[n0:]]
                sf, sr = marks.count("."), marks.count("r")
            bf, br = rep["handshakes"]["full"], rep["handshakes"]["resumed"]
            # The server may count up to -c more: connections cut off as the run ended;
            # nginx logs only those that got as far as a request.
            agree = (0 <= sf - bf <= 20 and 0 <= sr - br <= 20) if srv is tls else \
                    (abs(sf - bf) <= 20 and abs(sr - br) <= 20)
            ok &= agree
            out.append(f"| {name} | {mode} | {bf} | {br} | {sf} | {sr} | "
                       f"{'yes' if agree else 'NO'} |")
            if mode == "--new-conn" and srv is tls:
                capacity["full handshakes"] = (rep["requests_per_s"],
                                               rep["generator_cpu_percent"])
            if mode == "--resume" and srv is tls:
                capacity["resumed handshakes"] = (rep["requests_per_s"],
                                                  rep["generator_cpu_percent"])
    # 3. capacity
    out.append("")
    out.append("What one generator thread can drive (operations/s divided by its CPU share):")
    out.append("| workload | measured ops/s | generator CPU % | one thread at 100% |")
    out.append("|---|---|---|---|")
    for what, key in (("keep-alive requests (vs tlsloop serve)", "tlsloop serve"),
                      ("keep-alive requests (vs nginx)", "nginx"),
                      ("full handshakes + GET", "full handshakes"),
                      ("resumed handshakes + GET", "resumed handshakes")):
        ops, cpu = capacity[key]
        out.append(f"| {what} | {ops:.0f} | {cpu:.0f} | {ops / (cpu / 100) if cpu else 0:.0f} |")
    return ok


if __name__ == "__main__":
    sys.exit(main())
