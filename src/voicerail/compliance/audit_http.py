"""Audit entries for every read of call data over HTTP (API and dashboard), and for
configuration changes at start-up.

Rules:

1. A request whose path reads call data (:data:`CALL_DATA_PATHS`) and that was
   answered (any status below 400) writes one entry: actor ``api`` (an API key
   or none) or ``dashboard`` (a session cookie), with the client address;
   action ``call.read`` or ``calls.list``; target the call id or the path.
2. The write happens in a worker thread after the response started, so a slow
   disk never delays an answer; a failed write is logged, never raised.
3. :func:`record_config` hashes each configuration file at start-up and writes
   ``config.changed`` when the hash differs from the last one recorded for that
   file (``config.loaded`` the first time).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voicerail.compliance.audit import AuditLog
from voicerail.errors import StoreError

log = logging.getLogger(__name__)

#: Paths that read call data, and the action each is recorded as.
CALL_DATA_PATHS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/api/calls/(?P<call>[^/]+)$"), "call.read"),
    (re.compile(r"^/dashboard/calls/(?P<call>[^/]+)$"), "call.read"),
    (re.compile(r"^/api/calls$"), "calls.list"),
    (re.compile(r"^/dashboard/calls$"), "calls.list"),
)


class AuditAccessMiddleware:
    """ASGI middleware for rule 1 and 2.

    Args:
        app: the application.
        path: the audit log file.
        wall: Unix time now, seconds.
    """

    def __init__(self, app: Any, path: Path, wall: Any) -> None:
        self.app = app
        self.path = path
        self.wall = wall

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        matched = _match(scope.get("path", ""))
        if matched is None:
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        await self.app(scope, receive, recording_send)
        if status and status[0] < 400:
            action, target = matched
            actor = actor_of(scope)
            await asyncio.to_thread(self._write, actor, action, target, status[0])

    def _write(self, actor: str, action: str, target: str, status: int) -> None:
        try:
            audit = AuditLog(self.path)
            try:
                audit.append(actor, action, target, {"status": status}, at_wall=self.wall())
            finally:
                audit.close()
        except StoreError as exc:
            log.warning("audit entry not written: %s", exc)


def _match(path: str) -> tuple[str, str] | None:
    for pattern, action in CALL_DATA_PATHS:
        found = pattern.match(path)
        if found:
            return action, found.groupdict().get("call") or path
    return None


def actor_of(scope: Any) -> str:
    """Who a request is, for an audit entry: ``api``, ``dashboard`` or ``anonymous``,
    then ``:`` and the client address (rule 1)."""
    headers = {k.decode("latin-1").lower() for k, _ in scope.get("headers", [])}
    if "authorization" in headers or "x-api-key" in headers:
        who = "api"
    else:
        who = "dashboard" if "cookie" in headers else "anonymous"
    client = scope.get("client") or ("?", 0)
    return f"{who}:{client[0]}"


def record_config(audit: AuditLog, files: Sequence[Path], *, actor: str, at_wall: float) -> int:
    """Rule 3: one entry per configuration file that is new or changed; returns how many."""
    last: dict[str, str] = {}
    for entry in audit.entries():
        if entry.action in ("config.loaded", "config.changed"):
            last[entry.target] = str(entry.detail.get("sha256", ""))
    written = 0
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        target = str(path.resolve())
        if last.get(target) == digest:
            continue
        action = "config.changed" if target in last else "config.loaded"
        audit.append(actor, action, target, {"sha256": digest}, at_wall=at_wall)
        written += 1
    return written
