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
     how many operations per second one generator thread can drive.

usage: bench/bench_validate.py [--rounds N] [--duration S] [--build DIR]
Needs nginx, wrk (scripts/deps.sh --bench). Exit status 0 when every check held, 1 otherwise.
"""
import argparse
import importlib.util
import json
import os
import re
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    a = ap.parse_args()
    binary = os.path.abspath(f"{a.build}/tlsloop")
    if not all(shutil.which(t) for t in ("nginx", "wrk", "taskset")):
        print("bench_validate: needs nginx, wrk and taskset (scripts/deps.sh --bench)",
              file=sys.stderr)
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
        f"log_format reuse '$ssl_session_reused';\n    access_log {tmp}/reuse.log reuse;")
    open(conf, "w").write(text)
    ngx = svn.Server("nginx", cmd, p2, tmp)
    cnf = f"{tmp}/openssl-aes.cnf"
    out = []
    try:
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
                    n0 = len(open(f"{tmp}/reuse.log").read().split())
                rep = tl_bench(binary, mode, "-c", "20", "-d", f"{a.duration}s", "--warmup", "0",
                               url)
                time.sleep(0.5)   # the last closes reach the server's counters and log
                if srv is tls:
                    f1, r1 = svn.tlsloop_handshakes(srv)
                    sf, sr = f1 - f0, r1 - r0
                else:
                    marks = open(f"{tmp}/reuse.log").read().split()[n0:]
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
    finally:
        tls.stop()
        ngx.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(out))
    print("\nbench_validate: " + ("every check held" if ok else "A CHECK FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
