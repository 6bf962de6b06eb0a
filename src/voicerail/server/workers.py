"""``voicerail serve --workers N``: N server processes answering on one port.

The supervisor (the process the user started) binds the port once, then starts
N workers, each a fresh ``python -m voicerail.cli serve`` that inherits the
listening socket (``VOICERAIL_WORKER_FD``) and loads its own models. The kernel
hands each new connection to whichever worker accepts it first, so a busy
worker takes fewer; a worker that stops listening loses nothing queued, since
the queue belongs to the one shared socket (unlike one ``SO_REUSEPORT`` socket
per worker, whose queue dies with it).

Rules:

1. Work done once per host happens in the supervisor, before the workers start:
   the credential check at start-up, and closing calls left open by dead
   workers (``state/lost_calls.py``). The periodic credential monitor runs in
   worker 0 only.
2. ``/metrics`` sums every worker (prometheus-client multiprocess mode): the
   supervisor makes an empty ``$PROMETHEUS_MULTIPROC_DIR`` for its workers and
   removes it at the end.
3. ``SIGTERM`` or ``SIGINT`` to the supervisor is passed to every worker as
   ``SIGTERM``: each drains (``server/drain.py``); the supervisor exits 0 when
   all of them did.
4. A worker killed by a signal (``kill -9``, the out-of-memory killer) is
   replaced: its live gauges are dropped, a new worker starts, and its calls
   are closed as ``worker_lost`` — after ``sweep_delay_s`` when calls can
   resume (a state store is configured): Twilio asks the ``<Connect action>``
   URL as soon as the stream drops, and a call that another worker carries on
   meanwhile names that live worker on its row, so the sweep leaves it alone
   (``state/lost_calls.py`` rule 1). A resume later than that reopens the row
   (``session/resume.py``). A worker that exits with an error (a configuration
   error at start-up) stops the others, and its status is the supervisor's; one
   that exits 0 drained (``SIGTERM`` to that worker alone) and is replaced.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

#: The inherited listening socket's file descriptor, in a worker's environment.
WORKER_FD_VARIABLE = "VOICERAIL_WORKER_FD"
#: The worker's index, 0 to N-1 (worker 0 runs the credential monitor).
WORKER_INDEX_VARIABLE = "VOICERAIL_WORKER_INDEX"


def worker_index(environ: dict[str, str] | None = None) -> int | None:
    """This process's worker index, None when it is not a supervised worker."""
    value = (os.environ if environ is None else environ).get(WORKER_INDEX_VARIABLE, "")
    return int(value) if value.isdigit() else None


@dataclass
class Supervisor:
    """Starts, watches and stops the workers (rules 2 to 4).

    Args:
        argv: the ``voicerail`` arguments each worker runs (``serve …``).
        listen_fd: the listening socket the workers inherit.
        num_workers: how many.
        sweep: closes calls left open by dead workers (rule 4); errors are logged.
        poll_s: how often the workers are looked at, seconds.
        stop_timeout_s: how long stopping workers may take before they are
            killed; longer than the drain deadline.
        sweep_delay_s: how long after a worker's death its calls are swept
            (rule 4), seconds.
        module: what each worker runs, ``python -m <module> <argv>``
            (``bench/capacity.py --workers`` runs the fake-provider server).
    """

    argv: Sequence[str]
    listen_fd: int
    num_workers: int
    sweep: Callable[[], Any] = lambda: None
    poll_s: float = 0.2
    stop_timeout_s: float = 60.0
    sweep_delay_s: float = 0.0
    module: str = "voicerail.cli"
    workers: list[subprocess.Popen[bytes] | None] = field(default_factory=list)

    def run(self) -> int:
        """Run the workers until a signal stops them; the exit status."""
        metrics_dir = tempfile.mkdtemp(prefix="voicerail-metrics-")
        stop: list[int] = []

        def on_signal(sig: int, frame: FrameType | None) -> None:
            stop.append(sig)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.workers = [self._start(i, metrics_dir) for i in range(self.num_workers)]
            status = self._watch(stop, metrics_dir)
            return self._stop() if status is None else status
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self._kill_all()
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _start(self, index: int, metrics_dir: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            WORKER_FD_VARIABLE: str(self.listen_fd),
            WORKER_INDEX_VARIABLE: str(index),
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        }
        command = [sys.executable, "-m", self.module, *self.argv]
        # Own process group: a terminal's Ctrl-C reaches the supervisor only,
        # which turns it into a drain (rule 3) instead of an abrupt stop.
        proc = subprocess.Popen(command, env=env, pass_fds=(self.listen_fd,), process_group=0)
        log.warning("worker %d started: pid %d", index, proc.pid)
        return proc

    def _watch(self, stop: list[int], metrics_dir: str) -> int | None:
        """Rule 4 until a signal comes (None) or a worker exits by itself (its status)."""
        sweeps_due: list[float] = []  # monotonic times of the sweeps still to run
        while not stop:
            time.sleep(self.poll_s)
            if sweeps_due and min(sweeps_due) <= time.monotonic():
                sweeps_due = [t for t in sweeps_due if t > time.monotonic()]
                self._sweep()
            for index, proc in enumerate(self.workers):
                if proc is None or proc.poll() is None:
                    continue
                if proc.returncode == 0:
                    # It drained (SIGTERM sent to that worker alone): a rolling restart.
                    log.warning("worker %d (pid %d) drained; replacing it", index, proc.pid)
                    self.workers[index] = self._start(index, metrics_dir)
                    continue
                if proc.returncode > 0:
                    log.error("worker %d exited with %d; stopping", index, proc.returncode)
                    self._stop()
                    return proc.returncode
                log.error(
                    "worker %d (pid %d) killed by signal %d", index, proc.pid, -proc.returncode
                )
                self._mark_dead(proc.pid, metrics_dir)
                if self.sweep_delay_s > 0:
                    sweeps_due.append(time.monotonic() + self.sweep_delay_s)
                else:
                    self._sweep()
                self.workers[index] = self._start(index, metrics_dir)
        return None

    def _sweep(self) -> None:
        try:
            self.sweep()
        except Exception:  # task boundary: a failed sweep must not stop the others
            log.exception("closing the calls of dead workers failed")

    @staticmethod
    def _mark_dead(pid: int, metrics_dir: str) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, metrics_dir)

    def _stop(self) -> int:
        """Rule 3: SIGTERM to every worker; 0 when each drained and exited 0."""
        live = [p for p in self.workers if p is not None and p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        status = 0
        for proc in live:
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in %.0f s", proc.pid, self.stop_timeout_s)
                proc.kill()
                code = proc.wait()
            if code != 0:
                status = 1
        return status

    def _kill_all(self) -> None:
        for proc in self.workers:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


async def watch_supervisor(parent_pid: int, interval_s: float = 1.0) -> None:
    """In a worker: drain (SIGTERM to itself) once the supervisor is gone, so a
    supervisor killed with SIGKILL leaves no orphan serving on the port."""
    import asyncio

    while os.getppid() == parent_pid:
        await asyncio.sleep(interval_s)
    log.error("supervisor pid %d is gone; draining", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)
