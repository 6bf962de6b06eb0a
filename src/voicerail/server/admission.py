"""What a caller beyond capacity gets: TwiML a Twilio number acts on, never half a call.

The webhook (``POST /twilio/voice``) is the clean place to refuse: the caller has
not been connected to a stream yet. What they get is the agent's ``overflow``
policy (:class:`OverflowPolicy`, read from the agent file):

* ``say`` (default): a short spoken message, then ``<Hangup/>``
  (https://www.twilio.com/docs/voice/twiml/say, /hangup);
* ``reject``: ``<Reject reason="busy"/>``, so the caller hears a busy signal and
  the call is not billed (https://www.twilio.com/docs/voice/twiml/reject);
* ``dial``: ``<Dial>`` to an overflow number, e.g. a human team
  (https://www.twilio.com/docs/voice/twiml/dial).

A media WebSocket that arrives beyond the limit (a stream not announced by our
webhook, or one that came after its reservation expired) is closed with code
1013 "Try Again Later" (RFC 6455 §7.4.1 registry, IANA) and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from twilio.twiml.voice_response import VoiceResponse

from voicerail.errors import ConfigError

DEFAULT_BUSY_MESSAGE = (
    "Sorry, all our lines are busy right now. Please call back in a few minutes. Goodbye."
)


@dataclass(frozen=True)
class OverflowPolicy:
    """What callers beyond capacity get.

    Attributes:
        action: ``say`` (message, then hang up), ``reject`` (busy signal) or
            ``dial`` (transfer to ``number``).
        message: what ``say`` speaks (and what ``dial`` says first, if set).
        number: E.164 number for ``dial``.
    """

    action: Literal["say", "reject", "dial"] = "say"
    message: str = DEFAULT_BUSY_MESSAGE
    number: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ("say", "reject", "dial"):
            raise ConfigError(
                f"overflow action must be say, reject or dial, got {self.action!r}",
                field="overflow.action",
            )
        if self.action == "dial" and not self.number:
            raise ConfigError("overflow action dial needs a number", field="overflow.number")

    def twiml(self) -> str:
        """The TwiML document for one refused call."""
        response = VoiceResponse()
        if self.action == "reject":
            response.reject(reason="busy")
        elif self.action == "dial":
            response.dial(self.number)
        else:
            response.say(self.message)
            response.hangup()
        return str(response)


def load_overflow(agent_path: Path) -> OverflowPolicy:
    """The ``overflow:`` section of an agent file (``action``, ``message``, ``number``);
    the default policy when the file has none.

    Raises:
        ConfigError: the section is not a mapping, or has an unknown or bad field.
    """
    import yaml

    try:
        raw = yaml.safe_load(agent_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return OverflowPolicy()  # the agent loader reports the file's own errors
    section = raw.get("overflow") if isinstance(raw, dict) else None
    if section is None:
        return OverflowPolicy()
    if not isinstance(section, dict):
        raise ConfigError("overflow must be a mapping", source=str(agent_path), field="overflow")
    unknown = sorted(set(section) - {"action", "message", "number"})
    if unknown:
        raise ConfigError(
            f"unknown overflow field {unknown[0]!r}", source=str(agent_path), field="overflow"
        )
    return OverflowPolicy(**{k: str(v) for k, v in section.items()})  # type: ignore[arg-type]
