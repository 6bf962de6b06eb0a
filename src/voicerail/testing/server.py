"""Running a real ``voicerail serve`` process for demos, end-to-end tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_process(
    args: Sequence[str] = (),
    *,
    data_dir: Path,
    port: int | None = None,
    startup_timeout_s: float = 180.0,
    log_path: Path | None = None,
    program: Sequence[str] = (),
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Start ``voicerail serve`` in a subprocess; yield its base URL; stop it after.

    The arguments and errors are those of :func:`serve_subprocess`.
    """
    with serve_subprocess(
        args,
        data_dir=data_dir,
        port=port,
        startup_timeout_s=startup_timeout_s,
        log_path=log_path,
        program=program,
        cwd=cwd,
        env=env,
    ) as (base_url, _):
        yield base_url


@contextlib.contextmanager
def serve_subprocess(
    args: Sequence[str] = (),
    *,
    data_dir: Path,
    port: int | None = None,
    startup_timeout_s: float = 180.0,
    log_path: Path | None = None,
    program: Sequence[str] = (),
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``voicerail serve`` in a subprocess; yield its base URL and process
    (for tests that signal it); stop it after, if it still runs.

    Args:
        args: extra ``serve`` arguments (``--agent``, timings, …).
        data_dir: the server's ``--data-dir``.
        port: port to bind; a free one when None.
        startup_timeout_s: how long model loading may take before giving up.
        log_path: where the server's output goes (``data_dir/server.log`` by default).
        program: the ``voicerail`` command to run (an installed entry point);
            this interpreter's ``-m voicerail.cli`` when empty.
        cwd: the server's working directory (this one when None).
        env: the server's environment (this one's when None).

    Raises:
        RuntimeError: the server exited or did not answer ``/healthz`` in time;
            the message includes the end of its log.
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or data_dir / "server.log"
    command = [
        *(program or (sys.executable, "-m", "voicerail.cli")),
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *args,
    ]
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
            cwd=cwd,
        )
        try:
            _wait_healthy(proc, base_url, startup_timeout_s, log_path)
            yield base_url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(proc: subprocess.Popen[bytes], base_url: str, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"voicerail serve exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"voicerail serve not healthy after {timeout_s} s:\n{tail}")


def media_url(base_url: str) -> str:
    """The Twilio media-stream WebSocket URL of a server at ``base_url``."""
    return base_url.replace("http://", "ws://") + "/twilio/media"


def worker_pids(base_url: str, expected: int, timeout_s: float = 120.0) -> set[int]:
    """The pids answering ``/healthz`` (a new connection each), once ``expected`` have.

    A worker starting or stopping may refuse a connection; that try is skipped.

    Raises:
        AssertionError: fewer than ``expected`` distinct pids in ``timeout_s``.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < expected and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            seen.add(httpx.get(f"{base_url}/healthz", timeout=5.0).json()["worker_pid"])
        time.sleep(0.05)
    assert len(seen) == expected, seen
    return seen


async def call_row_when(
    base_url: str, call_sid: str, ready: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0
) -> dict[str, Any]:
    """The ``/api/calls`` row of ``call_sid`` once ``ready(row)`` holds.

    Raises:
        AssertionError: no row met the condition in ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            rows = (await client.get("/api/calls", params={"call_sid": call_sid})).json()["calls"]
            if rows and ready(rows[0]):
                return dict(rows[0])
            await asyncio.sleep(0.1)
    raise AssertionError(f"no row for {call_sid} met the condition in {timeout_s} s")
