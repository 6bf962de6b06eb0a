"""A throwaway Redis server for tests and benchmarks.

Runs Debian's ``redis-server`` (``make setup`` installs it) on a free loopback
port with its files in a temporary directory, no persistence, and stops it after.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` program on this machine."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def temporary_redis(startup_timeout_s: float = 10.0) -> Iterator[str]:
    """Start ``redis-server``; yield its ``redis://127.0.0.1:PORT/0`` URL; stop it after.

    Raises:
        RedisUnavailable: ``redis-server`` is not installed.
        RuntimeError: it did not answer ``PING`` within ``startup_timeout_s``.
    """
    program = shutil.which("redis-server")
    if program is None:
        raise RedisUnavailable("no redis-server program: install Debian's redis-server package")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="voicerail-redis-") as work_dir:
        command = [program, "--port", str(port), "--bind", "127.0.0.1", "--dir", work_dir,
                   "--save", "", "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + startup_timeout_s
            while not _answers_ping(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not start")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
