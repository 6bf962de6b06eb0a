"""Warm and cold transfer on Twilio through its REST API, with typed outcomes and fallbacks.

Implements (Twilio Voice docs, REST API 2010-04-01 and TwiML, read 2026-12):

* Update a live call: ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``
  with ``Twiml=`` (new instructions) or ``Status=canceled|completed`` (end it).
* Create a call: ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` with
  ``To``, ``From``, ``Twiml``, ``Timeout`` (ring seconds), ``MachineDetection=Enable``,
  ``StatusCallback`` and ``StatusCallbackEvent`` (``initiated ringing answered
  completed``). Authentication is HTTP Basic with the account SID and auth token.
* Status callbacks (form posts to ``StatusCallback``): ``CallSid``,
  ``CallStatus`` (``queued initiated ringing in-progress completed busy
  no-answer canceled failed``), ``AnsweredBy`` with machine detection
  (``human``, ``machine_start``, ``machine_end_beep``, ``machine_end_silence``,
  ``machine_end_other``, ``fax``, ``unknown``) and ``SipResponseCode``.
* Errors: ``{"code", "message", "more_info", "status"}``.

Rules kept here:

1. Cold transfer: the caller's call gets ``<Dial>number</Dial>`` (today's behaviour,
   now through the REST API instead of after the stream ends).
2. Warm transfer: (a) the caller's call moves into a conference that waits
   with hold music (``startConferenceOnEnter=false``); (b) the human is dialled;
   their TwiML first *says* the handoff summary, which only their leg hears,
   then joins the conference, which starts it (``startConferenceOnEnter=true``);
   (c) the human's outcome comes from the status callbacks (:func:`classify`).
3. Anything but ``answered`` applies the fallback the agent file names for
   that outcome: ``agent`` (back to the assistant with an apology), ``voicemail``
   (record a message) or ``callback`` (tell the caller they will be called back;
   the callback booking is a CRM write through the outbox).
4. When the caller hangs up before the human answered, the human's leg is
   cancelled (ringing) or completed (answered): no human is left talking to
   an empty conference (LiveKit agents-js #2008).
5. The time from the handoff request to the outcome is measured on the
   injected clock (the SLA figure).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import httpx

from voicerail.clock import Clock, SystemClock
from voicerail.errors import ErrorClass, ProviderError, classify_http_status


class TransferOutcome(StrEnum):
    """How the human's leg ended (rule 2c)."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    DECLINED = "declined"
    VOICEMAIL = "voicemail"
    CALLER_HUNG_UP = "caller_hung_up"
    FAILED = "failed"


class Fallback(StrEnum):
    """What the caller gets when no human answered (rule 3)."""

    AGENT = "agent"
    VOICEMAIL = "voicemail"
    CALLBACK = "callback"


_IN_PROGRESS = {"queued", "initiated", "ringing"}
_DECLINE_SIP = {"603"}


def classify(form: Mapping[str, str]) -> TransferOutcome | None:
    """The outcome a status callback reports; None while the human's phone still rings."""
    status = form.get("CallStatus", "")
    if status in _IN_PROGRESS:
        return None
    if status in ("in-progress", "answered", "completed"):
        answered_by = form.get("AnsweredBy", "human")
        if answered_by.startswith("machine") or answered_by == "fax":
            return TransferOutcome.VOICEMAIL
        return TransferOutcome.ANSWERED
    if status == "busy":
        declined = form.get("SipResponseCode") in _DECLINE_SIP
        return TransferOutcome.DECLINED if declined else TransferOutcome.BUSY
    if status == "no-answer":
        return TransferOutcome.NO_ANSWER
    if status == "canceled":
        return TransferOutcome.CALLER_HUNG_UP
    return TransferOutcome.FAILED


def say(text: str) -> str:
    """A ``<Say>`` verb (TTS) with ``text`` escaped."""
    return f"<Say>{escape(text)}</Say>"


def hold_twiml(conference: str, hold_music_url: str = "", status_callback: str = "") -> str:
    """Rule 2a: the caller waits in ``conference`` with hold music.

    Args:
        conference: the conference's name.
        hold_music_url: the ``waitUrl``; empty for Twilio's default music.
        status_callback: where the conference reports participants joining and
            leaving (rule 4 needs the caller's ``participant-leave`` and whether
            the human joined); empty for none. The caller enters first, so the
            conference's callbacks are the ones set here.
    """
    wait = f" waitUrl={quoteattr(hold_music_url)}" if hold_music_url else ""
    events = (
        f' statusCallback={quoteattr(status_callback)} statusCallbackEvent="join leave"'
        if status_callback
        else ""
    )
    return (
        '<Response><Dial><Conference startConferenceOnEnter="false" '
        f'endConferenceOnExit="true" beep="false"{wait}{events}>'
        f"{escape(conference)}</Conference></Dial></Response>"
    )


def human_twiml(conference: str, whisper: str) -> str:
    """Rule 2b: the human hears the summary, then joins and starts the conference."""
    return (
        f'<Response>{say(whisper)}<Dial><Conference startConferenceOnEnter="true" '
        f'endConferenceOnExit="true" beep="false">{escape(conference)}</Conference>'
        "</Dial></Response>"
    )


def cold_twiml(number: str, announcement: str = "") -> str:
    """Rule 1: ``<Dial>`` the number."""
    spoken = say(announcement) if announcement else ""
    return f"<Response>{spoken}<Dial>{escape(number)}</Dial></Response>"


def fallback_twiml(
    fallback: Fallback,
    *,
    stream_url: str,
    apology: str,
    parameters: Mapping[str, str] | None = None,
    action_url: str = "",
) -> str:
    """Rule 3's instructions for the caller's call.

    Args:
        fallback: which one.
        stream_url: the media stream of the ``agent`` fallback.
        apology: said to the caller first.
        parameters: the ``agent`` fallback stream's ``<Parameter>`` s (the
            caller's ``from``, so the CRM recognizes them again); by default
            ``resumed=handoff``.
        action_url: the ``<Connect action>`` of that stream (empty: none).
    """
    if fallback is Fallback.AGENT:
        params = parameters if parameters is not None else {"resumed": "handoff"}
        tags = "".join(
            f"<Parameter name={quoteattr(k)} value={quoteattr(v)} />" for k, v in params.items()
        )
        action = f" action={quoteattr(action_url)}" if action_url else ""
        return (
            f"<Response>{say(apology)}<Connect{action}><Stream url={quoteattr(stream_url)}>"
            f"{tags}</Stream></Connect></Response>"
        )
    if fallback is Fallback.VOICEMAIL:
        return (
            f"<Response>{say(apology + ' Please leave a message after the tone.')}"
            '<Record maxLength="120" playBeep="true" /></Response>'
        )
    return (
        f"<Response>{say(apology + ' We will call you back shortly. Goodbye.')}<Hangup />"
        "</Response>"
    )


class TwilioREST:
    """The two calls of the REST API a transfer needs.

    Args:
        client: the HTTP client; None opens one per request (a handoff makes
            a few requests, and nothing is left open to close).
        account_sid: ``AC…``.
        auth_token: the account's auth token (HTTP Basic password).
        base_url: ``https://api.twilio.com``, or a fake's URL.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None,
        account_sid: str,
        auth_token: str,
        base_url: str = "https://api.twilio.com",
    ) -> None:
        self._client = client
        self._auth = (account_sid, auth_token)
        self._calls = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Calls"

    async def _post(self, url: str, form: Mapping[str, str | list[str]]) -> dict[str, Any]:
        try:
            # A list value is sent as the key repeated (StatusCallbackEvent).
            if self._client is not None:
                response = await self._client.post(url, data=dict(form), auth=self._auth)
            else:
                async with httpx.AsyncClient(timeout=10.0) as client:
                    response = await client.post(url, data=dict(form), auth=self._auth)
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"connection failed: {type(exc).__name__}", provider="twilio"
            ) from exc
        if response.status_code >= 300:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise ProviderError(
                f"http {response.status_code}: code {body.get('code')}: {body.get('message')}",
                provider="twilio",
                status=response.status_code,
                error_class=classify_http_status(response.status_code),
            )
        decoded = response.json()
        return decoded if isinstance(decoded, dict) else {}

    async def update_call(
        self, call_sid: str, *, twiml: str | None = None, status: str | None = None
    ) -> dict[str, Any]:
        """Give a live call new TwiML, or end it (``status`` canceled/completed).

        Raises:
            ProviderError: Twilio refused or failed.
        """
        form = {"Twiml": twiml} if twiml is not None else {"Status": status or "completed"}
        return await self._post(f"{self._calls}/{call_sid}.json", form)

    async def create_call(
        self, *, to: str, from_: str, twiml: str, status_callback: str, timeout_s: int = 25
    ) -> dict[str, Any]:
        """Dial ``to`` with machine detection and every status callback.

        Raises:
            ProviderError: Twilio refused or failed.
        """
        form: dict[str, str | list[str]] = {
            "To": to,
            "From": from_,
            "Twiml": twiml,
            "Timeout": str(timeout_s),
            "MachineDetection": "Enable",
            "StatusCallback": status_callback,
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        }
        return await self._post(f"{self._calls}.json", form)


@dataclass
class WarmTransfer:
    """One warm transfer of one call (rules 2-5), held in one process's memory.

    The server's desk (``server/handoff.py``) keeps its transfers in the call
    state store instead (``handoff/transfers.py``), as Twilio's callbacks may
    reach any worker; it uses this module's TwiML builders, :func:`classify`
    and :class:`TwilioREST`. This class serves a single process that starts
    transfers through the REST API itself.

    Args:
        rest: the REST client.
        caller_sid: the caller's call SID.
        human_number: who to dial.
        from_number: the caller ID for the human's leg (a Twilio number).
        whisper: what the human hears first (``HandoffSummary.whisper_text()``).
        status_callback: our URL for the human leg's status callbacks.
        hold_music_url: the conference's ``waitUrl``.
        fallbacks: outcome → fallback (rule 3); missing outcomes go back to the agent.
        stream_url: the media stream URL for the ``agent`` fallback.
        apology: what the caller hears before a fallback.
        clock: the monotonic clock of the SLA figure.
    """

    rest: TwilioREST
    caller_sid: str
    human_number: str
    from_number: str
    whisper: str
    status_callback: str
    hold_music_url: str
    fallbacks: Mapping[TransferOutcome, Fallback] = field(default_factory=dict)
    stream_url: str = ""
    apology: str = "Sorry, nobody could take your call right now."
    clock: Clock = field(default_factory=SystemClock)
    human_sid: str | None = None
    outcome: TransferOutcome | None = None
    fallback: Fallback | None = None
    requested_at_s: float | None = None
    outcome_after_s: float | None = None
    _early: list[dict[str, str]] = field(default_factory=list, repr=False)

    @property
    def conference(self) -> str:
        return f"handoff-{self.caller_sid}"

    async def start(self) -> None:
        """Rule 2a and 2b: hold the caller (through the REST API), dial the human.

        Raises:
            ProviderError: Twilio refused; the caller's call is unchanged if the
                first request failed.
        """
        self.requested_at_s = self.clock.monotonic()
        await self.rest.update_call(
            self.caller_sid, twiml=hold_twiml(self.conference, self.hold_music_url)
        )
        await self.dial_human()

    async def dial_human(self) -> None:
        """Rule 2b alone, for a caller already put on hold by a TwiML response.

        Raises:
            ProviderError: Twilio refused.
        """
        if self.requested_at_s is None:
            self.requested_at_s = self.clock.monotonic()
        created = await self.rest.create_call(
            to=self.human_number,
            from_=self.from_number,
            twiml=human_twiml(self.conference, self.whisper),
            status_callback=self.status_callback,
        )
        self.human_sid = str(created["sid"])
        # Callbacks can overtake the create call's answer: apply the ones held back.
        early, self._early = self._early, []
        for form in early:
            await self.on_status(form)

    async def on_status(self, form: Mapping[str, str]) -> TransferOutcome | None:
        """Apply one status callback of the human's leg; returns the outcome once known."""
        if self.human_sid is None and self.outcome is None:
            self._early.append(dict(form))
            return None
        if self.outcome is not None or form.get("CallSid") != self.human_sid:
            return self.outcome
        outcome = classify(form)
        if outcome is None:
            return None
        await self.conclude(outcome)
        return outcome

    async def conclude(self, outcome: TransferOutcome) -> None:
        """Record ``outcome`` and, unless answered, apply its fallback (rule 3).

        Also used when the human could not be dialled at all (``FAILED``).

        Raises:
            ProviderError: Twilio refused the fallback (e.g. 21220: the caller's
                call already ended).
        """
        await self._finish(outcome)
        if outcome is TransferOutcome.ANSWERED:
            return
        self.fallback = self.fallbacks.get(outcome, Fallback.AGENT)
        if outcome is TransferOutcome.VOICEMAIL and self.human_sid:
            # The human's voicemail must not record the conference.
            await self.rest.update_call(self.human_sid, status="completed")
        twiml = fallback_twiml(self.fallback, stream_url=self.stream_url, apology=self.apology)
        await self.rest.update_call(self.caller_sid, twiml=twiml)

    async def on_caller_hung_up(self, human_answered: bool = False) -> None:
        """Rule 4: end the human's leg when the caller leaves first."""
        if self.human_sid is None or self.outcome not in (None, TransferOutcome.ANSWERED):
            return
        if self.outcome is None:
            await self.rest.update_call(self.human_sid, status="canceled")
            await self._finish(TransferOutcome.CALLER_HUNG_UP)
        elif human_answered:
            await self.rest.update_call(self.human_sid, status="completed")

    async def _finish(self, outcome: TransferOutcome) -> None:
        self.outcome = outcome
        if self.requested_at_s is not None:
            self.outcome_after_s = self.clock.monotonic() - self.requested_at_s


async def cold_transfer(
    rest: TwilioREST, caller_sid: str, number: str, announcement: str = ""
) -> None:
    """Rule 1 through the REST API.

    Raises:
        ProviderError: Twilio refused or failed.
    """
    await rest.update_call(caller_sid, twiml=cold_twiml(number, announcement))


def is_retryable(exc: ProviderError) -> bool:
    """True for a transient Twilio failure (429, 5xx)."""
    return exc.error_class is ErrorClass.TRANSIENT
