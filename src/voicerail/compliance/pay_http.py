"""Twilio ``<Pay>`` on a live call: out of the media stream, through Twilio's own card
capture, and back into a fresh stream that carries the call on.

Flow (``compliance/dialog.py`` rule 8 marks the reply; ``twilio_pay.py`` has the
TwiML and the webhook's form; Twilio, "TwiML Voice: <Pay>" and "<Connect>",
https://www.twilio.com/docs/voice/twiml/pay, /connect, read 2026-12-06):

1. A reply that asks for a card is marked ``pci: twilio_pay``; the call's state
   is written with the payment pending; once the reply is heard the driver
   ends the stream without ending the call (as a takeover does).
2. Twilio requests ``<Connect action>``; :func:`pay_twiml_for` answers a call
   whose state has the payment pending with ``<Pay>`` (a tokenize transaction,
   ``chargeAmount="0"``), whose ``action`` is ``POST /twilio/pay-action``.
3. ``POST /twilio/pay-action`` reads the result (``Result``, ``PaymentToken``,
   ``PaymentCardNumber`` masked to its last four), writes it into the call's
   state (the next version) and answers a fresh ``<Connect><Stream>`` with the
   ``resume`` parameter; the stream that takes the call over restores the
   dialog, which hears the card as a keyed card's result (rule 2 there).
4. The card never reaches voicerail: only the token and the last four digits
   are in the state, the events and the prompt.

Why the connect action rather than a REST update of the live call (``POST
/Calls/{Sid}.json`` with ``Twiml``): the update makes Twilio stop the stream
with a ``stop`` message, which reads as a hangup unless the driver is told
first, and it races with the ``<Connect action>`` request that a closed stream
makes. Ending the stream and answering the action request is one path with no
race, needs no REST credentials, and is the path a cold handoff already takes.

A result that arrives for a call not waiting for one (a replayed webhook) is
not written; the caller still gets the stream back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from voicerail.compliance.dialog import PAY_PENDING, SNAPSHOT_KEY, with_pay_result
from voicerail.compliance.twilio_pay import card_from_pay_action, pay_twiml
from voicerail.errors import ConfigError, StateConflict, StoreError
from voicerail.session.runtime import Runtime
from voicerail.state.session import MemoryStateStore, SessionState

log = logging.getLogger(__name__)

#: The ``<Pay action>`` route (rule 3).
PAY_ACTION_PATH = "/twilio/pay-action"
#: Longest wait for each state read or write, seconds.
STATE_TIMEOUT_S = 2.0


def check_workers(capture: str, *, workers: int, shared_state: bool) -> None:
    """At start-up, before workers are spawned: ``<Pay>`` brings a call back on a new
    stream, maybe to another worker, so several workers need a shared state store.

    Raises:
        ConfigError: ``twilio_pay`` capture on several workers without one.
    """
    if capture == "twilio_pay" and workers > 1 and not shared_state:
        raise ConfigError(
            "pci capture twilio_pay on several workers needs --redis-url "
            "(the call comes back from <Pay> on a new stream, maybe to another worker)",
            field="compliance.pci.capture",
        )


def provide_state(runtime: Runtime) -> None:
    """At start-up of one process: an agent that sends calls to ``<Pay>`` needs their
    state kept across streams; without a state store it gets one in memory (the
    call comes back to this process, :func:`check_workers` saw to that)."""
    pci: Any = getattr(getattr(runtime.agent, "policy", None), "pci", None)
    if pci is not None and pci.capture == "twilio_pay" and runtime.state is None:
        runtime.state = MemoryStateStore(monotonic=runtime.clock.monotonic)


def _pay_pending(state: SessionState | None) -> bool:
    own = state.dialog.get(SNAPSHOT_KEY) if state is not None else None
    return isinstance(own, dict) and own.get("pay") == PAY_PENDING


async def _state_of(runtime: Runtime, call_sid: str | None) -> SessionState | None:
    """The call's state; None without a store, a CallSid, or when the store fails."""
    if runtime.state is None or not call_sid:
        return None
    try:
        return await asyncio.wait_for(runtime.state.load_by_call_sid(call_sid), STATE_TIMEOUT_S)
    except (StoreError, TimeoutError) as exc:
        log.warning("<pay>: call state unavailable: %s", exc)
        return None


async def pay_twiml_for(runtime: Runtime, call_sid: str | None) -> str | None:
    """Rule 2: the ``<Pay>`` document for a call waiting for one; None otherwise."""
    state = await _state_of(runtime, call_sid)
    if state is None or not _pay_pending(state):
        return None
    pci: Any = getattr(getattr(runtime.agent, "policy", None), "pci", None)
    connector = pci.pay_connector if pci is not None else "Default"
    log.info("call %s: to twilio <pay>", state.call_id)
    return pay_twiml(PAY_ACTION_PATH, connector=connector)


def pay_routes(
    runtime: Runtime,
    signed_form: Callable[[Request], Awaitable[dict[str, str] | None]],
    stream_back: Callable[[Request, dict[str, str], int], Response],
) -> list[Route]:
    """Rule 3's route.

    Args:
        runtime: the server's runtime (its state store).
        signed_form: the app's form reader; None when the Twilio signature is bad.
        stream_back: the ``<Connect><Stream>`` answer that resumes a call, given
            the request, its form and the times the call was resumed.
    """

    async def pay_action(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid X-Twilio-Signature", status_code=403)
        try:
            card = card_from_pay_action(form)
        except ValueError as exc:
            return Response(str(exc), status_code=400)
        state = await _state_of(runtime, form.get("CallSid"))
        if state is None:
            hangup = '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Hangup/></Response>'
            return Response(hangup, media_type="application/xml")
        dialog = with_pay_result(state.dialog, card)
        if dialog is not None and runtime.state is not None:
            written = state.next_version(dialog=dialog, updated_at=runtime.clock.wall())
            try:
                await asyncio.wait_for(runtime.state.save(written), STATE_TIMEOUT_S)
            except (StateConflict, StoreError, TimeoutError) as exc:
                log.warning("call %s: <pay> result not stored: %s", state.call_id, exc)
        return stream_back(request, form, state.resumes)

    return [Route(PAY_ACTION_PATH, pay_action, methods=["POST"])]
