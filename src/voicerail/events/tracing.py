"""Events out to OpenTelemetry traces: rule 3 of :mod:`voicerail.events.telemetry`.

Separate from the metrics and log sinks so that only trace export needs the
``otel`` extra: :func:`voicerail.events.telemetry.build_telemetry` imports this
module when an OTLP endpoint (or a span processor) is configured.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from voicerail.events.model import EventKind
from voicerail.events.telemetry import otlp_traces_url

# Numeric data fields worth carrying on spans (never free text).
_SPAN_DATA_FIELDS = (
    "attempt",
    "hedged",
    "model_version",
    "turn",
    "cost_usd",
    "audio_s",
    "characters",
    "confidence",
    "num_words",
    "since_turn_end_s",
)


@dataclass
class _CallSpans:
    call: Span
    turn: Span | None = None
    turn_number: int = 0


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class TracingSink:
    """Rule 3: call → turn → stage spans from events.

    Args:
        provider: the tracer provider (export configured by its span processors).
        max_open_calls: calls whose end never came are closed, oldest first, past this.
    """

    def __init__(self, provider: TracerProvider, *, max_open_calls: int = 10_000) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("voicerail")
        self.max_open_calls = max_open_calls
        self._open: OrderedDict[str, _CallSpans] = OrderedDict()

    def receive_event(self, event: dict[str, Any]) -> None:
        kind, call_id, at_ns = event["kind"], event["call_id"], _ns(event["at_wall"])
        if kind == EventKind.CALL_STARTED:
            self._start_call(call_id, at_ns)
            return
        spans = self._open.get(call_id)
        if spans is None:
            return  # the call started before this sink (or was evicted)
        parent = spans.turn or spans.call
        if kind == EventKind.USER_TURN_ENDED:
            if spans.turn is not None:
                spans.turn.end(end_time=at_ns)
            spans.turn_number += 1
            spans.turn = self.tracer.start_span(
                "turn",
                context=trace.set_span_in_context(spans.call),
                start_time=at_ns,
                attributes={"voicerail.turn": spans.turn_number, "voicerail.call_id": call_id},
            )
        elif kind == EventKind.CALL_ENDED:
            self._end_call(call_id, spans, event, at_ns)
        elif event["latency_s"] is not None and event["stage"] is not None:
            self._stage_span(parent, event)
        elif kind in (
            EventKind.PROVIDER_FAILED_OVER,
            EventKind.BARGE_IN,
            EventKind.PROTOCOL_ERROR,
            EventKind.REPROMPTED,
            EventKind.HANDOFF_REQUESTED,
        ):
            parent.add_event(kind, attributes=_attributes(event), timestamp=at_ns)

    def _start_call(self, call_id: str, at_ns: int) -> None:
        span = self.tracer.start_span(
            "call",
            kind=SpanKind.SERVER,
            start_time=at_ns,
            attributes={"voicerail.call_id": call_id},
        )
        self._open[call_id] = _CallSpans(span)
        while len(self._open) > self.max_open_calls:
            _, oldest = self._open.popitem(last=False)
            if oldest.turn is not None:
                oldest.turn.end()
            oldest.call.end()

    def _end_call(self, call_id: str, spans: _CallSpans, event: dict[str, Any], at_ns: int) -> None:
        del self._open[call_id]
        if spans.turn is not None:
            spans.turn.end(end_time=at_ns)
        outcome = event["outcome"] or "unknown"
        spans.call.set_attribute("voicerail.outcome", outcome)
        spans.call.set_attribute("voicerail.turns", spans.turn_number)
        if outcome == "failed":
            spans.call.set_status(Status(StatusCode.ERROR, str(event["data"].get("error"))))
        spans.call.end(end_time=at_ns)

    def _stage_span(self, parent: Span, event: dict[str, Any]) -> None:
        end_ns = _ns(event["at_wall"])
        start_ns = end_ns - _ns(max(0.0, event["latency_s"]))
        attributes = _attributes(event)
        name = event["stage"]
        if event["kind"] == EventKind.PROVIDER_ATTEMPTED:
            name = f"{event['stage']} {event['provider']}"
            if event["stage"] == "llm":
                name = f"chat {event['model']}"
                attributes.update(_gen_ai_attributes(event))
        elif event["kind"] == EventKind.TTS_FIRST_AUDIO:
            name = "tts first audio"
        span = self.tracer.start_span(
            name,
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT if event["provider"] else SpanKind.INTERNAL,
            start_time=start_ns,
            attributes=attributes,
        )
        if event["outcome"] == "error":
            span.set_status(Status(StatusCode.ERROR, event["error_class"] or "error"))
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        """End open spans and flush the exporters."""
        for spans in self._open.values():
            if spans.turn is not None:
                spans.turn.end()
            spans.call.end()
        self._open.clear()
        self.provider.shutdown()


def _attributes(event: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {"voicerail.event": event["kind"]}
    for key in ("stage", "provider", "model", "outcome", "latency_s"):
        if event[key] is not None:
            attributes[f"voicerail.{key}"] = event[key]
    if event["error_class"]:
        attributes["error.type"] = event["error_class"]
    data = event["data"]
    for key in _SPAN_DATA_FIELDS:
        value = data.get(key)
        if isinstance(value, bool | int | float | str):
            attributes[f"voicerail.{key}"] = value
    if event["kind"] == EventKind.PROVIDER_FAILED_OVER:
        for key in ("from", "to", "reason"):
            if data.get(key) is not None:
                attributes[f"voicerail.failover.{key}"] = str(data[key])
    return attributes


def _gen_ai_attributes(event: dict[str, Any]) -> dict[str, Any]:
    data = event["data"]
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": event["provider"],
        "gen_ai.request.model": event["model"],
    }
    if data.get("model_version"):
        attributes["gen_ai.response.model"] = str(data["model_version"])
    for ours, theirs in (
        ("input_tokens", "gen_ai.usage.input_tokens"),
        ("output_tokens", "gen_ai.usage.output_tokens"),
    ):
        if isinstance(data.get(ours), int):
            attributes[theirs] = data[ours]
    return {k: v for k, v in attributes.items() if v is not None}


def build_tracing(
    *,
    otlp_endpoint: str | None = None,
    span_processor: SpanProcessor | None = None,
    service_name: str = "voicerail",
) -> TracingSink:
    """A tracing sink exporting to ``otlp_endpoint`` and/or ``span_processor``.

    Args:
        otlp_endpoint: collector base URL (``http://127.0.0.1:4318``); spans are
            batched and sent over OTLP/HTTP protobuf to ``<endpoint>/v1/traces``.
        span_processor: an extra processor (tests use an in-memory exporter).
        service_name: the ``service.name`` resource attribute.
    """
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_traces_url(otlp_endpoint))
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if span_processor:
        provider.add_span_processor(span_processor)
    return TracingSink(provider)
