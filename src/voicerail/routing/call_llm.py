"""An LLM over the router's LLM chain for whichever call is running.

An agent holds one language model for every call, while the router binds
providers to one call (its id on every event). :class:`CurrentCallLLM` bridges
the two: each ``chat`` binds the chain to the call the running task belongs to
(read through the injected ``call_id``, e.g. ``session.runtime.current_call_id``),
so the LLM fails over, hedges and records ``ProviderAttempted`` events as the
STT and TTS chains do, without the agent knowing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from voicerail.events.model import Stage
from voicerail.providers.base import ChatMessage, LLMDelta, ToolSpec
from voicerail.routing.attempts import CallScope, Emit
from voicerail.routing.routed import RoutedLLM

if TYPE_CHECKING:
    from voicerail.routing.router import Router

#: The call id used on events when a chat runs outside any call (warm-up, scripts).
NO_CALL = "no-call"


class CurrentCallLLM:
    """A :class:`~voicerail.providers.base.LanguageModel` over ``router``'s LLM chain.

    Args:
        router: a router whose LLM chain is not empty.
        call_id: returns the running call's id, or None outside a call.
        emit: receives every routing event (the event store's ``append``).

    Raises:
        ValueError: the router has no LLM chain.
    """

    def __init__(self, router: Router, call_id: Callable[[], str | None], emit: Emit) -> None:
        chain = router.chains[Stage.LLM]
        if not chain:
            raise ValueError("the router has no LLM chain")
        self._router, self._call_id, self._emit = router, call_id, emit
        self.name, self.model, self.capabilities = "router", chain[0].model, chain[0].capabilities

    def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        """Chat along the chain for the running call; see :meth:`RoutedLLM.chat`.

        Raises:
            ProviderUnavailable: no provider of the chain could finish the reply.
        """
        scope = CallScope(self._router, self._call_id() or NO_CALL, self._emit, lambda: None)
        return RoutedLLM(scope).chat(messages, tools=tools)
