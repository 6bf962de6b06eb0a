"""Opening a SQLite store that several processes open at the same moment.

``serve --workers N`` starts N processes that open the same new database files
together. Switching a file to WAL and creating its tables takes write locks,
and SQLite answers some of those lock conflicts with ``SQLITE_BUSY`` at once,
without calling the busy handler (a reader that must become a writer would
deadlock otherwise; https://www.sqlite.org/lang_transaction.html). One worker
then failed to start with "database is locked".

Rules:

1. Every store opens with a busy timeout set before anything else, then WAL
   (and ``synchronous=NORMAL`` where the store asks), then its own set-up.
2. A "database is locked" or "busy" error during those steps closes the
   connection and starts again after a short, doubling pause, until
   ``deadline_s``; then, and for any other error, the error is raised.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

#: Busy timeout of every connection, milliseconds (rule 1).
BUSY_TIMEOUT_MS = 5000


def _contended(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def open_wal(
    path: str,
    setup: Callable[[sqlite3.Connection], object] | None = None,
    *,
    synchronous_normal: bool = True,
    deadline_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> sqlite3.Connection:
    """Open ``path`` in WAL mode for a store shared by threads (rules 1 and 2).

    Args:
        path: the database file, or ``":memory:"``.
        setup: the store's own first statements (its schema), retried with the rest.
        synchronous_normal: set ``PRAGMA synchronous=NORMAL`` (safe with WAL).
        deadline_s: how long lock conflicts are retried, seconds.
        sleep, monotonic: the pause and the clock (injected by tests).

    Returns:
        an autocommit connection (``isolation_level=None``) usable from any thread.

    Raises:
        sqlite3.Error: the file cannot be opened, or is still locked at the deadline.
    """
    end = monotonic() + deadline_s
    pause = 0.01
    while True:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode=WAL")
            if synchronous_normal:
                db.execute("PRAGMA synchronous=NORMAL")
            if setup is not None:
                setup(db)
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if not _contended(exc) or monotonic() >= end:
                raise
        except BaseException:
            db.close()
            raise
        sleep(pause)
        pause = min(pause * 2, 0.2)
