"""One call's disclosure, consent and guard through the compliance wrapper."""

from __future__ import annotations

from voicerail.compliance.dialog import NOT_RETAINED, CompliantAgent
from voicerail.compliance.policy import load_policy
from voicerail.dialog.base import AgentReply
from voicerail.events.model import Event, EventKind
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import QuietDialog


class Scripted(QuietDialog):
    """Greets with ``greeting``; answers each turn with the next of ``replies``."""

    def __init__(self, greeting: str, replies: list[AgentReply]) -> None:
        self.greeting = greeting
        self.replies = list(replies)
        self.heard: list[tuple[str, str]] = []
        self.turns: list[str] = []

    async def start(self) -> AgentReply:
        return AgentReply(self.greeting)

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        self.turns.append(text)
        return self.replies.pop(0)

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        self.heard.append((heard_text, full_text))


class Factory:
    name = "scripted"

    def __init__(self, dialog: Scripted) -> None:
        self.dialog = dialog

    def new_dialog(self, call_id: str) -> Scripted:
        return self.dialog


def wrapped(inner: Scripted, section: dict) -> tuple[object, list[Event]]:
    events: list[Event] = []
    agent = CompliantAgent(
        Factory(inner), load_policy(section), record=events.append, clock=FakeClock()
    )
    return agent.new_dialog("c1"), events


def kinds(events: list[Event], kind: EventKind) -> list[dict]:
    return [e.data for e in events if e.kind == kind]


async def test_a_greeting_without_disclosure_or_notice_gets_both():
    dialog, events = wrapped(Scripted("Hello, how can I help?", []), {})
    reply = await dialog.start()
    assert reply.text == (
        "You're talking to an AI assistant. Hello, how can I help? This call may be recorded."
    )
    assert kinds(events, EventKind.DISCLOSURE_GIVEN) == [{"when": "start", "added": True}]
    assert kinds(events, EventKind.CONSENT_RECORDED) == [{"mode": "notice", "decision": "notified"}]


async def test_a_greeting_that_discloses_is_left_as_it_is():
    greeting = "Hi, I'm the clinic's AI assistant and this call is recorded."
    dialog, events = wrapped(Scripted(greeting, []), {})
    assert (await dialog.start()).text == greeting
    assert kinds(events, EventKind.DISCLOSURE_GIVEN) == [{"when": "start", "added": False}]


async def test_are_you_human_to_a_lying_agent_gets_the_truth_and_fixes_its_history():
    lie = AgentReply("Yes, I'm a real person. How can I help?")
    inner = Scripted("Hi, I'm an AI assistant.", [lie])
    dialog, events = wrapped(inner, {"consent": {"mode": "none"}})
    await dialog.start()
    reply = await dialog.on_user_turn("are you human?", 0.9)
    assert reply.text == "You're talking to an AI assistant." and reply.data["guard"]
    assert inner.heard == [(reply.text, lie.text)]
    [hit] = [e for e in events if e.kind == EventKind.GUARD_TRIGGERED]
    assert hit.data == {"rule": "claims_human", "index": None}
    assert hit.pii["blocked_text"] == lie.text
    assert {"when": "asked", "added": False} in kinds(events, EventKind.DISCLOSURE_GIVEN)


async def test_an_answer_that_does_not_disclose_when_asked_gets_the_disclosure_first():
    inner = Scripted("Hi, I'm an AI assistant.", [AgentReply("How can I help?")])
    dialog, _events = wrapped(inner, {})
    await dialog.start()
    reply = await dialog.on_user_turn("am I talking to a robot", 0.9)
    assert reply.text == "You're talking to an AI assistant. How can I help?"


async def test_a_prohibited_phrase_is_replaced_by_the_fallback():
    inner = Scripted("Hi, I'm an AI.", [AgentReply("I guarantee you'll be cured.", end_call=True)])
    dialog, _events = wrapped(inner, {"guard": {"prohibited": ["guarantee"]}})
    await dialog.start()
    reply = await dialog.on_user_turn("will I get better", 0.9)
    assert reply.text.startswith("Sorry, I can't help with that") and reply.end_call


async def test_the_end_of_call_disclosure_follows_a_goodbye_but_not_a_handoff():
    replies = [
        AgentReply("Transferring.", end_call=True, handoff=True),
        AgentReply("Bye.", end_call=True),
    ]
    at_end = "To reach our staff, call 555 0100."
    dialog, events = wrapped(
        Scripted("Hi, I'm an AI.", replies), {"disclosure": {"at_end": at_end}}
    )
    await dialog.start()
    assert (await dialog.on_user_turn("a person please", 0.9)).text == "Transferring."
    assert (await dialog.on_user_turn("bye", 0.9)).text == f"Bye. {at_end}"
    assert {"when": "end", "added": True} in kinds(events, EventKind.DISCLOSURE_GIVEN)


async def test_opt_in_yes_keeps_transcripts_and_asks_the_greeting_question_again():
    inner = Scripted("Hi, I'm an AI assistant. How can I help?", [])
    dialog, events = wrapped(inner, {"consent": {"mode": "opt_in"}})
    greeting = await dialog.start()
    assert greeting.text.endswith("May I record this call? Please say yes or no.")
    assert dialog.screen_transcript("yes")[0] == NOT_RETAINED  # not yet decided
    reply = await dialog.on_user_turn("yes that's fine", 0.9)
    assert reply.text == "Thank you. How can I help?" and inner.turns == []
    assert dialog.screen_transcript("book me in")[0] == "book me in"
    assert kinds(events, EventKind.CONSENT_RECORDED) == [{"mode": "opt_in", "decision": "granted"}]


async def test_a_declined_consent_stops_keeping_any_free_text_of_the_call():
    inner = Scripted("Hi, I'm an AI assistant. How can I help?", [AgentReply("Sure, which day?")])
    dialog, events = wrapped(inner, {"consent": {"mode": "opt_in"}})
    await dialog.start()
    reply = await dialog.on_user_turn("no I'd rather not", 0.9)
    assert reply.text == "Okay, this call won't be recorded. How can I help?"
    assert kinds(events, EventKind.CONSENT_RECORDED) == [{"mode": "opt_in", "decision": "declined"}]
    recorded, heard = dialog.screen_transcript("I want to book Monday")
    assert recorded == NOT_RETAINED and heard == "I want to book Monday"
    said = Event("c1", EventKind.DIALOG_DECIDED, 0.0, 0.0, pii={"agent_text": "Which day?"})
    assert dialog.screen_event(said).pii["agent_text"] == NOT_RETAINED


async def test_a_request_instead_of_an_answer_is_no_consent_and_goes_to_the_dialog():
    inner = Scripted("Hi, I'm an AI assistant. How can I help?", [AgentReply("Which day?")])
    dialog, _events = wrapped(inner, {"consent": {"mode": "opt_in"}})
    await dialog.start()
    reply = await dialog.on_user_turn("I want to book an appointment", 0.9)
    assert reply.text == "Which day?" and inner.turns == ["I want to book an appointment"]
    assert not dialog.conduct.retain
