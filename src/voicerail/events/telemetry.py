"""Events out to logs, Prometheus metrics and OpenTelemetry traces.

The call driver and the router only append events; :class:`ObservedEventStore`
wraps the event store, scrubs each event (``redaction.scrub_event``), stores it,
and hands its redacted form to the sinks. So the call path needs no metrics or
tracing code, and no sink ever sees personal data.

Rules:

1. Sinks receive ``redaction.redacted_dict(event)``: ``pii`` keys without values.
2. A sink that raises is logged and skipped; appending never fails because of one.
3. Traces: one ``call`` span per call, a ``turn`` span from each end of a caller
   turn to the next (or to the end of the call), and one span per stage step
   with a latency (provider attempts, transcripts, dialog decisions, first TTS
   audio), placed at ``[at_wall - latency_s, at_wall]``. LLM attempts follow the
   OpenTelemetry GenAI semantic conventions (span ``chat {model}``,
   ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
   ``gen_ai.usage.*``; https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/,
   development status, 2025). Failovers, barge-ins and protocol errors are span
   events on the open turn (or call) span.
4. Metrics (prometheus-client, one registry per app): calls in progress, calls by
   outcome, stage and turn latency histograms, provider attempts by outcome,
   failovers, barge-ins, seconds to each credential's expiry.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from voicerail.errors import StoreError
from voicerail.events.model import Event, EventKind
from voicerail.events.redaction import redacted_dict, scrub_event, scrub_text
from voicerail.events.store import CallRecord, EventStore
from voicerail.extras import require_extra

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from voicerail.events.tracing import TracingSink

log = logging.getLogger(__name__)

#: Voice latency buckets, seconds: the 800 ms target and the 1.5 s abandon line inside.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
# Inbound lag: tens of ms when the runtime keeps up (a frame and a VAD window of
# rounding), hundreds when it falls behind.
INBOUND_LAG_BUCKETS_S = (0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class EventSink(Protocol):
    """Receives every stored event, redacted (rule 1)."""

    def receive_event(self, event: dict[str, Any]) -> None:
        """Take one event (``redacted_dict`` form). May raise; the caller logs it."""
        ...


class ObservedEventStore:
    """An :class:`EventStore` that scrubs events and forwards them to sinks.

    Reads (``events``, ``calls``, ``fetch``…) go to the wrapped store unchanged.

    Args:
        inner: the store that keeps the events.
        sinks: receivers of each appended event.
    """

    def __init__(self, inner: EventStore, sinks: Sequence[EventSink]) -> None:
        self.inner = inner
        self.sinks = list(sinks)

    @property
    def dialect(self) -> str:
        """The wrapped store's SQL dialect, ``""`` when it cannot answer queries."""
        return str(getattr(self.inner, "dialect", ""))

    def append(self, event: Event) -> Event:
        stored = self.inner.append(scrub_event(event))
        body = redacted_dict(stored)
        for sink in self.sinks:
            try:
                sink.receive_event(body)
            except Exception:  # rule 2: a broken sink never breaks the call path
                log.exception("event sink %s failed", type(sink).__name__)
        return stored

    def save_call(self, call: CallRecord) -> None:
        if call.error:
            call = replace(call, error=scrub_text(call.error))
        self.inner.save_call(call)

    def events(self, call_id: str) -> list[Event]:
        return self.inner.events(call_id)

    def continue_call(self, call_id: str) -> int | None:
        """The wrapped store's ``continue_call`` (None when it has none).

        Raises:
            StoreError: the read failed.
        """
        inner = getattr(self.inner, "continue_call", None)
        return None if inner is None else int(inner(call_id))

    def call(self, call_id: str) -> CallRecord | None:
        return self.inner.call(call_id)

    def calls(
        self, *, limit: int = 50, outcome: str | None = None, call_sid: str | None = None
    ) -> list[CallRecord]:
        return self.inner.calls(limit=limit, outcome=outcome, call_sid=call_sid)

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query on the wrapped store.

        Raises:
            StoreError: the wrapped store is not a ``SQLReader``, or the query failed.
        """
        fetch = getattr(self.inner, "fetch", None)
        if fetch is None:
            raise StoreError(f"{type(self.inner).__name__} cannot answer queries")
        rows: list[tuple[Any, ...]] = fetch(sql, args)
        return rows

    def flush(self) -> None:
        """Commit pending writes of the wrapped store, when it batches them."""
        flush = getattr(self.inner, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        self.inner.close()


class LogSink:
    """Logs each event at DEBUG as a redacted dict."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("voicerail.events")

    def receive_event(self, event: dict[str, Any]) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("event %s", event)


class PrometheusSink:
    """Rule 4: counters, gauges and histograms fed by events.

    Args:
        registry: where the metrics are registered (one per app, so tests and
            several apps in one process do not collide).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls_in_progress = Gauge(
            "voicerail_calls_in_progress",
            "Calls started and not yet ended.",
            registry=r,
            multiprocess_mode="livesum",  # several workers: the sum over live ones
        )
        self.calls = Counter("voicerail_calls", "Calls ended, by outcome.", ["outcome"], registry=r)
        self.stage_latency = Histogram(
            "voicerail_stage_latency_seconds",
            "Latency of one step of a turn, by stage (STT final, dialog, LLM, TTS first audio).",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.turn_latency = Histogram(
            "voicerail_turn_latency_seconds",
            "From the end of a caller turn to the agent's first audio.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.inbound_lag = Histogram(
            "voicerail_inbound_lag_seconds",
            "How late each caller turn's end was seen against the caller's audio clock: "
            "the runtime falling behind its inbound audio.",
            buckets=INBOUND_LAG_BUCKETS_S,
            registry=r,
        )
        self.attempts = Counter(
            "voicerail_provider_attempts",
            "Provider attempts, by stage, provider and outcome.",
            ["stage", "provider", "outcome"],
            registry=r,
        )
        self.failovers = Counter(
            "voicerail_provider_failovers",
            "Switches from one provider to the next within a turn.",
            ["stage", "from_provider", "to_provider", "reason"],
            registry=r,
        )
        self.refused = Counter(
            "voicerail_calls_refused",
            "Calls refused beyond capacity, by where (webhook, stream) and why "
            "(full, overloaded, draining).",
            ["where", "reason"],
            registry=r,
        )
        self.barge_ins = Counter(
            "voicerail_barge_ins", "Caller speech that interrupted the agent.", registry=r
        )
        self.credential_expiry = Gauge(
            "voicerail_credential_expiry_seconds",
            "Seconds until each credential expires (negative: expired).",
            ["credential"],
            registry=r,
            multiprocess_mode="mostrecent",  # one worker checks (server/operations.py)
        )

    def receive_event(self, event: dict[str, Any]) -> None:
        kind, stage, data = event["kind"], event["stage"] or "none", event["data"]
        latency = event["latency_s"]
        if kind == EventKind.CALL_STARTED:
            self.calls_in_progress.inc()
        elif kind == EventKind.CALL_ENDED:
            self.calls_in_progress.dec()
            self.calls.labels(outcome=event["outcome"] or "unknown").inc()
        elif kind == EventKind.PROVIDER_ATTEMPTED:
            provider = event["provider"] or "unknown"
            self.attempts.labels(stage, provider, event["outcome"] or "unknown").inc()
            if stage == "llm" and event["outcome"] == "ok" and latency is not None:
                self.stage_latency.labels(stage="llm").observe(latency)
        elif kind == EventKind.PROVIDER_FAILED_OVER:
            self.failovers.labels(
                stage, str(data.get("from")), str(data.get("to")), str(data.get("reason"))
            ).inc()
        elif kind == EventKind.CALL_REFUSED:
            reason = str(data.get("reason") or "unknown").split(":", 1)[0]
            self.refused.labels(str(data.get("where")), reason).inc()
        elif kind == EventKind.BARGE_IN:
            self.barge_ins.inc()
        elif kind == EventKind.USER_TURN_ENDED:
            lag = data.get("inbound_lag_s")
            if isinstance(lag, int | float):
                self.inbound_lag.observe(max(0.0, lag))
        elif kind in (EventKind.TRANSCRIPT_FINAL, EventKind.DIALOG_DECIDED):
            if latency is not None and event["outcome"] != "error":
                self.stage_latency.labels(stage=stage).observe(latency)
        elif kind == EventKind.TTS_FIRST_AUDIO:
            if latency is not None:
                self.stage_latency.labels(stage="tts").observe(latency)
            since = data.get("since_turn_end_s")
            if isinstance(since, int | float):
                self.turn_latency.observe(since)

    def set_credential_expiry(self, name: str, seconds: float | None) -> None:
        """Publish a credential's time to expiry (removed when it has none)."""
        if seconds is None:
            with contextlib.suppress(KeyError):
                self.credential_expiry.remove(name)
        else:
            self.credential_expiry.labels(credential=name).set(seconds)


@dataclass
class Telemetry:
    """The sinks of one server, and the store wrapper that feeds them.

    Attributes:
        metrics: the Prometheus sink (its ``registry`` is served at ``/metrics``).
        tracing: the tracing sink, when traces are exported.
        extra: further sinks (the log sink).
    """

    metrics: PrometheusSink
    tracing: TracingSink | None = None
    extra: list[EventSink] = field(default_factory=list)

    @property
    def sinks(self) -> list[EventSink]:
        """Every sink, metrics first."""
        sinks: list[EventSink] = [self.metrics]
        if self.tracing is not None:
            sinks.append(self.tracing)
        return sinks + self.extra

    def wrap(self, store: EventStore) -> ObservedEventStore:
        """``store`` observed by these sinks (a store already wrapped is re-wrapped inside)."""
        inner = store.inner if isinstance(store, ObservedEventStore) else store
        return ObservedEventStore(inner, self.sinks)

    def shutdown(self) -> None:
        """Flush and stop trace export."""
        if self.tracing is not None:
            self.tracing.shutdown()


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector base URL (``/v1/traces`` appended)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def build_telemetry(
    *,
    otlp_endpoint: str | None = None,
    span_processor: SpanProcessor | None = None,
    service_name: str = "voicerail",
    log_events: bool = True,
) -> Telemetry:
    """Metrics always; traces when an OTLP endpoint or a span processor is given.

    Args:
        otlp_endpoint: collector base URL (``http://127.0.0.1:4318``); spans are
            batched and sent over OTLP/HTTP protobuf to ``<endpoint>/v1/traces``.
        span_processor: an extra processor (tests use an in-memory exporter).
        service_name: the ``service.name`` resource attribute.
        log_events: also log every event (redacted) at DEBUG.

    Raises:
        ConfigError: traces are asked for and the ``otel`` extra is not installed.
    """
    tracing = None
    if otlp_endpoint or span_processor:
        require_extra("otel", "trace export (--otlp-endpoint)")
        from voicerail.events.tracing import build_tracing

        tracing = build_tracing(
            otlp_endpoint=otlp_endpoint, span_processor=span_processor, service_name=service_name
        )
    extra: list[EventSink] = [LogSink()] if log_events else []
    return Telemetry(metrics=PrometheusSink(), tracing=tracing, extra=extra)
