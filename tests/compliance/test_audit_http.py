"""Reads of call data over HTTP and configuration changes land in the audit log."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from voicerail.compliance.audit import AuditLog
from voicerail.compliance.audit_http import AuditAccessMiddleware, record_config


def app_with_audit(tmp_path) -> Starlette:
    async def call(request):
        if request.path_params["call_id"] == "missing":
            return JSONResponse({"error": "no such call"}, status_code=404)
        return JSONResponse({"call_id": request.path_params["call_id"]})

    async def calls(request):
        return JSONResponse([])

    async def health(request):
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/api/calls", calls),
            Route("/api/calls/{call_id}", call),
            Route("/healthz", health),
        ]
    )
    app.add_middleware(AuditAccessMiddleware, path=tmp_path / "audit.sqlite3", wall=lambda: 5.0)
    return app


def test_each_answered_read_of_call_data_is_one_entry(tmp_path):
    with TestClient(app_with_audit(tmp_path)) as client:
        client.get("/api/calls/vr_1", headers={"Authorization": "Bearer k"})
        client.get("/api/calls", headers={"Cookie": "voicerail_session=x"})
        client.get("/api/calls/missing")  # not answered: nothing was read
        client.get("/healthz")
    entries = AuditLog(tmp_path / "audit.sqlite3").entries()
    assert [(e.actor.split(":")[0], e.action, e.target) for e in entries] == [
        ("api", "call.read", "vr_1"),
        ("dashboard", "calls.list", "/api/calls"),
    ]
    assert AuditLog(tmp_path / "audit.sqlite3").verify().ok


def test_configuration_files_are_recorded_when_new_or_changed(tmp_path):
    agent = tmp_path / "agent.yaml"
    agent.write_text("name: a\n")
    audit = AuditLog(tmp_path / "audit.sqlite3")
    assert record_config(audit, [agent], actor="system", at_wall=1.0) == 1
    assert record_config(audit, [agent], actor="system", at_wall=2.0) == 0
    agent.write_text("name: b\n")
    assert record_config(audit, [agent], actor="system", at_wall=3.0) == 1
    assert [e.action for e in audit.entries()] == ["config.loaded", "config.changed"]


def test_calls_show_on_the_command_line_is_an_entry(tmp_path, capsys):
    from voicerail.cli import main
    from voicerail.events.store import CallRecord, SQLiteEventStore

    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    store.save_call(CallRecord(call_id="vr_1", agent="a", started_at=1.0))
    store.close()
    assert main(["calls", "show", "vr_1", "--data-dir", str(tmp_path), "--json"]) == 0
    [entry] = AuditLog(tmp_path / "audit.sqlite3").entries()
    assert entry.actor.startswith("cli:") and (entry.action, entry.target) == ("call.read", "vr_1")
