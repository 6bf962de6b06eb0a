"""Which server process serves a call, and whether that process still lives.

Rules:

1. A worker is named by host, process id and the process's start time (clock
   ticks since boot, ``/proc/<pid>/stat`` field 22): a process id alone is
   reused, notably by a container whose server is always PID 1.
2. A worker is known dead only on its own host: its process id is gone, or now
   belongs to a process that started at another time. A worker on another host
   is never declared dead from here (``is_alive`` answers None: unknown).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkerIdentity:
    """One server process (rule 1).

    Attributes:
        host: the host name (``socket.gethostname()``).
        pid: the process id.
        started_ticks: the process's start time in clock ticks since boot; 0 when
            the platform has no ``/proc``.
    """

    host: str
    pid: int
    started_ticks: int

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.started_ticks}"

    @classmethod
    def parse(cls, text: str) -> WorkerIdentity | None:
        """The inverse of ``str()``; None for anything else."""
        host, sep, rest = text.rpartition(":")
        host, sep2, pid = host.rpartition(":")
        if not (sep and sep2 and pid.isdigit() and rest.isdigit()):
            return None
        return cls(host=host, pid=int(pid), started_ticks=int(rest))


def process_started_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot, None if it is gone.

    Source: proc(5), ``/proc/[pid]/stat`` field 22 ``starttime``; fields are
    counted after the command name, which is in parentheses and may hold spaces.
    """
    try:
        text = (proc / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    # fields[0] is field 3 (state), so field 22 is fields[19].
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def current_worker() -> WorkerIdentity:
    """This process."""
    pid = os.getpid()
    return WorkerIdentity(socket.gethostname(), pid, process_started_ticks(pid) or 0)


def is_alive(worker: WorkerIdentity, proc: Path = Path("/proc")) -> bool | None:
    """Rule 2: True or False on this host, None (unknown) for another host."""
    if worker.host != socket.gethostname():
        return None
    ticks = process_started_ticks(worker.pid, proc)
    if ticks is None:
        return False
    return worker.started_ticks == 0 or ticks == worker.started_ticks
