"""tests/support/e2e.py - what the e2e scripts in tests/e2e/ share: the @test decorator that runs
a test, prints "ok   name (seconds)" or "FAIL name" with the traceback, and counts; the closing
line "N passed, N failed"; SLOW, the factor by which sanitizer builds stretch time limits.

A script imports it with
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
    from e2e import test, summary, SLOW
"""
import os
import time
import traceback

SLOW = 3 if os.environ.get("TLSLOOP_PHASE") == "asan" else 1   # sanitizers run slower
results = {"passed": 0, "failed": 0}


def test(fn):
    """Run fn(*args) as one test: a raised exception (an assert) fails it, the run goes on."""
    def wrapped(*args):
        t0 = time.monotonic()
        try:
            fn(*args)
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
            results["passed"] += 1
        except Exception:
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc()
            results["failed"] += 1
    wrapped.__name__ = fn.__name__
    return wrapped


def fail(name, why):
    """Count a failure found outside a test function (a server that did not start, say)."""
    print(f"FAIL {name}: {why}", flush=True)
    results["failed"] += 1


def summary():
    """Print the closing line; the exit status for sys.exit."""
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0
