"""Back to the agent after a failed warm transfer, end to end: with a call state store the
caller's new stream carries the same call on (issue 12's resume), where it stopped."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from voicerail.crm.gate import ContextPolicy
from voicerail.dialog.embeddings import MiniLMEmbedder
from voicerail.dialog.flows import load_agent
from voicerail.events.model import EventKind
from voicerail.handoff.contextual import ContextualAgent
from voicerail.state.session import MemoryStateStore

from .test_warm_transfer_call import handoff_call, transferred

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"


async def test_no_answer_resumes_the_same_call_with_the_agent(tmp_path) -> None:
    """The clinic agent hands off on the key 0; nobody answers; the caller hears the
    apology and the same call goes on: one call id, a CallResumed event, and the agent
    asks its pending question again instead of greeting anew."""
    embedder = MiniLMEmbedder()

    def clinic(bookings, crm, outbox) -> ContextualAgent:
        flows = load_agent(CLINIC, bookings=bookings, embedder=embedder, today=date.today)
        policy = ContextPolicy(must=("first_name", "last_name"))
        return ContextualAgent(flows, crm=crm, policy=policy, outbox=outbox)

    store = MemoryStateStore(monotonic=lambda: 0.0)
    run = await handoff_call(tmp_path, "no_answer", make_agent=clinic, state=store)
    assert [e.outcome for e in transferred(run)] == ["no_answer"]
    assert run.back is not None and run.back.call_sid == run.caller_sid
    (call,) = run.events.calls()
    kinds = [e.kind for e in run.events.events(call.call_id)]
    assert EventKind.CALL_RESUMED in kinds
    resumed = [
        e
        for e in run.events.events(call.call_id)
        if e.kind is EventKind.DIALOG_DECIDED and e.data.get("reason") == "resumed"
    ]
    assert resumed and "How can I help you today?" in resumed[0].pii["agent_text"]
    run.events.close()
