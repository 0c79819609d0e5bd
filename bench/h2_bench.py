#!/usr/bin/env python3
"""h2_bench.py - HTTP/2 serving: `tlsloop serve` against nginx and h2o, driven by h2load, in one
run (docs/benchmarks.md, "HTTP/2").

Each server runs ONE worker pinned to CPU 0 (tlsloop's task thread too), with the same ECDSA P-256
certificate and files (serve_vs_nginx.py makes them), TLS 1.3, session cache and tickets on,
access logs off, files cached; h2load (nghttp2-client) runs pinned to CPU 1 with one thread. The
servers take turns, round after round, and the table gives medians with [min-max]. The figure is
server CPU per operation (utime+stime of the server's process tree from /proc over the run,
divided by the requests done, or by the MB of body for the download).

Workloads:
  H2-small   h2load -c 50 -m 10: 50 connections, 10 concurrent streams each, GET of a 13-byte file
             (the issue's h2 request figure; us/req)
  H1-small   the same file over HTTP/1.1 keep-alive with the same client (h2load --h1 -c 50 -m 1):
             each server's own HTTP/1.1 request, which its h2 request should undercut (us/req)
  H2-16m     a 16 MiB download over h2, 2 connections, one stream each (us/MB)

Every run checks that the protocol h2load negotiated is the one asked for and that no request
failed; a run that did not is marked NOT CLEAN and the exit status is 1.

usage: bench/h2_bench.py [--rounds N] [--duration S] [--workloads H2-small,...] [--servers
                         tlsloop,nginx,h2o] [--build DIR]
Needs h2load (nghttp2-client), nginx (with http_v2), h2o and taskset: scripts/deps.sh --bench.
"""
import argparse
import importlib.util
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


svn = load("svn", "serve_vs_nginx.py")
perf = load("perf", "perf.py")

WORKLOADS = {
    # name: (description, unit, h2load arguments, path)
    "H2-small": ("GET 13 B over h2, -c 50 -m 10", "us/req", ["-c", "50", "-m", "10"], "/hello.txt"),
    "H1-small": ("GET 13 B over HTTP/1.1 keep-alive, -c 50", "us/req",
                 ["--h1", "-c", "50", "-m", "1"], "/hello.txt"),
    "H2-16m": ("16 MiB download over h2, -c 2", "us/MB", ["-c", "2", "-m", "1"], "/16m.bin"),
}
SERVERS = ["tlsloop", "nginx", "h2o"]


def nginx_h2_cmd(tmp, https, http, www):
    cmd = svn.nginx_conf(tmp, "ecdsa", https, http, www)
    conf = cmd[-1]
    text = open(conf).read()
    # nginx 1.22 turns h2 on per listen socket.
    open(conf, "w").write(text.replace(f"listen 127.0.0.1:{https} ssl;",
                                       f"listen 127.0.0.1:{https} ssl http2;"))
    return cmd


def parse_h2load(out):
    """(requests done, succeeded, failed+errored+timeout, 2xx, seconds, bytes, protocol) or None.
    The 2xx count includes streams still open when the duration ended (not done)."""
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) "
                  r"failed, (\d+) errored, (\d+) timeout", out)
    f = re.search(r"finished in ([\d.]+)(ms|s)", out)
    if not m or not f:
        return None
    st = re.search(r"status codes: (\d+) 2xx", out)
    tr = re.search(r"traffic: [\d.]+\w* \((\d+)\) total, [\d.]+\w* \((\d+)\) headers "
                   r"\(space savings [\d.]+%\), [\d.]+\w* \((\d+)\) data", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    secs = float(f.group(1)) * (1e-3 if f.group(2) == "ms" else 1)
    return {"done": int(m.group(3)), "ok": int(m.group(4)),
            "bad": int(m.group(5)) + int(m.group(6)) + int(m.group(7)),
            "s2xx": int(st.group(1)) if st else 0, "secs": secs,
            "data": int(tr.group(3)) if tr else 0, "proto": proto.group(1) if proto else "?"}


def run(w, srv, duration):
    desc, unit, args, path = WORKLOADS[w]
    want = "http/1.1" if "--h1" in args else "h2"
    cmd = ["h2load", "-t", "1", "-D", str(duration), *args,
           f"https://127.0.0.1:{srv.https}{path}"]
    cpu0 = srv.cpu()
    cli0 = svn.client_cpu()
    out, rc, wall = svn.run_client(cmd, timeout=duration * 4 + 30)
    cpu1 = srv.cpu()
    cli = svn.client_cpu() - cli0
    p = parse_h2load(out)
    if not p:
        return {"ok": False, "value": float("nan"), "rate": 0, "gen_cpu": 0, "proto": "?",
                "out": out[-600:]}
    ops = p["data"] / 1e6 if unit == "us/MB" else p["done"]
    return {"ok": rc == 0 and p["bad"] == 0 and p["s2xx"] >= p["done"] > 0
                  and p["proto"] == want,
            "value": (cpu1 - cpu0) / ops * 1e6 if ops else float("nan"),
            "rate": p["done"] / p["secs"] if p["secs"] else 0, "gen_cpu": cli / wall * 100,
            "proto": p["proto"], "bad": p["bad"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    a = ap.parse_args()
    workloads = [w for w in a.workloads.split(",") if w]
    names = [s for s in a.servers.split(",") if s]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w} (known: {', '.join(WORKLOADS)})")
    for s in names:
        if s not in SERVERS:
            ap.error(f"unknown server {s} (known: {', '.join(SERVERS)})")
    binary = os.path.join(a.build, "tlsloop")
    need = ["h2load", "taskset"] + [s for s in names if s != "tlsloop"]
    missing = [t for t in need if not shutil.which(t)]
    if "tlsloop" in names and not os.access(binary, os.X_OK):
        missing.append(binary)
    if missing:
        print(f"h2_bench: missing {', '.join(missing)} (scripts/deps.sh --bench; make)",
              file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="tlsloop-h2.")
    os.chmod(tmp, 0o755)
    www = svn.make_files(tmp)
    servers, results, ok = {}, {}, True
    t_start = time.monotonic()
    try:
        for name in names:
            p = (svn.free_port(), svn.free_port())
            if name == "tlsloop":
                cmd = svn.tlsloop_cmd(binary, tmp, "ecdsa", *p, www)
            elif name == "nginx":
                cmd = nginx_h2_cmd(tmp, *p, www)
            else:
                cmd = perf.h2o_cmd(tmp, "ecdsa", *p, www)
            servers[name] = svn.Server(name, cmd, p, tmp)
        for w in workloads:
            for r in range(a.rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    res = run(w, servers[name], a.duration)
                    ok &= res["ok"]
                    results.setdefault((w, name), []).append(res)
                    unit = WORKLOADS[w][1]
                    print(f"  {w:8s} round {r + 1} {name:7s}: {perf.fmt(res['value'], unit)} {unit}"
                          f", {res['rate']:.0f}/s, {res['proto']}"
                          f"{'' if res['ok'] else '  (NOT CLEAN) ' + res.get('out', '')}",
                          flush=True)
    finally:
        for s in servers.values():
            s.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    elapsed = (time.monotonic() - t_start) / 60
    others = [n for n in names if n != "tlsloop"]
    print()
    print(f"`python3 bench/h2_bench.py {' '.join(sys.argv[1:])}` ({a.rounds} rounds of "
          f"{a.duration} s), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{elapsed:.1f} min, {perf.cpu_model()}, {os.cpu_count()} CPUs")
    print()
    print("| workload | unit | " + " | ".join(names) + " | "
          + " | ".join(f"tlsloop/{n}" for n in others) + " | requests/s, " + " / ".join(names)
          + " |")
    print("|---|---|" + "---|" * (len(names) + len(others) + 1))
    for w in workloads:
        desc, unit = WORKLOADS[w][:2]
        cells, med = [], {}
        for n in names:
            vals = [x["value"] for x in results[(w, n)]]
            med[n] = statistics.median(vals)
            cells.append(perf.spread(vals, unit))
        ratios = [f"**{med['tlsloop'] / med[n]:.2f}**" if "tlsloop" in med and med[n] else "-"
                  for n in others]
        rates = " / ".join(f"{statistics.median([x['rate'] for x in results[(w, n)]]):.0f}"
                           for n in names)
        print(f"| {w}: {desc} | {unit} | " + " | ".join(cells) + " | " + " | ".join(ratios)
              + f" | {rates} |")
    if ("H2-small", "tlsloop") in results and ("H1-small", "tlsloop") in results:
        h2 = statistics.median([x["value"] for x in results[("H2-small", "tlsloop")]])
        h1 = statistics.median([x["value"] for x in results[("H1-small", "tlsloop")]])
        print(f"\ntlsloop's h2 request over its HTTP/1.1 request: {h2 / h1:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
