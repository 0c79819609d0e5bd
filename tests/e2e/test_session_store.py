#!/usr/bin/env python3
"""test_session_store.py - resumption across instances (docs/session-store.md): two `tlsloop
serve` instances sharing a ticket key file (made by `tlsloop ticket-keys`) and a session store
(memcached or redis-server, started here on an ephemeral port and stopped by PID).

- a TLS 1.2 client without tickets (python's ssl with OP_NO_TICKET, openssl s_client -no_ticket
  -sess_out/-sess_in) gets a session from A and resumes it on B, with memcached and with Redis;
  a third instance with the same keys but no store does not (the store is what does it);
- TLS 1.3 tickets (and TLS 1.2 tickets) from A resume on B;
- `ticket-keys rotate` twice during a run of reconnects alternating A and B, each offering the
  session it got last (TLS 1.2 by ID, TLS 1.2 tickets, TLS 1.3 tickets): >= 99% resume;
- the store killed mid-run: every handshake measured, none stalls (a store that is down is a
  full handshake at once); the store stopped (SIGSTOP, it takes connections and answers nothing):
  handshakes wait at most session-store-timeout; resumption returns when it is back.

Counts: RECONNECTS (default 300; SOAK=1 makes it 1000). Figures go to stdout ("figure: ...").
"""
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, run_selected, summary, test, wait_for  # noqa: E402
from e2e_serve import BIN, Serve, get, setup  # noqa: E402
from e2e_store import Store  # noqa: E402

TMP = STATE = CA = None   # setup() names them
KEYS = None
RETRY_NOTE = "2 ms later (the write from the other instance not there yet)"
RECONNECTS = int(os.environ.get("RECONNECTS", "1000" if os.environ.get("SOAK") == "1" else "300"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def instance(store, *extra):
    args = ["--ticket-key-file", KEYS, "--workers", "2"]
    if store:
        args += ["--session-store", store.url if isinstance(store, Store) else store]
    return Serve(*args, *extra, listens=["127.0.0.1:0"])


def client_ctx(kind):
    """tls12-id: TLS 1.2 without tickets; tls12-ticket; tls13."""
    c = ssl.create_default_context(cafile=CA)
    if kind.startswith("tls12"):
        c.maximum_version = ssl.TLSVersion.TLSv1_2
    if kind == "tls12-id":
        c.options |= ssl.OP_NO_TICKET
    return c


def connect(port, c, session=None, request=True):
    """One connection: (resumed, the session to offer next, handshake seconds)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    t0 = time.monotonic()
    s = c.wrap_socket(raw, server_hostname="localhost", session=session,
                      do_handshake_on_connect=False)
    try:
        s.do_handshake()
        hs = time.monotonic() - t0
        if request:   # TLS 1.3 tickets come after the handshake: read an answer
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            while s.recv(65536):
                pass
        return s.session_reused, s.session, hs
    finally:
        s.close()


def metric(srv, event):
    _, _, body, _ = get(srv.metrics, "/metrics", tls=False)
    m = re.search(rf'^tlsloop_session_store_total\{{event="{event}"\}} (\d+)', body.decode(), re.M)
    return int(m.group(1)) if m else None


def s_client(port, *args):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                           "-no_ticket", "-servername", "localhost", "-CAfile", CA, *args],
                          input=b"Q\n", capture_output=True, timeout=20 * SLOW)


def across_instances(kind):
    store = Store(kind)
    a = b = c = None
    try:
        a = instance(store, "--metrics-listen", "127.0.0.1:0")
        b = instance(store)
        c = instance(None)   # the same keys, no store
        wait_for(lambda: metric(a, "connect") == 2, 10, "both workers of A connected")
        cx = client_ctx("tls12-id")
        r, sess, _ = connect(a.https, cx)
        assert not r and sess is not None
        assert not sess.has_ticket
        wait_for(lambda: metric(a, "stored") >= 1, 5, "the session stored")
        r, _, _ = connect(b.https, cx, sess)
        assert r, "TLS 1.2 session from A did not resume on B through the store"
        r, _, _ = connect(c.https, cx, sess)
        assert not r, "resumed without a store: the test would not show the store's work"
        # openssl s_client, the other way round: from B to A.
        out = f"{TMP}/sess-{kind}.pem"
        r1 = s_client(b.https, "-sess_out", out)
        assert b"New, TLSv1.2" in r1.stdout, r1.stdout[-800:]
        r2 = s_client(a.https, "-sess_in", out)
        assert b"Reused, TLSv1.2" in r2.stdout, r2.stdout[-800:]
        assert metric(a, "hit") >= 1 and metric(a, "rejected") == 0
        # Figures: a full handshake on A, its resumption on B through the store, then again on
        # B from B's own cache (python's client; the difference is the store's round trip).
        t_full, t_store, t_local, hits = [], [], [], 0
        for _ in range(40):
            _, s, t = connect(a.https, cx, request=False)
            t_full.append(t)
            r, _, t = connect(b.https, cx, s, request=False)
            t_store.append(t)
            hits += r
            r, _, t = connect(b.https, cx, s, request=False)
            t_local.append(t)
        assert hits >= 30, hits   # the write from A races the read from B (a miss: full)
        print(f"  figure: {kind}: handshake medians: full {statistics.median(t_full) * 1e3:.2f} ms, "
              f"resumed through the store {statistics.median(t_store) * 1e3:.2f} ms, resumed from "
              f"the local cache {statistics.median(t_local) * 1e3:.2f} ms ({hits}/40 via the store)")
    finally:
        for srv in (a, b, c):
            if srv:
                assert srv.stop() == 0
        store.kill()


@test
def tls12_session_id_across_instances_memcached():
    across_instances("memcached")


@test
def tls12_session_id_across_instances_redis():
    across_instances("redis")


@test
def tickets_across_instances():
    a = instance(None)
    b = instance(None)
    try:
        for kind in ("tls13", "tls12-ticket"):
            cx = client_ctx(kind)
            r, sess, _ = connect(a.https, cx)
            assert not r and sess is not None and sess.has_ticket, kind
            r, _, _ = connect(b.https, cx, sess)
            assert r, f"{kind} ticket from A did not resume on B"
    finally:
        assert a.stop() == 0 and b.stop() == 0


@test
def key_file_changes_taken_or_refused():
    """A changed key file is taken within about a second, without a reload; one that does not
    parse is refused, logged, and the keys in use stay (tickets still resume)."""
    path = f"{TMP}/keys-own"
    copy_atomically(KEYS, path)
    srv = Serve("--ticket-key-file", path, listens=["127.0.0.1:0"])
    try:
        cx = client_ctx("tls13")
        _, sess, _ = connect(srv.https, cx)
        with open(path + ".tmp", "w") as f:
            f.write("# tlsloop ticket keys\nnext 1 00\n")
        os.chmod(path + ".tmp", 0o600)
        os.rename(path + ".tmp", path)
        srv.wait_log(r"ticket key file changed but is refused, keeping the keys in use: .*line 2: "
                     r"the key has 2 hex digits, not 160", 5)
        r, sess, _ = connect(srv.https, cx, sess)
        assert r, "the keys in use should have stayed"
        copy_atomically(KEYS, path)
        ticket_keys("rotate", path)
        srv.wait_log(r"ticket key file .* changed: 3 keys", 5)
        r, sess, _ = connect(srv.https, cx, sess)   # its key is previous now: renewed
        assert r
        assert "reloaded" not in srv.log_text()     # no reload: the ring took the keys in place
    finally:
        assert srv.stop() == 0


def copy_atomically(src, dst):
    """As the documented procedure copies a key file to another host: a temporary name, then
    rename (the server never reads half a file)."""
    shutil.copyfile(src, dst + ".tmp")
    os.chmod(dst + ".tmp", 0o600)
    os.rename(dst + ".tmp", dst)


def ticket_keys(*args):
    r = subprocess.run([BIN, "ticket-keys", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


@test
def rotation_twice_during_reconnects():
    """Two hosts, each with its own copy of the key file: rotate on A's, keep reconnecting, copy
    to B's a while later (more than B's one-second look at its file), twice. Between the two,
    A encrypts with the key that B has as next."""
    store = Store("memcached")
    a = b = None
    ka, kb = f"{TMP}/keys-a", f"{TMP}/keys-b"
    copy_atomically(KEYS, ka)
    copy_atomically(KEYS, kb)
    try:
        a = Serve("--ticket-key-file", ka, "--workers", "2", "--session-store", store.url,
                  "--metrics-listen", "127.0.0.1:0", listens=["127.0.0.1:0"])
        b = Serve("--ticket-key-file", kb, "--workers", "2", "--session-store", store.url,
                  listens=["127.0.0.1:0"])
        wait_for(lambda: metric(a, "connect") == 2, 10, "A's workers connected")
        kinds = ["tls12-id", "tls12-ticket", "tls13"]
        ctxs = {k: client_ctx(k) for k in kinds}
        sess = {k: None for k in kinds}
        tried = {k: 0 for k in kinds}
        resumed = {k: 0 for k in kinds}
        events = []
        # Rotate at a sixth of the run, copy 2.5 s later (B looks at its file every second, so
        # A encrypts with the new key well before B knows of the change), rotate again at four
        # sixths or once that copy is done, whichever is later, as the procedure says; the run
        # goes on until both copies are done.
        rotated = copied = 0
        t_rotated = None
        rotate_at = (RECONNECTS // 6, 4 * RECONNECTS // 6)
        i = 0
        while i < RECONNECTS or copied < 2:
            if rotated == copied and rotated < 2 and i >= rotate_at[rotated]:
                ticket_keys("rotate", ka)
                t_rotated = time.monotonic()
                rotated += 1
                events.append(f"rotated A's file before connection {i}")
            if rotated > copied and time.monotonic() - t_rotated > 2.5:
                copy_atomically(ka, kb)
                copied += 1
                events.append(f"copied to B's before connection {i}")
            k = kinds[i % 3]
            port = (a.https, b.https)[(i // 3) % 2]   # each kind alternates A and B
            r, s, _ = connect(port, ctxs[k], sess[k])
            if sess[k] is not None:
                tried[k] += 1
                resumed[k] += r
            sess[k] = s
            i += 1
        a.wait_log(r"ticket key file .* changed(.|\n)*ticket key file .* changed", 5)
        b.wait_log(r"ticket key file .* changed(.|\n)*ticket key file .* changed", 5)
        total_t, total_r = sum(tried.values()), sum(resumed.values())
        print(f"  figure: {'; '.join(events)}")
        for k in kinds:
            print(f"  figure: {k}: {resumed[k]}/{tried[k]} resumed, alternating A and B")
        print(f"  figure: all: {total_r}/{total_t} = {100.0 * total_r / total_t:.1f}% resumed")
        assert len(events) == 4, events   # two rotations, each copied while the run went on
        assert total_r >= 0.99 * total_t, (resumed, tried)
        for k in kinds:
            assert resumed[k] >= 0.99 * tried[k], (k, resumed[k], tried[k])
        # The control: a new key made current at once on A only (no next step) is one B
        # lacks, and resumption from A to B fails: the next key is what saves the run above.
        ticket_keys("new", ka, "--force")
        a.wait_log(r"(ticket key file .* changed(.|\n)*){3}", 5)
        fails = 0
        for k in ("tls12-ticket", "tls13"):
            _, s, _ = connect(a.https, ctxs[k])
            r, _, _ = connect(b.https, ctxs[k], s)
            fails += not r
        assert fails == 2, "B resumed tickets under a key it does not have?"
    finally:
        for srv in (a, b):
            if srv:
                assert srv.stop() == 0
        store.kill()


def run_phase(a, b, cx, n):
    """n pairs: a new session on one instance, offered to the other (the roles alternate);
    (how many of the offers resumed, every handshake's time)."""
    resumed, times = 0, []
    for i in range(n):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        r, s, hs = connect(first.https, cx, None, request=False)
        times.append(hs)
        r, _, hs = connect(second.https, cx, s, request=False)
        resumed += r
        times.append(hs)
    return resumed, times


def p(times, q):
    t = sorted(times)
    return t[min(len(t) - 1, int(q * len(t)))] * 1000


@test
def store_killed_and_stopped_mid_run():
    store = Store("memcached")
    port = store.port
    a = b = None
    n = max(30, RECONNECTS // 5)
    try:
        a = instance(store, "--metrics-listen", "127.0.0.1:0")
        b = instance(store, "--metrics-listen", "127.0.0.1:0")
        wait_for(lambda: metric(a, "connect") == 2 and metric(b, "connect") == 2, 10,
                 "the workers connected")
        cx = client_ctx("tls12-id")
        # A session is written to the store after its handshake, not waited for: a client that
        # reconnects to the other instance at once can be there first (a miss, a full
        # handshake). On this loaded VM that is a few in a hundred; the figure says how many.
        up, t_up = run_phase(a, b, cx, n)
        assert up >= 0.9 * n, (up, n)
        # Killed: the instances see the connection end; every lookup is a miss at once.
        store.kill()
        wait_for(lambda: metric(a, "disconnect") == 2 and metric(b, "disconnect") == 2, 5,
                 "both instances noticed")
        down, t_down = run_phase(a, b, cx, n)
        assert down == 0, f"{down} resumed across instances with the store down"
        # Back on the same port: the workers reconnect (backoff at most 2 s) and it resumes.
        store = Store("memcached", port)
        wait_for(lambda: metric(a, "connect") == 4 and metric(b, "connect") == 4, 10,
                 "the workers reconnected")
        back, t_back = run_phase(a, b, cx, n)
        assert back >= 0.9 * n, (back, n)
        # Stopped: it holds the connections and answers nothing; each lookup waits for its
        # deadline (session-store-timeout, 20 ms), then the handshake goes on in full.
        store.proc.send_signal(signal.SIGSTOP)
        hung, t_hung = run_phase(a, b, cx, n)
        store.proc.send_signal(signal.SIGCONT)
        assert hung == 0, hung
        assert metric(a, "timeout") + metric(b, "timeout") >= n - 2
        for name, t, r in (("store up", t_up, up), ("store killed", t_down, down),
                           ("store back", t_back, back), ("store stopped", t_hung, hung)):
            print(f"  figure: {name}: {len(t)} handshakes, median {statistics.median(t) * 1000:.1f} "
                  f"ms, p95 {p(t, 0.95):.1f} ms, max {max(t) * 1000:.1f} ms; {r}/{n} offers "
                  f"resumed on the other instance")
        print(f"  figure: misses asked once more {RETRY_NOTE}: "
              f"{metric(a, 'retry') + metric(b, 'retry')}")
        # No stall: down, a full handshake at once; stopped, the 20 ms deadline and no more.
        # Medians and p95 are asserted against the 50 ms; the single worst one of a
        # loaded two-core machine only against a generous bound.
        for t in (t_down, t_hung):
            assert p(t, 0.95) < 50 * SLOW, sorted(t)[-5:]
            assert max(t) < 0.5 * SLOW, max(t)
        assert statistics.median(t_down) < statistics.median(t_hung)   # no wait when down
    finally:
        for srv in (a, b):
            if srv:
                assert srv.stop() == 0
        store.kill()


@test
def ticket_keys_command_and_refusals():
    path = f"{TMP}/tk.txt"
    r = subprocess.run([BIN, "ticket-keys", "new", path], capture_output=True, text=True)
    assert r.returncode == 0 and os.stat(path).st_mode & 0o777 == 0o600, r
    r = subprocess.run([BIN, "ticket-keys", "new", path], capture_output=True, text=True)
    assert r.returncode == 1 and "exists" in r.stderr, r
    r = subprocess.run([BIN, "ticket-keys", "check", path], capture_output=True, text=True)
    assert r.returncode == 0 and "current" in r.stdout and "next" in r.stdout, r
    os.chmod(path, 0o640)
    r = subprocess.run([BIN, "ticket-keys", "check", path], capture_output=True, text=True)
    assert r.returncode == 1 and "chmod 600" in r.stderr, r
    os.chmod(path, 0o600)
    # A session store without a key file is a configuration error, with the fix.
    r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--state-dir", STATE,
                        "--session-store", "memcached://127.0.0.1:1", "--check"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "ticket-key-file" in r.stderr, r
    r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--session-store",
                        "memcached://cache:11211", "--check"], capture_output=True, text=True)
    assert r.returncode != 0 and "IP address" in r.stderr, r
    # A store nobody listens on: the server starts and serves (full handshakes), and says so.
    srv = instance(f"memcached://127.0.0.1:{free_port()}")
    try:
        srv.wait_log(r"session store .* unavailable|session store .*refused", 5)
        cx = client_ctx("tls12-id")
        r, sess, _ = connect(srv.https, cx)
        assert not r and sess is not None
        r, _, _ = connect(srv.https, cx, sess)
        assert r   # its own cache still resumes it
    finally:
        assert srv.stop() == 0


def main():
    global TMP, STATE, CA, KEYS
    for prog in ("memcached", "redis-server"):
        if not shutil.which(prog):
            print(f"FAIL {prog} is not installed (scripts/deps.sh installs it)")
            print("0 passed, 1 failed")
            return 1
    with tempfile.TemporaryDirectory() as tmp:
        TMP, STATE, CA = setup(tmp)
        KEYS = f"{tmp}/ticket.keys"
        r = subprocess.run([BIN, "ticket-keys", "new", KEYS], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        Serve(listens=["127.0.0.1:0"]).stop()   # makes the CA and the certificate once
        tests = [tls12_session_id_across_instances_memcached, tls12_session_id_across_instances_redis,
                 tickets_across_instances, key_file_changes_taken_or_refused,
                 rotation_twice_during_reconnects,
                 store_killed_and_stopped_mid_run, ticket_keys_command_and_refusals]
        run_selected(tests)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
