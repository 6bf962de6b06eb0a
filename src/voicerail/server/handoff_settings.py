"""Handoff settings: the human's number, cold or warm, Twilio's account, and the
fallback per outcome, from ``voicerail serve``'s flags and the agent file.

Kept apart from the desk (``server/handoff.py``), which acts on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from voicerail.errors import ConfigError
from voicerail.handoff.twilio_transfer import Fallback, TransferOutcome


@dataclass(frozen=True)
class HandoffSettings:
    """How handed-off calls are transferred.

    Attributes:
        number: the human's number (E.164).
        mode: ``cold`` (``<Dial>``) or ``warm`` (conference, whispered summary).
        from_number: caller ID of the human's leg (a Twilio number; warm only).
        account_sid: the Twilio account (warm only).
        auth_token: its auth token (warm only).
        api_base_url: Twilio's REST API (a fake's URL in tests).
        hold_music_url: the conference's ``waitUrl`` (empty: Twilio's default).
        fallbacks: outcome → fallback when no human answered.
    """

    number: str
    mode: str = "cold"
    from_number: str = ""
    account_sid: str = ""
    auth_token: str = ""
    api_base_url: str = "https://api.twilio.com"
    hold_music_url: str = ""
    fallbacks: Mapping[TransferOutcome, Fallback] = field(default_factory=dict)


def parse_fallbacks(text: str) -> dict[TransferOutcome, Fallback]:
    """``"busy=callback,no_answer=voicemail"`` → the fallback per outcome.

    Raises:
        ConfigError: an unknown outcome or fallback, naming the pair.
    """
    fallbacks: dict[TransferOutcome, Fallback] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        outcome, _, fallback = pair.partition("=")
        try:
            fallbacks[TransferOutcome(outcome.strip())] = Fallback(fallback.strip())
        except ValueError as exc:
            raise ConfigError(
                f"expected outcome=agent|voicemail|callback, got {pair!r}",
                source="--handoff-fallbacks",
            ) from exc
    return fallbacks


def fallbacks_from_agent_file(path: Path) -> dict[TransferOutcome, Fallback]:
    """The fallbacks a flow agent file names, in its ``handoff_rules`` section::

        handoff_rules:
          fallback: {busy: callback, no_answer: voicemail, declined: agent}

    Missing outcomes go back to the agent (rule 3 of ``twilio_transfer.py``).

    Raises:
        ConfigError: ``fallback`` is not a mapping of outcome to ``agent``,
            ``voicemail`` or ``callback``, naming the file and the field.
    """
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}  # the agent loader reports the file's own errors
    rules = raw.get("handoff_rules") if isinstance(raw, dict) else None
    section = rules.get("fallback") if isinstance(rules, dict) else None
    if section is None:
        return {}
    where = "handoff_rules.fallback"
    if not isinstance(section, dict):
        raise ConfigError("expected outcome: fallback pairs", source=str(path), field=where)
    fallbacks: dict[TransferOutcome, Fallback] = {}
    for outcome, fallback in section.items():
        try:
            fallbacks[TransferOutcome(str(outcome))] = Fallback(str(fallback))
        except ValueError:
            raise ConfigError(
                f"expected outcome: agent|voicemail|callback, got {outcome}: {fallback}",
                source=str(path),
                field=where,
            ) from None
    return fallbacks


def settings_from(
    *,
    number: str | None,
    mode: str,
    from_number: str | None,
    account_sid: str | None,
    auth_token: str | None,
    hold_music_url: str = "",
    fallbacks: str = "",
    api_base_url: str = "https://api.twilio.com",
    agent_fallbacks: Mapping[TransferOutcome, Fallback] | None = None,
) -> HandoffSettings | None:
    """The settings ``voicerail serve`` builds from its flags (None without a number);
    ``api_base_url`` is ``$VOICERAIL_TWILIO_API_URL`` (a fake's URL in rehearsals);
    ``agent_fallbacks`` are the agent file's (:func:`fallbacks_from_agent_file`), and
    ``--handoff-fallbacks`` overrides them outcome by outcome.

    Raises:
        ConfigError: warm mode without the Twilio account, token or caller ID.
    """
    if not number:
        return None
    if mode not in ("cold", "warm"):
        raise ConfigError(f"expected cold or warm, got {mode!r}", source="--handoff-mode")
    if mode == "warm":
        for value, name in (
            (account_sid, "$TWILIO_ACCOUNT_SID"),
            (auth_token, "--twilio-auth-token"),
            (from_number, "--handoff-from"),
        ):
            if not value:
                raise ConfigError("needed for a warm handoff", source=name)
    return HandoffSettings(
        number=number,
        mode=mode,
        from_number=from_number or "",
        account_sid=account_sid or "",
        auth_token=auth_token or "",
        hold_music_url=hold_music_url,
        fallbacks={**(agent_fallbacks or {}), **parse_fallbacks(fallbacks)},
        api_base_url=api_base_url,
    )
