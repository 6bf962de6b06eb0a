"""Handoffs in the server: warm or cold transfer when the stream of a handed-off call ends.

Flow (``handoff/twilio_transfer.py`` has the Twilio side):

1. The agent asks for a human; the driver ends the stream and Twilio requests
   ``<Connect action>`` (``POST /twilio/connect-action``).
2. Cold: the answer is ``<Dial>number</Dial>``. Warm: the answer puts the caller
   in a conference on hold, and the desk dials the human through the REST API
   with the summary to whisper (the ``handoff_whisper`` the dialog stored).
3. ``POST /twilio/handoff-status/{caller_sid}`` receives the human leg's status
   callbacks; ``POST /twilio/conference-status/{caller_sid}`` the conference's
   ``participant-join`` and ``participant-leave``: the caller hanging up before
   the human answered cancels the human's leg, and after the human answered but
   before they joined (the summary still playing) ends it. The caller's SID is
   in the path, not the query: the app checks Twilio's signature over the
   public URL's path.
4. Each transfer's outcome is recorded as a ``CallTransferred`` event, with the
   time from the handoff request (the dialog's reply that asked for a human) to
   the outcome as its ``latency_s``: for ``answered``, the time until a human
   answered (the SLA of ``voicerail ops handoffs``).
5. A ``callback`` fallback books the callback: a ``callback`` CRM write through
   the outbox (keyed by the call, so a repeated callback writes once), when the
   server has a CRM. An ``agent`` fallback gives the caller a new media stream
   with their ``from`` and ``to`` parameters (the CRM recognizes them again), a
   ``handoff`` parameter naming the outcome, and the ``<Connect action>`` URL.
6. Transfers are records in the call state store (``handoff/transfers.py``):
   Twilio's callbacks may reach any worker, and each outcome is acted on once
   whichever worker hears of it first. Without ``--redis-url`` the store is this
   process's memory, which serves one worker.

Callbacks are accepted only for stored transfers (unknown call SIDs get 404),
and with a Twilio auth token configured they must carry a valid
``X-Twilio-Signature`` like the other webhooks (the caller of :func:`handoff_routes`
passes its check).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from voicerail.crm.model import CRMWrite, WriteAction
from voicerail.errors import ProviderError, StoreError
from voicerail.events.model import Event, EventKind, Stage
from voicerail.handoff.summary import handoff_from_events, whisper_from_events
from voicerail.handoff.transfers import TransferBook, TransferRecord
from voicerail.handoff.twilio_transfer import (
    Fallback,
    TransferOutcome,
    TwilioREST,
    classify,
    cold_twiml,
    fallback_twiml,
    hold_twiml,
    human_twiml,
)
from voicerail.server.handoff_settings import (
    HandoffSettings,
    fallbacks_from_agent_file,
    parse_fallbacks,
    settings_from,
)
from voicerail.session.runtime import Runtime
from voicerail.state.session import MemoryStateStore

log = logging.getLogger(__name__)
_GENERIC_WHISPER = "Incoming transfer from the voice assistant. No summary is available."
_APOLOGY = "Sorry, nobody could take your call right now."


class HandoffDesk:
    """The transfers of the server (see the module docstring); any worker's desk can
    settle a transfer another worker's desk began (``handoff/transfers.py``).

    Args:
        runtime: for the event store, the call state store and the clock.
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
        clock = runtime.clock
        # Without a shared store, transfers live in this process (one worker).
        store = runtime.state or MemoryStateStore(monotonic=clock.monotonic)
        self.book = TransferBook(store)
        self._tasks: set[asyncio.Task[None]] = set()

    async def transfer(self, caller_sid: str) -> TransferRecord | None:
        """The transfer of ``caller_sid``'s call, as stored.

        Raises:
            StoreError: the store failed.
        """
        return await self.book.get(caller_sid)

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
            async with asyncio.timeout(5.0):
                events = await asyncio.to_thread(self.runtime.events.events, call_id)
        except (StoreError, TimeoutError):
            events = []
        now_s = self.runtime.clock.wall()
        request = handoff_from_events(events)
        record = TransferRecord(
            caller_sid=call_sid,
            call_id=call_id,
            requested_at=float(request["requested_at"]) if request else now_s,
            caller_parameters=_caller_parameters(events, call_sid),
            base_url=base_url,
        )
        conference = f"handoff-{call_sid}"
        try:
            await self.book.open(record, now_s)
        except StoreError as exc:
            # Nobody could settle the transfer: the caller gets the human directly.
            log.warning("transfer not recorded, transferring cold: %s", exc)
            return cold_twiml(self.settings.number)
        whisper = whisper_from_events(events) or _GENERIC_WHISPER
        self._spawn(self._dial(call_sid, conference, whisper, base_url))
        return hold_twiml(
            conference,
            self.settings.hold_music_url,
            status_callback=f"{base_url}/twilio/conference-status/{call_sid}",
        )

    async def _dial(self, caller_sid: str, conference: str, whisper: str, base_url: str) -> None:
        try:
            created = await self.rest.create_call(
                to=self.settings.number,
                from_=self.settings.from_number,
                twiml=human_twiml(conference, whisper),
                status_callback=f"{base_url}/twilio/handoff-status/{caller_sid}",
            )
        except ProviderError as exc:
            # The human cannot be dialled: the caller gets the fallback for "failed".
            log.warning("handoff dial failed: %s", exc)
            try:
                await self._settle(caller_sid, TransferOutcome.FAILED, None)
            except StoreError as store_exc:  # a task's boundary: logged, the caller waits
                log.error("failed transfer not settled: %s", store_exc)
            return
        human_sid = str(created["sid"])

        def note(record: TransferRecord | None) -> TransferRecord | None:
            if record is None or record.human_sid is not None:
                return None
            return replace(record, human_sid=human_sid)

        try:
            await self.book.change(caller_sid, note, self.runtime.clock.wall())
        except StoreError as exc:
            log.warning("human leg not recorded: %s", exc)

    async def on_status(self, caller_sid: str, form: Mapping[str, str]) -> bool:
        """A status callback of the human's leg of ``caller_sid``'s transfer; False when
        no such transfer is stored.

        Only the human's leg is given this URL, so its ``CallSid`` is the human's
        even when the callback overtakes the answer to the create request.

        Raises:
            StoreError: the store failed.
        """
        record = await self.book.get(caller_sid)
        if record is None:
            return False
        human_sid = form.get("CallSid", "")
        if human_sid in record.earlier_legs or record.human_sid not in (None, human_sid):
            return True  # an earlier transfer's leg of the same call
        outcome = classify(form)
        if outcome is not None:
            await self._settle(caller_sid, outcome, human_sid or None)
        return True

    async def on_conference(self, caller_sid: str, form: Mapping[str, str]) -> bool:
        """A conference callback (rule 4 of ``twilio_transfer.py``): the caller leaving
        before the human answered cancels the human's leg; leaving after the human
        answered but before they joined (the summary still playing) ends it.

        Raises:
            StoreError: the store failed.
        """
        record = await self.book.get(caller_sid)
        if record is None:
            return False
        event, sid = form.get("StatusCallbackEvent"), form.get("CallSid")
        if event == "participant-join" and sid and sid != caller_sid:
            await self.book.change(
                caller_sid,
                lambda r: replace(r, human_joined=True) if r and not r.human_joined else None,
                self.runtime.clock.wall(),
            )
        elif event == "participant-leave" and sid == caller_sid:
            if record.outcome is None:
                await self._settle(caller_sid, TransferOutcome.CALLER_HUNG_UP, None)
            elif record.outcome == TransferOutcome.ANSWERED and not record.human_joined:
                await self._end_human_leg(record.human_sid, "completed")
        return True

    async def _settle(
        self, caller_sid: str, outcome: TransferOutcome, human_sid: str | None
    ) -> None:
        """Set the outcome once (``transfers.py`` rule 3), then act on it here."""
        fallback = None
        if outcome not in (TransferOutcome.ANSWERED, TransferOutcome.CALLER_HUNG_UP):
            fallback = self.settings.fallbacks.get(outcome, Fallback.AGENT)
        record = await self.book.settle(
            caller_sid,
            str(outcome),
            str(fallback) if fallback else None,
            self.runtime.clock.wall(),
            human_sid,
        )
        if record is None:
            return  # settled by another callback (maybe on another worker)
        try:
            await self._apply(record, outcome, fallback)
        except ProviderError as exc:
            log.warning("handoff %s: twilio refused: %s", outcome, exc)
        if fallback is Fallback.CALLBACK and self.runtime.crm is not None:
            await asyncio.to_thread(self._book_callback, record)
        self._record_event(record)

    async def _apply(
        self, record: TransferRecord, outcome: TransferOutcome, fallback: Fallback | None
    ) -> None:
        if outcome is TransferOutcome.CALLER_HUNG_UP:
            await self._end_human_leg(record.human_sid, "canceled")
            return
        if fallback is None:
            return
        if outcome is TransferOutcome.VOICEMAIL:
            # The human's voicemail must not record the conference.
            await self._end_human_leg(record.human_sid, "completed")
        if fallback is Fallback.AGENT:
            await self._reopen(record.caller_sid)
        base_url = record.base_url
        ws_url = base_url.replace("https://", "wss://").replace("http://", "ws://")
        twiml = fallback_twiml(
            fallback,
            stream_url=f"{ws_url}/twilio/media",
            apology=_APOLOGY,
            parameters={**record.caller_parameters, "handoff": str(outcome)},
            action_url=f"{base_url}/twilio/connect-action",
        )
        await self.rest.update_call(record.caller_sid, twiml=twiml)

    async def _reopen(self, caller_sid: str) -> None:
        """Rule 5's ``agent`` fallback: the call's state is made resumable again (its
        dialog no longer ended, its outcome no longer ``handoff``), so the stream the
        caller is sent back on can carry the call on where it stopped, the way a
        call that lost its worker is resumed (issue 12, ``state/resume.py``).
        Without a state store, or when the write fails, that stream is a new call."""
        store = self.runtime.state
        if store is None:
            return
        try:
            async with asyncio.timeout(2.0):
                state = await store.load_by_call_sid(caller_sid)
                if state is None:
                    return
                dialog = {**state.dialog, "ended": False} if "ended" in state.dialog else None
                reopened = state.next_version(
                    outcome=None if state.outcome == "handoff" else state.outcome,
                    dialog=dialog if dialog is not None else state.dialog,
                    updated_at=self.runtime.clock.wall(),
                )
                await store.save(reopened)
        except (StoreError, TimeoutError) as exc:
            log.warning("call state not reopened for the agent fallback: %s", exc)

    async def _end_human_leg(self, human_sid: str | None, status: str) -> None:
        if human_sid is None:
            return
        try:
            await self.rest.update_call(human_sid, status=status)
        except ProviderError as exc:
            log.warning("ending the human's leg failed: %s", exc)

    def _record_event(self, record: TransferRecord) -> None:
        self.runtime.events.append(
            Event(
                record.call_id,
                EventKind.CALL_TRANSFERRED,
                self.runtime.clock.wall(),
                self.runtime.clock.monotonic(),
                stage=Stage.HANDOFF,
                latency_s=record.after_s,
                outcome=record.outcome,
                data={
                    "mode": "warm",
                    "fallback": record.fallback,
                    "human_call_sid": record.human_sid,
                    "requested_at": record.requested_at,
                },
            )
        )

    def _book_callback(self, record: TransferRecord) -> None:
        """Rule 5: the callback request as a CRM write through the outbox (in a
        worker thread: the outbox is a blocking database)."""
        assert self.runtime.crm is not None
        call_id = record.call_id
        properties = {"reason": f"transfer {record.outcome}", "caller_call_sid": record.caller_sid}
        write = CRMWrite(f"{call_id}:callback", call_id, WriteAction.CALLBACK, properties)
        state = json.dumps({"handoff_outcome": record.outcome, "fallback": "callback"})
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


def _caller_parameters(events: list[Any], call_sid: str) -> dict[str, str]:
    """The caller's ``from`` and ``to`` stream parameters (the stream-started event's
    marked field), and the CallSid, for the ``agent`` fallback's new stream."""
    found = {"callsid": call_sid}
    for event in events:
        if event.kind is EventKind.STREAM_STARTED and event.pii:
            params = event.pii.get("custom_parameters") or {}
            found.update({k: str(params[k]) for k in ("from", "to") if params.get(k)})
    return found


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
        try:
            found = await desk.on_status(request.path_params["caller_sid"], form)
        except StoreError as exc:
            log.warning("handoff status callback not applied: %s", exc)
            return Response(status_code=503)
        return Response(status_code=204 if found else 404)

    async def conference(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid X-Twilio-Signature", status_code=403)
        try:
            found = await desk.on_conference(request.path_params["caller_sid"], form)
        except StoreError as exc:
            log.warning("handoff conference callback not applied: %s", exc)
            return Response(status_code=503)
        return Response(status_code=204 if found else 404)

    return [
        Route("/twilio/handoff-status/{caller_sid}", status, methods=["POST"]),
        Route("/twilio/conference-status/{caller_sid}", conference, methods=["POST"]),
    ]


__all__ = [
    "HandoffDesk",
    "HandoffSettings",
    "fallbacks_from_agent_file",
    "handoff_routes",
    "parse_fallbacks",
    "settings_from",
]
