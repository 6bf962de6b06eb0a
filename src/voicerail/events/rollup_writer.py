"""Keeping the rollups of ``events/rollups.py``: on each written batch, and by rebuild.

:class:`RollupBatch` is used by both stores' writer threads, inside the batch's
transaction (``rollups.py`` rule 2): :meth:`RollupBatch.read_before` runs before
the batch's calls and events are written (it needs the rows they replace),
:meth:`RollupBatch.write_after` after. :func:`rebuild` recomputes every rollup
from the events in SQL, with only failed calls' causes computed here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from voicerail.events.model import Event
from voicerail.events.rollups import (
    ATTEMPTED,
    FACT_TABLES,
    FAILED_OVER,
    GRAINS,
    LATENCY_BIN_UPPER_S,
    PROTOCOL_ERROR,
    ROLLUPS_VERSION,
    TABLES,
    TRAIL_COLUMNS,
    TRAIL_FILTER,
    CauseKey,
    Deltas,
    TrailEvent,
    Tx,
    attempt_costs,
    bucket_sql,
    cause_of,
    in_chunks,
    json_number_sql,
    key_text,
    latency_bin,
)

CallState = tuple[float, str, str]  # started_at, agent, outcome ('' while in progress)
CauseRow = tuple[float, CauseKey, bool]  # started_at, cause, fallback tried


class RollupBatch:
    """The rollup changes of one written batch (``rollups.py`` rules 2 to 4).

    Args:
        events: the batch's events, ``seq`` assigned.
        calls: the batch's call rows (at most one per call id), as
            ``(call_id, started_at, agent, outcome)``.
        cost_rows: ``attempt_costs(events)`` when the caller has it already.
    """

    def __init__(
        self,
        events: Sequence[Event],
        calls: Sequence[tuple[str, float, str, str | None]],
        cost_rows: Sequence[tuple[str, str, float, int]] | None = None,
    ) -> None:
        self.events = events
        self.cost_rows = attempt_costs(events) if cost_rows is None else cost_rows
        self.calls = {c[0]: (float(c[1]), c[2], key_text(c[3])) for c in calls}
        self.ids = sorted({e.call_id for e in events} | set(self.calls))
        self.old_calls: dict[str, CallState] = {}
        self.costs_before: list[tuple[str, str, float, int]] = []
        self.firsts: dict[tuple[str, str, str], float] = {}
        self.causes: dict[str, CauseRow] = {}
        self._count_events()

    def read_before(self, tx: Tx) -> None:
        """What the batch's rows replace; call before writing them. Raises the
        database's errors."""
        if not self.ids:
            return
        self.old_calls = {
            r[0]: (float(r[1]), r[2], key_text(r[3]))
            for r in in_chunks(
                tx,
                "SELECT call_id, started_at, agent, outcome FROM calls WHERE call_id IN ({marks})",
                self.ids,
            )
        }
        moved = [
            call_id
            for call_id, new in self.calls.items()
            if call_id not in self.old_calls or self.old_calls[call_id][0] != new[0]
        ]
        self.costs_before = [
            (r[0], r[1], float(r[2]), int(r[3]))
            for r in in_chunks(
                tx,
                "SELECT call_id, provider, cost_usd, priced_attempts FROM call_costs"
                " WHERE call_id IN ({marks})",
                sorted(moved),
            )
        ]
        attempt_ids = sorted({key[0] for key in self.earliest})
        self.firsts = {
            (r[0], r[1], r[2]): float(r[3])
            for r in in_chunks(
                tx,
                "SELECT call_id, stage, provider, first_at FROM call_attempt_firsts"
                " WHERE call_id IN ({marks})",
                attempt_ids,
            )
        }
        # Only calls stored as failed have a cause row (kept in the same transactions).
        was_failed = sorted(i for i, old in self.old_calls.items() if old[2] == "failed")
        self.causes = {
            r[0]: (float(r[1]), (r[2], r[3], r[4], r[5]), bool(r[6]))
            for r in in_chunks(
                tx,
                "SELECT call_id, started_at, stage, provider, error_class, kind, fallback_tried"
                " FROM call_causes WHERE call_id IN ({marks})",
                was_failed,
            )
        }

    def write_after(self, tx: Tx) -> None:
        """Apply the batch to the rollups; call after writing its rows, in the same
        transaction. Raises the database's errors."""
        deltas = Deltas()
        final = {**self.old_calls, **self.calls}
        self._events(deltas)
        self._calls(deltas)
        self._costs(deltas, final)
        self._firsts(tx, deltas)
        self._causes(tx, deltas, final)
        deltas.write(tx)

    def _count_events(self) -> None:
        """One pass over the events (the writer's hottest loop, so inlined): counts by
        minute and the earliest finished attempt per (call, stage, provider)."""
        kinds: dict[tuple[int, str], int] = defaultdict(int)
        attempts: dict[tuple[int, str, str, str], list[int]] = {}
        latencies: dict[tuple[int, str, str, int], int] = defaultdict(int)
        earliest: dict[tuple[str, str, str], float] = {}
        floor = math.floor
        for e in self.events:
            at = e.at_wall
            minute = floor(at / 60) * 60
            kind = str(e.kind)
            kinds[(minute, kind)] += 1
            if e.stage is None or e.provider is None:
                continue
            stage = str(e.stage)
            if kind == FAILED_OVER:
                attempts.setdefault((minute, stage, e.provider, e.error_class or ""), [0] * 6)[
                    4
                ] += 1
            outcome = e.outcome
            if kind != ATTEMPTED or (outcome != "ok" and outcome != "error"):
                continue
            row = attempts.setdefault((minute, stage, e.provider, e.error_class or ""), [0] * 6)
            failed = outcome == "error"
            number = e.data.get("attempt")
            first = number == 1 and type(number) in (int, float)  # not True
            row[0] += 1
            row[1] += failed
            row[2] += first
            row[3] += first and failed
            if not failed and e.latency_s:
                latencies[(minute, stage, e.provider, latency_bin(e.latency_s))] += 1
            key = (e.call_id, stage, e.provider)
            if at < earliest.get(key, math.inf):
                earliest[key] = at
        self.counts = (kinds, attempts, latencies)
        self.earliest = earliest

    def _events(self, deltas: Deltas) -> None:
        kinds, attempts, latencies = self.counts
        for (minute, kind), n in kinds.items():
            deltas.add_at_minute("rollup_events", minute, (kind,), (n,))
        for (minute, stage, provider, error_class), values in attempts.items():
            deltas.add_at_minute("rollup_attempts", minute, (stage, provider, error_class), values)
        for (minute, stage, provider, index), n in latencies.items():
            deltas.add_at_minute("rollup_latency", minute, (stage, provider, index), (n,))

    def _calls(self, deltas: Deltas) -> None:
        for call_id, new in self.calls.items():
            old = self.old_calls.get(call_id)
            if old == new:
                continue
            if old is not None:
                deltas.add("rollup_calls", old[0], (old[1], old[2]), (-1,))
            deltas.add("rollup_calls", new[0], (new[1], new[2]), (1,))

    def _costs(self, deltas: Deltas, final: dict[str, CallState]) -> None:
        # A call's earlier costs follow its row to its (new) start bucket.
        for call_id, provider, cost_usd, priced in self.costs_before:
            old = self.old_calls.get(call_id)
            if old is not None:
                deltas.add("rollup_costs", old[0], (provider,), (-cost_usd, -priced))
            deltas.add("rollup_costs", self.calls[call_id][0], (provider,), (cost_usd, priced))
        for call_id, provider, cost_usd, priced in self.cost_rows:
            state = final.get(call_id)
            if state is not None:  # else counted when the call's row arrives
                deltas.add("rollup_costs", state[0], (provider,), (cost_usd, priced))

    def _firsts(self, tx: Tx, deltas: Deltas) -> None:
        changed = []
        for key, at in sorted(self.earliest.items()):
            stored = self.firsts.get(key)
            if stored is not None and stored <= at:
                continue
            if stored is not None:
                deltas.add("rollup_attempts", stored, (key[1], key[2], ""), (0, 0, 0, 0, 0, -1))
            deltas.add("rollup_attempts", at, (key[1], key[2], ""), (0, 0, 0, 0, 0, 1))
            changed.append((*key, at))
        tx.run_many(
            "INSERT INTO call_attempt_firsts VALUES (?, ?, ?, ?) ON CONFLICT"
            " (call_id, stage, provider) DO UPDATE SET first_at = excluded.first_at",
            changed,
        )

    def _causes(self, tx: Tx, deltas: Deltas, final: dict[str, CallState]) -> None:
        failed = [i for i in self.ids if i in final and final[i][2] == "failed"]
        trails: dict[str, list[TrailEvent]] = {i: [] for i in failed}
        for r in _in_chunks_trail(tx, failed):
            trails[r[0]].append(TrailEvent(int(r[1]), r[2], r[3], r[4], r[5], r[6]))
        new_rows: dict[str, CauseRow] = {}
        for call_id, trail in trails.items():
            key, fallback = cause_of(trail)
            new_rows[call_id] = (final[call_id][0], key, fallback)
        upserts, deletes = [], []
        for call_id in sorted(set(new_rows) | set(self.causes)):
            old, new = self.causes.get(call_id), new_rows.get(call_id)
            if old == new:
                continue
            if old is not None:
                deltas.add("rollup_causes", old[0], old[1], (-1, -int(old[2])))
            if new is not None:
                deltas.add("rollup_causes", new[0], new[1], (1, int(new[2])))
                upserts.append((call_id, new[0], *new[1], int(new[2])))
            else:
                deletes.append((call_id,))
        tx.run_many(
            "INSERT INTO call_causes VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE"
            " SET started_at = excluded.started_at, stage = excluded.stage,"
            " provider = excluded.provider, error_class = excluded.error_class,"
            " kind = excluded.kind, fallback_tried = excluded.fallback_tried",
            upserts,
        )
        tx.run_many("DELETE FROM call_causes WHERE call_id = ?", deletes)


def _in_chunks_trail(tx: Tx, call_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for i in range(0, len(call_ids), 500):
        chunk = list(call_ids[i : i + 500])
        marks = ",".join("?" * len(chunk))
        rows += tx.fetch(
            f"SELECT call_id, {TRAIL_COLUMNS} FROM events WHERE call_id IN ({marks})"
            f" AND {TRAIL_FILTER} ORDER BY call_id, seq",
            (*chunk, PROTOCOL_ERROR),
        )
    return rows


# -- rebuild ---------------------------------------------------------------------


def rebuild(tx: Tx, dialect: str) -> None:
    """Rule 6 of ``rollups.py``: recompute every rollup and fact table from ``events``,
    ``calls`` and ``call_costs``. Run inside one transaction; raises the database's
    errors."""
    for table in (*TABLES, *FACT_TABLES, "latency_bins"):
        tx.run_many(f"DELETE FROM {table}", [()])
    tx.run_many("INSERT INTO latency_bins VALUES (?, ?)", list(enumerate(LATENCY_BIN_UPPER_S)))
    tx.run_many(
        "INSERT INTO call_attempt_firsts SELECT call_id, stage, provider, MIN(at_wall)"
        " FROM events WHERE kind = ? AND outcome IN ('ok', 'error') AND stage IS NOT NULL"
        " AND provider IS NOT NULL GROUP BY call_id, stage, provider",
        [(ATTEMPTED,)],
    )
    _rebuild_causes(tx)
    for statement, args in _minute_statements(dialect):
        tx.run_many(statement, [args])
    for table, (dims, measures) in TABLES.items():
        for grain in GRAINS[1:]:
            bucket = bucket_sql(dialect, "bucket_s", grain)
            keys = ", ".join(dims)
            sums = ", ".join(f"SUM({m})" for m in measures)
            tx.run_many(
                f"INSERT INTO {table} SELECT {grain}, {bucket}, {keys}, {sums} FROM {table}"
                f" WHERE grain_s = 60 GROUP BY {bucket}, {keys}",
                [()],
            )
    tx.run_many(
        "INSERT INTO meta VALUES ('rollups_version', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [(ROLLUPS_VERSION,)],
    )


def _rebuild_causes(tx: Tx) -> None:
    failed = {
        r[0]: float(r[1])
        for r in tx.fetch("SELECT call_id, started_at FROM calls WHERE outcome = 'failed'")
    }
    trails: dict[str, list[TrailEvent]] = {call_id: [] for call_id in failed}
    rows = tx.fetch(
        f"SELECT e.call_id, {', '.join('e.' + c for c in TRAIL_COLUMNS.split(', '))}"
        " FROM calls c JOIN events e ON e.call_id = c.call_id WHERE c.outcome = 'failed'"
        f" AND {TRAIL_FILTER.replace('outcome', 'e.outcome').replace('kind', 'e.kind')}"
        " ORDER BY e.call_id, e.seq",
        (PROTOCOL_ERROR,),
    )
    for r in rows:
        trails[r[0]].append(TrailEvent(int(r[1]), r[2], r[3], r[4], r[5], r[6]))
    causes = []
    for call_id, trail in sorted(trails.items()):
        key, fallback = cause_of(trail)
        causes.append((call_id, failed[call_id], *key, int(fallback)))
    tx.run_many("INSERT INTO call_causes VALUES (?, ?, ?, ?, ?, ?, ?)", causes)


def _minute_statements(dialect: str) -> list[tuple[str, tuple[Any, ...]]]:
    """``INSERT … SELECT`` of every rollup table's one-minute rows."""

    def b(column: str) -> str:
        return bucket_sql(dialect, column, 60)

    first = f"{json_number_sql(dialect, 'data', 'attempt')} = 1"
    error = "CASE WHEN outcome = 'error' THEN 1 ELSE 0 END"
    named = "stage IS NOT NULL AND provider IS NOT NULL"
    return [
        (
            f"INSERT INTO rollup_calls SELECT 60, {b('started_at')}, agent,"
            " COALESCE(outcome, ''), COUNT(*) FROM calls GROUP BY 2, 3, 4",
            (),
        ),
        (
            f"INSERT INTO rollup_costs SELECT 60, {b('c.started_at')}, cc.provider,"
            " SUM(cc.cost_usd), SUM(cc.priced_attempts) FROM calls c"
            " JOIN call_costs cc ON cc.call_id = c.call_id GROUP BY 2, 3",
            (),
        ),
        (
            "INSERT INTO rollup_attempts SELECT 60, b, stage, provider, ec, SUM(a), SUM(f),"
            " SUM(fa), SUM(ff), SUM(fo), SUM(c) FROM ("
            f"SELECT {b('at_wall')} AS b, stage, provider, COALESCE(error_class, '') AS ec,"
            f" 1 AS a, {error} AS f, CASE WHEN {first} THEN 1 ELSE 0 END AS fa,"
            f" CASE WHEN {first} AND outcome = 'error' THEN 1 ELSE 0 END AS ff, 0 AS fo, 0 AS c"
            f" FROM events WHERE kind = ? AND outcome IN ('ok', 'error') AND {named}"
            f" UNION ALL SELECT {b('at_wall')}, stage, provider, COALESCE(error_class, ''),"
            f" 0, 0, 0, 0, 1, 0 FROM events WHERE kind = ? AND {named}"
            f" UNION ALL SELECT {b('first_at')}, stage, provider, '', 0, 0, 0, 0, 0, 1"
            " FROM call_attempt_firsts) u GROUP BY b, stage, provider, ec",
            (ATTEMPTED, FAILED_OVER),
        ),
        (
            f"INSERT INTO rollup_latency SELECT 60, {b('at_wall')}, stage, provider,"
            " (SELECT MIN(bin) FROM latency_bins WHERE upper_s >= latency_s), COUNT(*)"
            f" FROM events WHERE kind = ? AND outcome = 'ok' AND {named}"
            " AND latency_s IS NOT NULL AND latency_s <> 0 GROUP BY 2, 3, 4, 5",
            (ATTEMPTED,),
        ),
        (
            f"INSERT INTO rollup_causes SELECT 60, {b('started_at')}, stage, provider,"
            " error_class, kind, COUNT(*), SUM(fallback_tried) FROM call_causes"
            " GROUP BY 2, 3, 4, 5, 6",
            (),
        ),
        (
            f"INSERT INTO rollup_events SELECT 60, {b('at_wall')}, kind, COUNT(*)"
            " FROM events GROUP BY 2, 3",
            (),
        ),
    ]
