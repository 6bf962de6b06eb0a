"""Personal data out of logs, traces and unmarked fields.

Rules:

1. Personal data belongs in ``Event.pii`` (model rule 2). Everything that leaves
   the store for logs, traces or metrics goes through :func:`redacted_dict`,
   which keeps the keys of ``pii`` and none of its values.
2. Free text can still carry personal data by accident (a provider's error
   message that echoes the prompt, an exception with a phone number in it). Such
   text is *scrubbed*: card numbers (13-19 digits passing the Luhn check), phone
   numbers (10-15 digits, optionally ``+``, spaces, dots, dashes, parentheses),
   US social security numbers and e-mail addresses are replaced by a marker.
3. :func:`scrub_event` applies rule 2 to an event's unmarked strings *before* it
   is stored: each string of ``data`` that had something scrubbed is moved,
   unscrubbed, to ``pii`` under ``"data.<key>"``, so nothing is lost and personal
   data lives only in the marked field.
4. Logging: :func:`install_log_redaction` scrubs every log record's formatted
   message and exception text when the record is created (``voicerail serve``
   installs it); :class:`RedactingFilter` does the same for one handler.

The processors are plain functions from an event (or dict) to a new one, in the
manner of structlog's processor chains.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from voicerail.events.model import Event

REDACTED = "[redacted]"

# A run of digits with the separators people and systems put in phone and card
# numbers, not glued to letters, digits or underscores on either side.
_DIGIT_RUN = re.compile(r"(?<![\w+-])\+?\(?\d[\d ()./-]{7,}\d(?![\w])")
# Runs that look like numbers but are dates or decimals.
_NOT_PERSONAL = re.compile(r"\d{4}-\d{2}-\d{2}|\d+\.\d+$")
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (only 0-9) passes the Luhn check used by card numbers."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _classify(run: str) -> str | None:
    if _NOT_PERSONAL.match(run):
        return None
    digits = re.sub(r"\D", "", run)
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return "card"
    if 10 <= len(digits) <= 15:
        return "phone"
    return None


def scrub_text(text: str) -> str:
    """``text`` with card numbers, phone numbers, SSNs and e-mail addresses replaced.

    >>> scrub_text("call +1 (555) 010-9999 or pay 4111 1111 1111 1111")
    'call [redacted:phone] or pay [redacted:card]'
    """

    def digit_run(match: re.Match[str]) -> str:
        label = _classify(match.group(0))
        return f"[redacted:{label}]" if label else match.group(0)

    text = _SSN.sub("[redacted:ssn]", text)
    text = _DIGIT_RUN.sub(digit_run, text)
    return _EMAIL.sub("[redacted:email]", text)


def scrub_value(value: Any) -> Any:
    """Scrub every string inside ``value`` (dicts and lists are walked)."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def scrub_event(event: Event) -> Event:
    """Rule 3: move unmarked strings that hold personal data into ``pii``.

    Returns ``event`` itself when nothing needed scrubbing.
    """
    moved: dict[str, Any] = {}
    data = dict(event.data)
    for key, value in event.data.items():
        clean = scrub_value(value)
        if clean != value:
            data[key] = clean
            moved[f"data.{key}"] = value
    if not moved:
        return event
    return replace(event, data=data, pii={**event.pii, **moved})


def redacted_dict(event: Event) -> dict[str, Any]:
    """Rule 1: the event as a dict fit for logs and traces (``pii`` values removed,
    unmarked strings scrubbed)."""
    body = event.to_dict(redact=True)
    body["data"] = scrub_value(body["data"])
    return body


def scrub_record(record: logging.LogRecord) -> None:
    """Rule 4 on one record: its formatted message and exception text, scrubbed in place."""
    message = record.getMessage()
    clean = scrub_text(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub_text(record.exc_text)


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs each record's message, arguments and traceback.

    For one handler (``handler.addFilter(RedactingFilter())``); a filter on a
    logger does not see its children's records. :func:`install_log_redaction`
    covers every handler of the process instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def install_log_redaction() -> Callable[[], None]:
    """Scrub every log record of the process when it is created.

    Wraps the log record factory, so that every handler sees scrubbed text:
    present and future ones, uvicorn's, and logging's last resort. Installing
    twice has no further effect. Returns a function that uninstalls it.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "voicerail_redacting", False):
        return lambda: None

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        scrub_record(record)
        return record

    factory.voicerail_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)

    def uninstall() -> None:
        if logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(previous)

    return uninstall
