"""Handoffs in the server: warm or cold transfer when the stream of a handed-off call ends.

Flow (``handoff/twilio_transfer.py`` has the Twilio side):

1. The agent asks for a human; the driver ends the stream and Twilio requests
   ``<Connect action>`` (``POST /twilio/connect-action``).
2. Cold: the answer is ``<Dial>number</Dial>``. Warm: the answer puts the caller
   in a conference on hold, and the desk dials the human through the REST API
   with the summary to whisper (the ``handoff_whisper`` the dialog stored).
3. ``POST /twilio/handoff-status/{caller_sid}`` receives the human leg's status
   callbacks; ``POST /twilio/conference-status/{caller_sid}`` the conference's
   ``participant-leave`` (the caller hanging up first cancels the human's leg).
   The caller's SID is in the path, not the query: the app checks Twilio's
   signature over the public URL's path.
4. Each transfer's outcome is recorded as a ``CallTransferred`` event, with the
   time from the handoff request to the outcome as its ``latency_s``.
5. A ``callback`` fallback books the callback: a ``callback`` CRM write through
   the outbox (keyed by the call, so a repeated callback writes once), when the
   server has a CRM.

Callbacks are accepted only for transfers this process started (unknown call
SIDs get 404), and with a Twilio auth token configured they must carry a valid
``X-Twilio-Signature`` like the other webhooks (the caller of :func:`handoff_routes`
passes its check).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from voicerail.crm.model import CRMWrite, WriteAction
from voicerail.errors import ConfigError, ProviderError, StoreError
from voicerail.events.model import Event, EventKind, Stage
from voicerail.handoff.summary import whisper_from_events
from voicerail.handoff.twilio_transfer import (
    Fallback,
    TransferOutcome,
    TwilioREST,
    WarmTransfer,
    cold_twiml,
    hold_twiml,
)
from voicerail.session.runtime import Runtime

log = logging.getLogger(__name__)
_GENERIC_WHISPER = "Incoming transfer from the voice assistant. No summary is available."


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


def settings_from(
    *,
    number: str | None,
    mode: str,
    from_number: str | None,
    account_sid: str | None,
    auth_token: str | None,
    hold_music_url: str = "",
    fallbacks: str = "",
) -> HandoffSettings | None:
    """The settings ``voicerail serve`` builds from its flags (None without a number).

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
        fallbacks=parse_fallbacks(fallbacks),
    )


class HandoffDesk:
    """The transfers of one server process (see the module docstring).

    Args:
        runtime: for the event store and the clock.
        settings: the handoff settings.
        client: the HTTP client for Twilio's REST API (None: one per request).
    """

    def __init__(
        self, runtime: Runtime, settings: HandoffSettings, client: httpx.AsyncClient | None = None
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.rest = TwilioREST(
            client, settings.account_sid, settings.auth_token, settings.api_base_url
        )
        self.transfers: dict[str, WarmTransfer] = {}  # by the caller's call SID
        self._call_ids: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def begin(self, call_sid: str, call_id: str, base_url: str) -> str:
        """The TwiML answering ``<Connect action>`` for a handed-off call (step 2).

        Args:
            call_sid: the caller's call SID.
            call_id: voicerail's call id (its events hold the summary).
            base_url: this server's public base URL (``https://voice.example.com``).
        """
        if self.settings.mode != "warm":
            return cold_twiml(self.settings.number)
        try:
            events = await asyncio.to_thread(self.runtime.events.events, call_id)
        except StoreError:
            events = []
        whisper = whisper_from_events(events) or _GENERIC_WHISPER
        ws_url = base_url.replace("https://", "wss://").replace("http://", "ws://")
        transfer = WarmTransfer(
            self.rest,
            caller_sid=call_sid,
            human_number=self.settings.number,
            from_number=self.settings.from_number,
            whisper=whisper,
            status_callback=f"{base_url}/twilio/handoff-status/{call_sid}",
            hold_music_url=self.settings.hold_music_url,
            fallbacks=self.settings.fallbacks,
            stream_url=f"{ws_url}/twilio/media",
            clock=self.runtime.clock,
        )
        transfer.requested_at_s = self.runtime.clock.monotonic()
        self.transfers[call_sid] = transfer
        self._call_ids[call_sid] = call_id
        self._spawn(self._dial(transfer))
        return hold_twiml(
            transfer.conference,
            self.settings.hold_music_url,
            status_callback=f"{base_url}/twilio/conference-status/{call_sid}",
        )

    async def _dial(self, transfer: WarmTransfer) -> None:
        try:
            await transfer.dial_human()
        except ProviderError as exc:
            # The human cannot be dialled: the caller gets the no-answer fallback.
            log.warning("handoff dial failed: %s", exc)
            try:
                await transfer.conclude(TransferOutcome.FAILED)
            except ProviderError as fallback_exc:
                log.warning("handoff fallback failed: %s", fallback_exc)
            await self._settle(transfer, TransferOutcome.FAILED)

    async def on_status(self, caller_sid: str, form: Mapping[str, str]) -> bool:
        """A status callback of the human's leg of ``caller_sid``'s transfer; False when
        this process has no such transfer."""
        transfer = self.transfers.get(caller_sid)
        if transfer is None:
            return False
        before = transfer.outcome
        try:
            outcome = await transfer.on_status(form)
        except ProviderError as exc:
            log.warning("handoff fallback failed: %s", exc)
            outcome = transfer.outcome
        if outcome is not None and before is None:
            await self._settle(transfer, outcome)
        return True

    async def on_conference(self, caller_sid: str, form: Mapping[str, str]) -> bool:
        """A conference callback; the caller leaving before the human answered cancels
        the human's leg (rule 4 of ``twilio_transfer.py``)."""
        transfer = self.transfers.get(caller_sid)
        if transfer is None:
            return False
        caller_left = (
            form.get("StatusCallbackEvent") == "participant-leave"
            and form.get("CallSid") == caller_sid
        )
        if caller_left and transfer.outcome is None:
            try:
                await transfer.on_caller_hung_up()
            except ProviderError as exc:
                log.warning("cancelling the human's leg failed: %s", exc)
            await self._settle(transfer, TransferOutcome.CALLER_HUNG_UP)
        return True

    async def _settle(self, transfer: WarmTransfer, outcome: TransferOutcome) -> None:
        call_id = self._call_ids.get(transfer.caller_sid)
        if call_id is None:
            return
        if transfer.fallback is Fallback.CALLBACK and self.runtime.crm is not None:
            self._book_callback(call_id, transfer, outcome)
        self.runtime.events.append(
            Event(
                call_id,
                EventKind.CALL_TRANSFERRED,
                self.runtime.clock.wall(),
                self.runtime.clock.monotonic(),
                stage=Stage.HANDOFF,
                latency_s=transfer.outcome_after_s,
                outcome=str(outcome),
                data={
                    "mode": "warm",
                    "fallback": str(transfer.fallback) if transfer.fallback else None,
                    "human_call_sid": transfer.human_sid,
                },
            )
        )

    def _book_callback(
        self, call_id: str, transfer: WarmTransfer, outcome: TransferOutcome
    ) -> None:
        """Rule 5: the callback request as a CRM write through the outbox."""
        assert self.runtime.crm is not None
        properties = {"reason": f"transfer {outcome}", "caller_call_sid": transfer.caller_sid}
        write = CRMWrite(f"{call_id}:callback", call_id, WriteAction.CALLBACK, properties)
        state = json.dumps({"handoff_outcome": str(outcome), "fallback": "callback"})
        try:
            self.runtime.crm.outbox.record(call_id, state, [write], self.runtime.clock.wall())
        except StoreError as exc:
            log.warning("callback booking not recorded: %s", exc)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the dials in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def handoff_routes(
    desk: HandoffDesk, signed_form: Callable[[Request], Awaitable[dict[str, str] | None]]
) -> list[Route]:
    """``POST /twilio/handoff-status`` and ``/twilio/conference-status`` (step 3).

    Args:
        desk: the transfers.
        signed_form: the app's form reader; None when the Twilio signature is bad.
    """

    async def status(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid X-Twilio-Signature", status_code=403)
        found = await desk.on_status(request.path_params["caller_sid"], form)
        return Response(status_code=204 if found else 404)

    async def conference(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid X-Twilio-Signature", status_code=403)
        found = await desk.on_conference(request.path_params["caller_sid"], form)
        return Response(status_code=204 if found else 404)

    return [
        Route("/twilio/handoff-status/{caller_sid}", status, methods=["POST"]),
        Route("/twilio/conference-status/{caller_sid}", conference, methods=["POST"]),
    ]
