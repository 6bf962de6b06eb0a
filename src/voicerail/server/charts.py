"""Server-rendered SVG charts for the dashboard: no JavaScript, no build step.

* :func:`waterfall_svg`: a call's timeline. One row per step with a duration
  (provider attempts, transcripts, dialog decisions, first TTS audio), drawn at
  ``[t - latency_s, t]`` on the call's monotonic time axis, coloured by stage;
  failed steps are red, cancelled and lost hedges grey. Vertical markers show
  the ends of caller turns, failovers and barge-ins.
* :func:`bars_svg`: horizontal bars, optionally paired with a previous value.

Every text is escaped; every mark carries a ``<title>`` (the browser's tooltip)
and ``class``/``data-*`` attributes the browser tests select on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from voicerail.events.model import Event, EventKind

STAGE_COLOURS = {
    "telephony": "#64748b",
    "vad": "#0ea5e9",
    "stt": "#2563eb",
    "dialog": "#7c3aed",
    "llm": "#c026d3",
    "tts": "#059669",
    "crm": "#d97706",
    "handoff": "#db2777",
}
ERROR_COLOUR = "#dc2626"
MUTED_COLOUR = "#cbd5e1"

_LABEL_W = 190
_ROW_H = 18
_AXIS_H = 26


def _ticks(span_s: float) -> list[float]:
    """About six round tick positions from 0 to ``span_s``."""
    raw = span_s / 6
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(span_s / step) + 1)]


def _row_label(e: Event) -> str:
    stage = str(e.stage) if e.stage else ""
    if e.kind == EventKind.PROVIDER_ATTEMPTED:
        attempt = e.data.get("attempt")
        suffix = f" #{attempt}" if attempt else ""
        return f"{stage} {e.provider or ''}{suffix}"
    names = {
        EventKind.TRANSCRIPT_FINAL: "transcript",
        EventKind.DIALOG_DECIDED: "decision",
        EventKind.TTS_FIRST_AUDIO: "first audio",
    }
    return f"{stage} {names.get(e.kind, str(e.kind))}"


def _bar_colour(e: Event) -> str:
    if e.outcome == "error":
        return ERROR_COLOUR
    if e.outcome in ("cancelled", "hedge_lost"):
        return MUTED_COLOUR
    return stage_colour(str(e.stage) if e.stage else "")


def stage_colour(stage: str) -> str:
    """The colour of ``stage`` (grey for unknown stages)."""
    return STAGE_COLOURS.get(stage, "#94a3b8")


@dataclass(frozen=True)
class _Marker:
    t_s: float
    css: str
    colour: str
    label: str


def _markers(events: Sequence[Event], t0: float) -> list[_Marker]:
    markers = []
    for e in events:
        t = e.at_mono - t0
        if e.kind == EventKind.USER_TURN_ENDED:
            markers.append(_Marker(t, "wf-turn", "#94a3b8", f"turn {e.data.get('turn', '')}"))
        elif e.kind == EventKind.PROVIDER_FAILED_OVER:
            label = f"failover {e.data.get('from')} → {e.data.get('to')} ({e.data.get('reason')})"
            markers.append(_Marker(t, "wf-failover", "#ea580c", label))
        elif e.kind == EventKind.BARGE_IN:
            markers.append(_Marker(t, "wf-barge-in", "#9333ea", "barge-in"))
        elif e.kind == EventKind.PROTOCOL_ERROR:
            markers.append(_Marker(t, "wf-error", ERROR_COLOUR, "protocol error"))
    return markers


def waterfall_svg(
    events: Sequence[Event], *, width: int = 960, first_failure: int | None = None
) -> str:
    """The call's waterfall as an ``<svg>`` element (see the module docstring).

    Args:
        events: the call's events in order.
        width: total width in pixels.
        first_failure: ``seq`` of the first failing event, outlined when drawn.
    """
    if not events:
        return '<svg class="waterfall" width="0" height="0"></svg>'
    t0 = events[0].at_mono
    steps = [e for e in events if e.latency_s is not None and e.stage is not None]
    starts = [e.at_mono - t0 - (e.latency_s or 0.0) for e in steps]
    span_s = max([events[-1].at_mono - t0, *(e.at_mono - t0 for e in steps), 0.5])
    lo = min([0.0, *starts])
    span_s -= lo
    plot_w = width - _LABEL_W - 10
    markers = _markers(events, t0)
    height = _AXIS_H + _ROW_H * len(steps) + 22

    def x(t: float) -> float:
        return _LABEL_W + (t - lo) / span_s * plot_w

    parts = [
        f'<svg class="waterfall" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="call timeline" font-family="system-ui,sans-serif" font-size="11">'
    ]
    for tick in _ticks(span_s):
        tx = x(tick + lo)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{_AXIS_H - 4}" x2="{tx:.1f}" y2="{height - 20}" '
            f'stroke="#e2e8f0"/><text x="{tx:.1f}" y="{_AXIS_H - 8}" text-anchor="middle" '
            f'fill="#475569">{tick + lo:g} s</text>'
        )
    for row, (e, start) in enumerate(zip(steps, starts, strict=True)):
        y = _AXIS_H + row * _ROW_H
        x0, x1 = x(start), x(e.at_mono - t0)
        bar_w = max(x1 - x0, 2.0)
        outline = ' stroke="#111827" stroke-width="2"' if e.seq == first_failure else ""
        title = (
            f"{_row_label(e)} · {(e.latency_s or 0) * 1000:.0f} ms · {e.outcome or ''}"
            f"{' · ' + e.error_class if e.error_class else ''}"
        )
        parts.append(
            f'<g class="wf-row" data-seq="{e.seq}" data-kind="{escape(str(e.kind))}" '
            f'data-stage="{escape(str(e.stage))}" data-outcome="{escape(e.outcome or "")}">'
            f'<text x="4" y="{y + 13}" fill="#1e293b">{escape(_row_label(e))}</text>'
            f'<rect class="wf-bar" x="{x0:.1f}" y="{y + 3}" width="{bar_w:.1f}" '
            f'height="{_ROW_H - 6}" rx="2" fill="{_bar_colour(e)}"{outline}>'
            f"<title>{escape(title)}</title></rect></g>"
        )
    for m in markers:
        mx = x(m.t_s)
        parts.append(
            f'<g class="wf-marker {m.css}"><line x1="{mx:.1f}" y1="{_AXIS_H - 4}" '
            f'x2="{mx:.1f}" y2="{height - 20}" stroke="{m.colour}" stroke-width="1.5" '
            f'stroke-dasharray="4 3"><title>{escape(m.label)}</title></line>'
            f'<text x="{mx + 2:.1f}" y="{height - 6}" fill="{m.colour}">'
            f"{escape(m.label.split(' (')[0])}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(
    rows: Sequence[tuple[str, float, float | None]],
    *,
    fmt: Callable[[float], str],
    width: int = 460,
    css: str = "bars",
) -> str:
    """Horizontal bars: ``(label, value, previous value or None)`` per row.

    The previous value is drawn as a thin grey bar under the current one.
    """
    if not rows:
        return f'<svg class="{css}" width="0" height="0"></svg>'
    top = max([v for _, v, _ in rows] + [p for _, _, p in rows if p is not None] + [1e-12])
    label_w, row_h = 170, 26
    plot_w = width - label_w - 70
    height = row_h * len(rows) + 4
    parts = [
        f'<svg class="{css}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="system-ui,sans-serif" '
        f'font-size="12">'
    ]
    for i, (label, value, previous) in enumerate(rows):
        y = i * row_h + 2
        w = value / top * plot_w
        parts.append(
            f'<g class="bar-row" data-label="{escape(label)}">'
            f'<text x="0" y="{y + 14}" fill="#1e293b">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{max(w, 1):.1f}" height="14" '
            f'fill="#2563eb"><title>{escape(label)}: {escape(fmt(value))}</title></rect>'
        )
        if previous is not None:
            pw = previous / top * plot_w
            parts.append(
                f'<rect x="{label_w}" y="{y + 18}" width="{max(pw, 1):.1f}" height="4" '
                f'fill="#94a3b8"><title>previous: {escape(fmt(previous))}</title></rect>'
            )
        parts.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" fill="#334155">'
            f"{escape(fmt(value))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
