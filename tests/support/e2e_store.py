"""e2e_store.py - a session store for the e2e tests: memcached or redis-server on 127.0.0.1, on an
ephemeral port (or the one given, to restart it where it was), started by the test and stopped by
PID (test_session_store.py, test_scale_out.py)."""
import os
import signal
import socket
import subprocess

from e2e import wait_for


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Store:
    """memcached or redis-server on 127.0.0.1, an ephemeral port; stopped by PID."""

    def __init__(self, kind, port=None):
        self.kind = kind
        self.port = port or _free_port()
        if kind == "memcached":
            cmd = ["memcached", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "16"]
            if os.geteuid() == 0:
                cmd += ["-u", "root"]
        else:
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--daemonize", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.accepts, 10, f"{kind} on port {self.port}")

    def accepts(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    @property
    def url(self):
        return f"{self.kind}://127.0.0.1:{self.port}"

    def kill(self):
        """SIGKILL (after SIGCONT, should a test have stopped it), then reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()
