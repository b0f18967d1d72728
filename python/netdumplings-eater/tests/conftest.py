"""Fixtures: a real nd-hub process on free 127.0.0.1 ports (ND_HUB_BIN, default
target/release/nd-hub of this workspace), killed by PID after each test."""

import os
import pathlib
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nats_server():
    """The nats-server binary the Rust fleet tests use, looked up in the same order:
    $ND_NATS_SERVER, the pinned one scripts/nats-server.sh installs under target/nd-tools/,
    nats-server on PATH, Debian's. None when there is none."""
    import shutil

    candidates = [os.environ.get("ND_NATS_SERVER"),
                  str(ROOT / "target/nd-tools/nats-server-2.15.1/nats-server"),
                  shutil.which("nats-server"),
                  "/usr/bin/nats-server", "/usr/sbin/nats-server"]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def wait_port(port, limit=10.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class HubProcess:
    def __init__(self, in_port=None, out_port=None, extra=()):
        self.bin = os.environ.get("ND_HUB_BIN", str(ROOT / "target/release/nd-hub"))
        if not os.path.exists(self.bin):
            pytest.fail("{} missing: cargo build --release -p hub".format(self.bin))
        self.in_port = in_port or free_port()
        self.out_port = out_port or free_port()
        self.extra = list(extra)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [self.bin, "-a", "127.0.0.1", "-i", str(self.in_port), "-o", str(self.out_port)]
            + self.extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_port(self.in_port) and wait_port(self.out_port), "nd-hub did not start"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def eaters(self):
        return "127.0.0.1:{}".format(self.out_port)

    @property
    def kitchens(self):
        return "ws://127.0.0.1:{}".format(self.in_port)


@pytest.fixture
def hub():
    h = HubProcess(extra=["-f", "60"])
    yield h
    h.stop()
