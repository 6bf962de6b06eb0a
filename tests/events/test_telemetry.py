"""Events feed Prometheus metrics and OpenTelemetry traces (call → turn → stage)."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from voicerail.events.model import Event, EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.events.telemetry import (
    ObservedEventStore,
    PrometheusSink,
    build_telemetry,
    otlp_traces_url,
)
from voicerail.testing.call_generator import events_for, plan_calls, store_calls

NOW = 1_800_000_000.0
PLANS = list(plan_calls(3, 40, start_s=NOW - 3600, end_s=NOW))


def replay(store) -> None:
    store_calls(store, PLANS)


def sample(sink: PrometheusSink, name: str, **labels: str) -> float:
    value = sink.registry.get_sample_value(name, labels)
    return value or 0.0


def test_metrics_count_calls_attempts_failovers_and_barge_ins(tmp_path):
    telemetry = build_telemetry(log_events=False)
    store = telemetry.wrap(SQLiteEventStore(tmp_path / "e.sqlite3"))
    replay(store)
    metrics = telemetry.metrics
    in_progress = sum(p.outcome is None for p in PLANS)
    assert sample(metrics, "voicerail_calls_in_progress") == in_progress
    outcomes = Counter(p.outcome for p in PLANS if p.outcome)
    for outcome, count in outcomes.items():
        assert sample(metrics, "voicerail_calls_total", outcome=outcome) == count
    attempts = Counter((a.stage, a.provider, a.outcome) for p in PLANS for a in p.attempts)
    for (stage, provider, outcome), count in attempts.items():
        got = sample(
            metrics,
            "voicerail_provider_attempts_total",
            stage=stage,
            provider=provider,
            outcome=outcome,
        )
        assert got == count, (stage, provider, outcome)
    failovers = sum(a.number == 2 for p in PLANS for a in p.attempts)
    total_failovers = sum(
        s.value
        for m in metrics.registry.collect()
        if m.name == "voicerail_provider_failovers"
        for s in m.samples
        if s.name.endswith("_total")
    )
    assert total_failovers == failovers
    assert sample(metrics, "voicerail_barge_ins_total") == sum(
        p.scenario == "barge_in" for p in PLANS
    )
    turns = sample(metrics, "voicerail_turn_latency_seconds_count")
    assert turns == sum(a.stage == "tts" and a.outcome == "ok" for p in PLANS for a in p.attempts)
    text = generate_latest(metrics.registry).decode()
    assert 'voicerail_stage_latency_seconds_bucket{le="0.8",stage="stt"}' in text
    metrics.set_credential_expiry("deepgram", 86400.0)
    assert sample(metrics, "voicerail_credential_expiry_seconds", credential="deepgram") == 86400
    metrics.set_credential_expiry("deepgram", None)
    metrics.set_credential_expiry("never-set", None)
    assert sample(metrics, "voicerail_credential_expiry_seconds", credential="deepgram") == 0
    store.close()


def test_inbound_lag_of_each_turn_end_feeds_a_histogram():
    metrics = PrometheusSink()
    for lag in (0.03, 0.4, None, -0.002):
        data = {"turn": 1} if lag is None else {"turn": 1, "inbound_lag_s": lag}
        metrics.receive_event(
            {"kind": "UserTurnEnded", "stage": "vad", "data": data, "latency_s": None}
        )
    assert sample(metrics, "voicerail_inbound_lag_seconds_count") == 3
    assert sample(metrics, "voicerail_inbound_lag_seconds_sum") == pytest.approx(0.43)
    assert sample(metrics, "voicerail_inbound_lag_seconds_bucket", le="0.05") == 2
    assert sample(metrics, "voicerail_inbound_lag_seconds_bucket", le="0.25") == 2


def test_refused_calls_are_counted_by_where_and_reason_kind():
    metrics = PrometheusSink()
    for where, reason in [
        ("webhook", "full: 10 of 10 calls"),
        ("webhook", "full: 10 of 10 calls"),
        ("stream", "overloaded: cpu 0.990>0.950"),
    ]:
        metrics.receive_event(
            {
                "kind": "CallRefused",
                "stage": "telephony",
                "data": {"where": where, "reason": reason},
                "latency_s": None,
            }
        )
    assert sample(metrics, "voicerail_calls_refused_total", where="webhook", reason="full") == 2
    assert (
        sample(metrics, "voicerail_calls_refused_total", where="stream", reason="overloaded") == 1
    )
    assert sample(metrics, "voicerail_calls_in_progress") == 0


def test_traces_nest_stage_spans_in_turns_in_calls(tmp_path):
    exporter = InMemorySpanExporter()
    telemetry = build_telemetry(span_processor=SimpleSpanProcessor(exporter), log_events=False)
    store = telemetry.wrap(SQLiteEventStore(tmp_path / "e.sqlite3"))
    plans = plan_calls(5, 1000, start_s=NOW - 3600, end_s=NOW)
    plan = next(p for p in plans if p.scenario == "tts_recovered")
    _, events = events_for(plan)
    for e in events:
        store.append(e)
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    [root] = [s for s in spans if s.name == "call"]
    assert root.parent is None and root.attributes["voicerail.call_id"] == plan.call_id
    turns = [s for s in spans if s.name == "turn"]
    assert len(turns) == plan.turns
    assert all(by_id[t.parent.span_id] is root for t in turns)
    chat = [s for s in spans if s.name == "chat gpt-4o-mini"]
    assert chat and all(by_id[s.parent.span_id].name == "turn" for s in chat)
    assert chat[0].attributes["gen_ai.operation.name"] == "chat"
    assert chat[0].attributes["gen_ai.provider.name"] == "openai"
    assert chat[0].attributes["gen_ai.request.model"] == "gpt-4o-mini"
    timeout = next(s for s in spans if s.name == "tts elevenlabs" and not s.status.is_ok)
    assert timeout.attributes["error.type"] == "timeout"
    assert timeout.end_time - timeout.start_time == int(1.2e9)
    failover = [e for t in turns for e in t.events if e.name == "ProviderFailedOver"]
    assert failover[0].attributes["voicerail.failover.to"] == "piper"
    store.close()


def test_a_failing_sink_never_breaks_appends(tmp_path, caplog):
    class Broken:
        def receive_event(self, event):
            raise RuntimeError("sink down")

    store = ObservedEventStore(SQLiteEventStore(tmp_path / "e.sqlite3"), [Broken()])
    stored = store.append(Event("c", EventKind.CALL_STARTED, 1.0, 1.0))
    assert stored.seq == 0 and store.events("c") == [stored]
    assert "event sink Broken failed" in caplog.text
    store.close()


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_spans_are_exported_over_otlp_http_to_a_collector(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        telemetry = build_telemetry(otlp_endpoint=endpoint, log_events=False)
        store = telemetry.wrap(SQLiteEventStore(tmp_path / "e.sqlite3"))
        _, events = events_for(PLANS[0])
        for e in events:
            store.append(e)
        telemetry.shutdown()  # flushes the batch processor
        store.close()
    finally:
        server.shutdown()
        server.server_close()
    [(path, body)] = _Collector.received
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    names = {s.name for r in request.resource_spans for ss in r.scope_spans for s in ss.spans}
    assert {"call", "turn"} <= names
    assert otlp_traces_url("http://x:4318/") == "http://x:4318/v1/traces"
    assert otlp_traces_url("http://x:4318/v1/traces") == "http://x:4318/v1/traces"
