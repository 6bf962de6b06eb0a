"""Worker identity: round trip, start time from /proc, liveness on this host only."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from voicerail.state.worker import (
    WorkerIdentity,
    current_worker,
    is_alive,
    process_started_ticks,
)


def fake_proc(root: Path, pid: int, command: str, starttime: int) -> Path:
    """A /proc with one process whose stat line has ``starttime`` as field 22."""
    fields = ["S"] + [str(n) for n in range(4, 22)] + [str(starttime), "0", "0"]
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "stat").write_text(f"{pid} ({command}) {' '.join(fields)}\n")
    return root


def test_identity_round_trips_through_its_text_even_with_colons_in_the_host():
    worker = WorkerIdentity("host:with:colons", 42, 123456)
    assert WorkerIdentity.parse(str(worker)) == worker


def test_text_that_is_not_an_identity_parses_to_none():
    for text in ["", "host", "host:1", "host:x:1", "host:1:y", "42"]:
        assert WorkerIdentity.parse(text) is None, text


def test_start_time_is_field_22_even_when_the_command_holds_spaces_and_parens(tmp_path):
    proc = fake_proc(tmp_path, 7, "voice rail) (x", 98765)
    assert process_started_ticks(7, proc) == 98765
    assert process_started_ticks(8, proc) is None


def test_a_reused_pid_with_another_start_time_is_dead(tmp_path):
    host = socket.gethostname()
    proc = fake_proc(tmp_path, 7, "python", 500)
    assert is_alive(WorkerIdentity(host, 7, 500), proc) is True
    assert is_alive(WorkerIdentity(host, 7, 499), proc) is False
    assert is_alive(WorkerIdentity(host, 9, 500), proc) is False


def test_a_worker_on_another_host_is_never_declared_dead():
    assert is_alive(WorkerIdentity(socket.gethostname() + "-other", 1, 1)) is None


def test_this_process_is_alive_and_named_by_its_pid():
    me = current_worker()
    assert me.pid == os.getpid()
    assert is_alive(me) is True
