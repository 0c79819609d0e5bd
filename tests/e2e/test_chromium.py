#!/usr/bin/env python3
"""test_chromium.py - a real browser against `tlsloop serve`, on `--io epoll` and `--io uring`:
headless Chromium loads a page whose script marks the DOM (two resources), a page with many
sub-resources (scripts and images, all on one HTTP/2 connection), and a page whose fetch()
downloads 2 MiB and writes its length and SHA-256 into the DOM. Chromium trusts the server's key
by its SPKI hash only; its NetLog shows TLS 1.3 with ALPN h2 (the server's default picks it from
Chromium's h2 and http/1.1) and every request on an HTTP/2 session over one of those TLS sockets;
the access log (HTTP/2.0), the metrics and the error log show the server's side. Without the hash it refuses
the certificate. Chromium is stopped by process group; nothing of it may be left running.

Chromium comes from scripts/deps.sh (Debian's chromium); without it every test fails, naming that.
TLSLOOP_CHROMIUM names another binary. Nothing leaves the machine: every host but localhost
resolves to nothing (--host-resolver-rules) and background networking is off.
"""
import base64
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, fail, run_selected, summary, test, wait_for  # noqa: E402
from e2e_serve import Serve, setup  # noqa: E402

TMP = STATE = CA = None   # setup() names them
CHROMIUM = os.environ.get("TLSLOOP_CHROMIUM") or shutil.which("chromium")
CHROMIUM_TIMEOUT = 30     # seconds per run (stretched by SLOW); a run takes about 2 s here
BIG = 2 * 1024 * 1024
MANY = 40                 # sub-resources of many.html
URING = None              # whether this machine allows io_uring (set in main)


def uring_here():
    """Whether this process may make an io_uring (io_uring_setup(2) with 2 entries works)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    params = ctypes.create_string_buffer(120)   # struct io_uring_params, zeroed
    fd = libc.syscall(ctypes.c_long(425), ctypes.c_long(2), params)
    if fd < 0:
        print(f"  (io_uring refused here: {os.strerror(ctypes.get_errno())}; "
              "the --io uring cases expect the server to fall back to epoll)")
        return False
    os.close(fd)
    return True


def make_site():
    root = f"{TMP}/site"
    os.makedirs(root, exist_ok=True)
    with open(f"{root}/index.html", "w") as f:
        f.write('<!doctype html><html><head><title>tlsloop</title></head><body>\n'
                '<p id="page">page-marker-7f3a</p><div id="script">script not run</div>\n'
                '<script src="/app.js"></script>\n</body></html>\n')
    with open(f"{root}/app.js", "w") as f:
        f.write('document.getElementById("script").textContent = "script-marker-" + (6 * 7);\n')
    with open(f"{root}/big.html", "w") as f:
        f.write('<!doctype html><html><body>\n'
                '<div id="len">pending</div><div id="sha">pending</div>\n'
                '<script>\n'
                'fetch("/big.bin").then(r => r.arrayBuffer()).then(async b => {\n'
                '  document.getElementById("len").textContent = "len=" + b.byteLength;\n'
                '  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", b));\n'
                '  document.getElementById("sha").textContent = "sha=" +\n'
                '    Array.from(d, x => x.toString(16).padStart(2, "0")).join("");\n'
                '}).catch(e => { document.getElementById("len").textContent = "error " + e; });\n'
                '</script></body></html>\n')
    with open(f"{root}/many.html", "w") as f:
        f.write('<!doctype html><html><body>\n<div id="count">0</div>\n<script>var n = 0;'
                'function mark() { document.getElementById("count").textContent = ++n; }'
                '</script>\n')
        for i in range(MANY // 2):
            f.write(f'<script src="/s/{i}.js"></script>\n<img src="/s/{i}.svg" onload="mark()">\n')
        f.write('</body></html>\n')
    os.makedirs(f"{root}/s", exist_ok=True)
    for i in range(MANY // 2):
        with open(f"{root}/s/{i}.js", "w") as f:
            f.write(f"mark(); /* {i} */\n")
        with open(f"{root}/s/{i}.svg", "w") as f:
            f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{i + 1}" height="1"/>\n')
    big = os.urandom(BIG)
    with open(f"{root}/big.bin", "wb") as f:
        f.write(big)
    return root, hashlib.sha256(big).hexdigest()


def spki_hash(cert):
    """base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium's
    --ignore-certificate-errors-spki-list wants it (computed with openssl)."""
    run = lambda args, data: subprocess.run(args, input=data, capture_output=True, timeout=30,
                                            check=True).stdout
    pub = run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"], None)
    der = run(["openssl", "pkey", "-pubin", "-outform", "DER"], pub)
    digest = run(["openssl", "dgst", "-sha256", "-binary"], der)
    assert len(digest) == 32, digest
    return base64.b64encode(digest).decode()


# ---- Chromium ------------------------------------------------------------------------------------

def profile_processes(profile):
    """PIDs of processes whose command line names this profile directory (ours, and only ours)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if profile.encode() in f.read():
                    pids.append(int(d))
        except OSError:
            pass
    return pids


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def quiet(stderr):
    """The end of Chromium's stderr without its complaints about the missing D-Bus."""
    return "\n".join(l for l in stderr.splitlines() if "dbus/" not in l)[-3000:]


def chromium(url, spki=True, tag="run"):
    """Run headless Chromium on url with a fresh profile; (DOM text, NetLog events as (type name,
    source id, params)). Killed with its whole process group after CHROMIUM_TIMEOUT; afterwards
    no process of its group or with its profile in the command line may be left (they are
    killed, and the run fails)."""
    run_dir = tempfile.mkdtemp(prefix=f"chromium-{tag}-", dir=TMP)
    profile, netlog = f"{run_dir}/profile", f"{run_dir}/netlog.json"
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
            f"--log-net-log={netlog}",
            # --dump-dom waits for the page's fetch() too: virtual time runs on only while the
            # network is idle (10 s of it pass in a moment once it is)
            "--virtual-time-budget=10000"]
    if spki:
        args.append(f"--ignore-certificate-errors-spki-list={spki_hash(f'{STATE}/localhost.pem')}")
    args += ["--dump-dom", url]
    with open(f"{run_dir}/stderr", "w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, start_new_session=True)
        pgid = proc.pid   # its own session and group
        try:
            out, _ = proc.communicate(timeout=CHROMIUM_TIMEOUT * SLOW)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.communicate()
            err.seek(0)
            raise AssertionError(f"chromium did not finish within {CHROMIUM_TIMEOUT * SLOW} s "
                                 f"(killed); its stderr:\n{quiet(err.read())}")
        finally:
            # The browser waits for its children, but make sure: wait a moment, then kill.
            try:
                wait_for(lambda: not group_alive(pgid) and not profile_processes(profile), 5,
                         "chromium's processes to exit")
                stray = []
            except AssertionError:
                stray = profile_processes(profile)
                if group_alive(pgid):
                    os.killpg(pgid, signal.SIGKILL)
                for pid in stray:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        print(f"  chromium {tag}: exit {proc.returncode} in {time.monotonic() - t0:.1f}s")
        err.seek(0)
        stderr = err.read()
    assert not stray, f"chromium left processes running (killed): {stray}"
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{quiet(stderr)}"
    try:
        with open(netlog) as f:
            log = json.load(f)
    except (OSError, ValueError) as e:
        raise AssertionError(f"chromium's NetLog {netlog} is unreadable: {e}")
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    events = [(names.get(e["type"], "?"), e["source"]["id"], e.get("params", {}))
              for e in log["events"]]
    return out.decode(errors="replace"), events


def alpn_offered(client_hello):
    """The ALPN protocols of a ClientHello handshake message (bytes from type on)."""
    assert client_hello[0] == 1, "not a ClientHello"
    p = 4 + 2 + 32                              # type, length; legacy_version, random
    p += 1 + client_hello[p]                    # session id
    p += 2 + int.from_bytes(client_hello[p:p + 2], "big")   # cipher suites
    p += 1 + client_hello[p]                    # compression methods
    end = p + 2 + int.from_bytes(client_hello[p:p + 2], "big")
    p += 2
    while p + 4 <= end:
        kind, n = int.from_bytes(client_hello[p:p + 2], "big"), int.from_bytes(
            client_hello[p + 2:p + 4], "big")
        body = client_hello[p + 4:p + 4 + n]
        p += 4 + n
        if kind == 16:                          # application_layer_protocol_negotiation
            names, q = [], 2
            while q < len(body):
                names.append(body[q + 1:q + 1 + body[q]].decode())
                q += 1 + body[q]
            return names
    return []


def check_tls_in_netlog(events, port):
    """Every TLS connection Chromium made (all are to our server: other hosts do not resolve) was
    TLS 1.3 with ALPN h2, and Chromium offered h2 and http/1.1 in each ClientHello. Returns
    {path: the NetLog id of the TLS socket that carried its request} for our server's URLs: each
    request went out on an HTTP/2 session over one of those sockets."""
    connects = {src: p for name, src, p in events if name == "SSL_CONNECT" and "version" in p}
    assert connects, "no completed SSL_CONNECT in chromium's NetLog"
    for p in connects.values():
        assert p["version"] == "TLS 1.3" and p.get("next_proto") == "h2", p
    hellos = [base64.b64decode(p["bytes"]) for name, _, p in events
              if name == "SSL_HANDSHAKE_MESSAGE_SENT" and p.get("type") == 1 and "bytes" in p]
    assert hellos, "chromium's NetLog has no ClientHello bytes"
    for h in hellos:
        offered = alpn_offered(h)
        assert "h2" in offered and "http/1.1" in offered, offered
    # URL request -> the stream job it was bound to -> the HTTP/2 session that sent its HEADERS
    # for that job -> the TLS socket the session was made on.
    urls, job_of, socket_of, session_socket, job_session = {}, {}, {}, {}, {}
    for name, src, p in events:
        if name == "URL_REQUEST_START_JOB" and "url" in p:
            urls[src] = p["url"]
        elif name == "HTTP_STREAM_REQUEST_BOUND_TO_JOB":
            job_of[src] = p["source_dependency"]["id"]
        elif name == "HTTP2_SESSION_INITIALIZED":
            session_socket[src] = p["source_dependency"]["id"]
        elif name == "HTTP2_SESSION_SEND_HEADERS" and "source_dependency" in p:
            job_session[p["source_dependency"]["id"]] = src
    for job, session in job_session.items():
        socket_of[job] = session_socket.get(session)
    base = f"https://localhost:{port}"
    carried = {}
    for req, url in urls.items():
        if url.startswith(base + "/"):
            sock = socket_of.get(job_of.get(req))
            assert sock in connects, f"{url}: not sent on one of the TLS sockets ({sock})"
            carried[url[len(base):]] = sock
    return carried


# ---- the server's side ---------------------------------------------------------------------------

def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10 * SLOW) as r:
        return r.read().decode()


def counter(text, name, labels=""):
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    assert m, f"no {name}{labels} in the metrics:\n{text[:3000]}"
    return float(m.group(1))


ACCESS_RE = re.compile(r'^\S+ - - \[[^]]+\] "GET (\S+) (HTTP/1\.1|HTTP/2\.0)" (\d{3}) (\d+) '
                       r'"[^"]*" "[^"]*" '
                       r'(\S+) (\S+) (new|resumed|-) \S+$')


def access_lines(path):
    """(path, status, size, TLS version, cipher, session) of each request but the test's own to
    the metrics listener (plain HTTP, HTTP/1.1); Chromium's came over HTTP/2."""
    with open(path) as f:
        lines = f.read().splitlines()
    parsed = []
    for line in lines:
        m = ACCESS_RE.match(line)
        assert m, f"unexpected access log line: {line}"
        if m.group(1) == "/metrics" and m.group(5) == "-":
            continue
        assert m.group(2) == "HTTP/2.0", f"not over HTTP/2: {line}"
        parsed.append((m.group(1),) + m.groups()[2:])
    return parsed


def start(io, root, tag):
    access = f"{TMP}/access-{tag}.log"
    srv = Serve("--root", root, "--io", io, "--access-log", access, "--metrics-listen",
                "127.0.0.1:0", listens=["127.0.0.1:0"])
    want = "io_uring" if io == "uring" and URING else "epoll"
    srv.fallback = io == "uring" and not URING   # then one warning says so
    srv.wait_log(rf"listening on .* io={want}\b")
    text = metrics(srv.metrics)
    assert counter(text, "tlsloop_io_backend", '{backend="%s"}' % want) == 1, text[:500]
    return srv, access


def check_server(srv, access, want_paths):
    """The access log has want_paths answered 200 over TLS 1.3 (and at most a favicon 404, which
    Chromium asks for on its own); no failed handshake, TLS error or 5xx; no warning in the
    error log (but the one that says io_uring was refused, where it is). Returns the (path,
    size) of the answers 200."""
    lines = access_lines(access)
    ok = [(path, int(size)) for path, st, size, ver, _, _ in lines if st == "200"]
    assert sorted(p for p, _ in ok) == sorted(want_paths), lines
    for path, st, _, ver, cipher, _ in lines:
        assert st == "200" or (st == "404" and path == "/favicon.ico"), (path, st)
        assert ver == "TLSv1.3" and cipher.startswith("TLS_"), (path, ver, cipher)
    text = metrics(srv.metrics)
    assert counter(text, "tlsloop_handshakes_total", '{kind="full"}') >= 1
    for reason in ("timeout", "closed", "protocol", "alert", "verify", "other"):
        assert counter(text, "tlsloop_handshake_failures_total", '{reason="%s"}' % reason) == 0, \
            (reason, text)
    assert counter(text, "tlsloop_connections_closed_total", '{end="tls-error"}') == 0, text
    assert counter(text, "tlsloop_http_responses_total", '{code="5xx"}') == 0, text
    refused = r" \[warn\] io uring requested; .* running on epoll$"
    bad = [l for l in srv.log_text().splitlines() if not re.search(r" \[(info|debug)\] ", l)
           and not (srv.fallback and re.search(refused, l))]
    assert not bad, f"the server logged problems:\n" + "\n".join(bad)
    return ok


# ---- the cases -----------------------------------------------------------------------------------

def page_and_script(site, io):
    root, _ = site
    srv, access = start(io, root, f"page-{io}")
    try:
        dom, events = chromium(f"https://localhost:{srv.https}/", tag=f"page-{io}")
        assert "page-marker-7f3a" in dom, f"the page did not load; its DOM: {dom[-2000:]!r}"
        assert '<div id="script">script-marker-42</div>' in dom, \
            f"the script did not run; the DOM: {dom[-2000:]!r}"
        carried = check_tls_in_netlog(events, srv.https)
        # The script came over the page's connection (kept alive), not a connection of its own.
        assert carried.get("/") is not None and carried.get("/app.js") == carried["/"], carried
        check_server(srv, access, ["/", "/app.js"])
        print(f"  requests by NetLog socket id: {carried}")
    finally:
        assert srv.stop() == 0


def many_subresources(site, io):
    root, _ = site
    srv, access = start(io, root, f"many-{io}")
    try:
        dom, events = chromium(f"https://localhost:{srv.https}/many.html", tag=f"many-{io}")
        assert f'<div id="count">{MANY}</div>' in dom, f"not every resource loaded: {dom[-800:]!r}"
        carried = check_tls_in_netlog(events, srv.https)
        # All of them over the page's one HTTP/2 connection, as streams side by side.
        assert len({carried[p] for p in carried}) == 1, carried
        want = ["/many.html"] + [f"/s/{i}.{x}" for i in range(MANY // 2) for x in ("js", "svg")]
        check_server(srv, access, want)
        text = metrics(srv.metrics)
        assert counter(text, "tlsloop_http_requests_by_protocol_total",
                       '{protocol="HTTP/2"}') >= MANY + 1, text
    finally:
        assert srv.stop() == 0


def large_download(site, io):
    root, sha = site
    srv, access = start(io, root, f"big-{io}")
    try:
        dom, events = chromium(f"https://localhost:{srv.https}/big.html", tag=f"big-{io}")
        assert f'<div id="len">len={BIG}</div>' in dom, f"length wrong or missing: {dom[-2000:]!r}"
        assert f'<div id="sha">sha={sha}</div>' in dom, f"SHA-256 wrong or missing: {dom[-2000:]!r}"
        carried = check_tls_in_netlog(events, srv.https)
        assert "/big.html" in carried and "/big.bin" in carried, carried
        ok = check_server(srv, access, ["/big.html", "/big.bin"])
        assert ("/big.bin", BIG) in ok, ok
        text = metrics(srv.metrics)
        assert counter(text, "tlsloop_bytes_total", '{direction="out"}') > BIG, text
    finally:
        assert srv.stop() == 0


@test
def untrusted_certificate_is_refused(site):
    """The control: without the SPKI hash Chromium refuses the local CA's certificate, so the
    page (and its marker) never loads; the server logs Chromium's certificate_unknown alert."""
    root, _ = site
    srv, access = start("epoll", root, "untrusted")
    try:
        dom, _ = chromium(f"https://localhost:{srv.https}/", spki=False, tag="untrusted")
        assert "page-marker-7f3a" not in dom and "script-marker" not in dom, dom[-2000:]
        assert access_lines(access) == [], "a request was answered"
        # Chromium got the certificate, judged it and said so with an alert.
        text = metrics(srv.metrics)
        assert counter(text, "tlsloop_handshake_failures_total", '{reason="alert"}') >= 1, text
        assert "the peer sent a fatal alert: certificate unknown" in srv.log_text(), \
            srv.log_text()
    finally:
        assert srv.stop() == 0


def per_backend(fn, io):
    def case(site):
        fn(site, io)
    case.__name__ = f"{fn.__name__}_{io}"
    return test(case)


def main():
    global TMP, STATE, CA, URING
    if not CHROMIUM or not os.access(CHROMIUM, os.X_OK):
        fail("chromium", f"no chromium program ({CHROMIUM or 'not on PATH'}): scripts/deps.sh "
             "installs Debian's chromium (as root; `make test` runs it), or set TLSLOOP_CHROMIUM")
        return summary()
    URING = uring_here()
    with tempfile.TemporaryDirectory() as tmp:
        TMP, STATE, CA = setup(tmp)
        site = make_site()
        tests = [per_backend(page_and_script, "epoll"), per_backend(page_and_script, "uring"),
                 per_backend(many_subresources, "epoll"), per_backend(many_subresources, "uring"),
                 per_backend(large_download, "epoll"), per_backend(large_download, "uring"),
                 untrusted_certificate_is_refused]
        run_selected(tests, site)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
