"""The compliance wrapper around a flow agent: the PCI pause from the dialog's side."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from voicerail.compliance.dialog import PCI_KEY, CompliantAgent, CompliantDialog, card_sentence
from voicerail.compliance.pci import CardToken, LocalTokenizer
from voicerail.compliance.policy import load_policy, policy_of_agent_file
from voicerail.compliance.redact import NAME_MARKER
from voicerail.dialog.base import AgentReply
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.flows import FlowDialog, load_agent
from voicerail.errors import ConfigError
from voicerail.events.model import Event, EventKind
from voicerail.testing.doubles import QuietAgent, QuietDialog

AGENT = Path(__file__).parent / "payment_agent.yaml"
CARD = "4111111111111111"


class HashEmbedder:
    """Deterministic unit vectors from a hash: this agent routes on no intent."""

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8) for t in texts]
        vectors = np.stack(rows).astype(np.float32) - 127.5
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def agent(tmp_path: Path) -> CompliantAgent:
    flows = load_agent(
        AGENT, bookings=BookingStore(tmp_path / "b.sqlite3"), embedder=HashEmbedder()
    )
    return CompliantAgent(flows, policy_of_agent_file(AGENT), LocalTokenizer(b"test"))


async def key(dialog: CompliantDialog, keys: str) -> AgentReply:
    """Each key as the driver hands it over; the last key's reply."""
    reply = AgentReply("")
    for k in keys:
        press = dialog.receive_dtmf(k)
        reply = await dialog.on_dtmf(press.deliver)
    return reply


async def test_a_card_keyed_at_the_pay_node_is_tokenized_and_takes_the_yes_transition(agent):
    dialog = agent.new_dialog("c1")
    greeting = await dialog.start()
    assert greeting.node == "pay" and greeting.data["pci"] == "paused" and dialog.paused
    press = dialog.receive_dtmf("4")
    assert press.deliver == PCI_KEY and press.paused
    assert (await dialog.on_dtmf(press.deliver)).text == ""  # still keying
    reply = await key(dialog, CARD[1:] + "#")
    assert reply.text == "Thank you, your card is saved." and reply.end_call
    assert reply.data["pci"] == "captured" and reply.data["card_token"].startswith("tok_")
    assert reply.pii == {"card_last4": "1111"} and not dialog.paused
    inner = dialog.inner
    assert isinstance(inner, FlowDialog)
    assert CARD not in repr(inner.state.history) and CARD not in repr(dialog.snapshot())


async def test_an_invalid_card_is_asked_again_then_the_no_transition(agent):
    dialog = agent.new_dialog("c2")
    await dialog.start()
    again = await key(dialog, "4111111111111112#")
    assert again.text == agent.policy.pci.invalid and again.data["pci"] == "invalid"
    assert dialog.paused
    reply = await key(dialog, "1234#")
    assert reply.data["pci"] == "failed" and "card_token" not in reply.data
    assert reply.text.startswith("I couldn't take that card")


async def test_keys_are_passed_through_outside_the_pause():
    dialog = CompliantAgent(QuietAgent(), load_policy({})).new_dialog("c3")
    await dialog.start()
    press = dialog.receive_dtmf("5")
    assert press.deliver == "5" and not press.paused


async def test_speech_during_the_pause_hears_the_prompt_then_leaves_it(agent):
    dialog = agent.new_dialog("c4")
    await dialog.start()
    recorded, heard = dialog.screen_transcript("it's 4111 1111")
    assert "4111" not in recorded and "4111" not in heard
    first = await dialog.on_user_turn(heard, 0.9)
    assert first.text == agent.policy.pci.prompt and dialog.paused
    await dialog.on_user_turn("I'd rather not", 0.9)
    assert not dialog.paused


async def test_a_silence_after_some_digits_finishes_the_entry(agent):
    dialog = agent.new_dialog("c5")
    await dialog.start()
    assert (await dialog.on_silence(1)).text == agent.policy.pci.prompt  # nothing keyed
    for k in CARD:
        dialog.receive_dtmf(k)
    reply = await dialog.on_silence(1)
    assert reply.data["pci"] == "captured"


async def test_a_dialog_without_on_card_captured_hears_only_token_and_last_four():
    heard: list[str] = []

    class Recording(QuietDialog):
        async def start(self) -> AgentReply:
            return AgentReply("Key your card.", data={"pci": "start"})

        async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
            heard.append(text)
            return AgentReply("Thanks.")

    class Factory:
        name = "recording"

        def new_dialog(self, call_id: str) -> Recording:
            return Recording()

    dialog = CompliantAgent(Factory(), load_policy({}), LocalTokenizer(b"k")).new_dialog("c6")
    await dialog.start()
    await key(dialog, CARD + "#")
    [text] = heard
    assert CARD not in text and "ending in 1111" in text and "tok_" in text


def test_the_card_sentence_never_names_the_number():
    refused = CardToken("", "1112", 16, False)
    assert "1112" not in card_sentence(refused)


def test_fixed_texts_include_the_pause_prompts(agent):
    texts = agent.fixed_texts()
    assert agent.policy.pci.prompt in texts and agent.policy.pci.invalid in texts


def test_a_bad_compliance_section_names_its_field():
    with pytest.raises(ConfigError) as err:
        load_policy({"pci": {"max_attempts": 0}}, source="agent.yaml")
    assert err.value.field == "compliance.pci.max_attempts"
    with pytest.raises(ConfigError) as err:
        load_policy({"pcii": {}})
    assert err.value.field == "compliance.pcii"


def test_the_policy_is_read_from_the_agent_file():
    assert policy_of_agent_file(AGENT).pci.nodes == ["pay"]


async def test_events_lose_personal_data_and_the_names_the_dialog_collected():
    class Naming(QuietDialog):
        async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
            return AgentReply("So that's Monday for Ada Lovelace.", pii={"name": "Ada Lovelace"})

    class Factory:
        name = "naming"

        def new_dialog(self, call_id: str) -> Naming:
            return Naming()

    dialog = CompliantAgent(Factory(), load_policy({})).new_dialog("c7")
    await dialog.on_user_turn("Ada Lovelace", 0.9)
    said = Event(
        "c7",
        EventKind.DIALOG_DECIDED,
        0.0,
        0.0,
        data={"node": "book"},
        pii={"agent_text": "So that's Monday for ada lovelace, on 555 010 9999.", "name": "Ada"},
    )
    screened = dialog.screen_event(said)
    assert screened.pii["agent_text"] == (
        f"So that's Monday for {NAME_MARKER}, on [redacted:phone]."
    )
    assert screened.pii["name"] == "Ada" and screened.data == said.data  # marked slots stay
    quiet = Event("c7", EventKind.CALL_STARTED, 0.0, 0.0)
    assert dialog.screen_event(quiet) is quiet


async def test_redaction_can_be_turned_off_for_recorded_text():
    dialog = CompliantAgent(QuietAgent(), load_policy({"redaction": {"transcripts": False}}))
    call = dialog.new_dialog("c8")
    recorded, heard = call.screen_transcript("my name is Ada, card 4111 1111 1111 1111")
    assert "Ada" in heard
    assert "Ada" in recorded and "4111" not in recorded  # a card is never recorded
    event = Event("c8", EventKind.TRANSCRIPT_FINAL, 0.0, 0.0, pii={"text": "my name is Ada"})
    assert call.screen_event(event) is event


async def test_the_llm_gets_redacted_text_when_the_policy_says_so():
    call = CompliantAgent(QuietAgent(), load_policy({"redaction": {"llm": True}})).new_dialog("c9")
    recorded, heard = call.screen_transcript("my name is Ada Lovelace")
    assert heard == recorded == f"my name is {NAME_MARKER}"


class _Slot:
    def __init__(self, kind: str) -> None:
        self.type = kind


class _Spec:
    def __init__(self) -> None:
        self.slots = {"who": _Slot("name"), "day": _Slot("day")}


class AskingDialog(QuietDialog):
    """A flow-like dialog: asks for the ``who`` slot (type name), then the day."""

    spec = _Spec()

    async def start(self) -> AgentReply:
        return AgentReply("Hello. Who am I speaking with?", data={"awaiting": "who"})

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        return AgentReply("Which day?", data={"awaiting": "day"})

    def snapshot(self, *, free_text: bool = True) -> dict[str, object]:
        return {}

    def restore(self, snapshot: dict[str, object]) -> None:
        pass


class AskingAgent:
    name = "asking"

    def new_dialog(self, call_id: str) -> AskingDialog:
        return AskingDialog()


async def test_a_bare_name_answering_a_pending_name_slot_is_not_recorded():
    call = CompliantAgent(AskingAgent(), load_policy({})).new_dialog("c10")
    await call.start()
    recorded, heard = call.screen_transcript("Ada Lovelace.")
    assert recorded == f"{NAME_MARKER}." and heard == "Ada Lovelace."  # the flow still gets it
    await call.on_user_turn(heard, 0.9)  # now the day slot is pending
    assert call.screen_transcript("Ada Lovelace.")[0] == "Ada Lovelace."


async def test_the_pending_name_survives_a_resume():
    first = CompliantAgent(AskingAgent(), load_policy({})).new_dialog("c11")
    await first.start()
    second = CompliantAgent(AskingAgent(), load_policy({})).new_dialog("c11")
    second.restore(first.snapshot())
    assert second.screen_transcript("Grace Hopper")[0] == NAME_MARKER


async def test_an_llm_reply_asking_for_the_name_redacts_the_bare_answer_for_the_llm_too():
    class Asking(QuietDialog):
        async def start(self) -> AgentReply:
            return AgentReply("Hi, this is an AI assistant. What's your full name, please?")

    class Factory:
        name = "llm-like"

        def new_dialog(self, call_id: str) -> Asking:
            return Asking()

    call = CompliantAgent(Factory(), load_policy({"redaction": {"llm": True}})).new_dialog("c12")
    await call.start()
    assert call.screen_transcript("um, ada lovelace") == (f"um, {NAME_MARKER}",) * 2
    assert call.screen_transcript("I don't know")[0] == "I don't know"
