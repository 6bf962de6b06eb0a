"""Fixtures shared by the CRM tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from voicerail.crm.outbox import Outbox, SQLiteOutbox


@pytest.fixture(params=["sqlite", "postgres"])
def outbox(request: pytest.FixtureRequest, tmp_path) -> Iterator[Outbox]:
    """An empty outbox, once on SQLite and once on a real PostgreSQL database."""
    if request.param == "sqlite":
        box: Outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    else:
        from voicerail.crm.outbox_pg import PostgresOutbox

        box = PostgresOutbox(request.getfixturevalue("postgres_url"))
    yield box
    box.close()
