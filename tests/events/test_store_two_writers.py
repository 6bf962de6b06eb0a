"""Two worker processes write one SQLite event store (WAL, busy timeout): nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from voicerail.events.store import SQLiteEventStore

WRITER = """
import sys
from voicerail.events.model import Event, EventKind
from voicerail.events.store import CallRecord, SQLiteEventStore

path, name, calls, events = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = SQLiteEventStore(path, flush_interval_s=0.001, batch_max=3)
for c in range(calls):
    call_id = f"{name}-{c}"
    store.save_call(CallRecord(call_id, "clinic", float(c)))
    for k in range(events):
        store.append(Event(call_id, EventKind.MARK_PLAYED, at_wall=float(k), at_mono=float(k)))
        if k % 5 == 0:
            store.flush()
store.close()
"""


def test_two_processes_writing_at_once_lose_no_event_and_no_call(tmp_path: Path):
    path = tmp_path / "events.sqlite3"
    SQLiteEventStore(path).close()  # schema first, as the supervisor's sweep does
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "20", "50"])
        for name in ("w1", "w2")
    ]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    store = SQLiteEventStore(path)
    try:
        rows = store.fetch("SELECT call_id, COUNT(*) FROM events GROUP BY call_id")
        assert len(rows) == 40 and {n for _, n in rows} == {50}
        assert len(store.calls(limit=100)) == 40
    finally:
        store.close()
