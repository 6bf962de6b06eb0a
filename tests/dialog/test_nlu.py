"""Intent recognition with the clinic's intents on paraphrases the agent file does not contain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from voicerail.dialog.embeddings import MiniLMEmbedder
from voicerail.dialog.flow_config import load_agent_spec
from voicerail.dialog.nlu import IntentClassifier, IntentMatch

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"

# Held out: none of these is an example phrase of examples/clinic.yaml (checked below).
PARAPHRASES = {
    "book": [
        "Hi, I'd like to set up an appointment.",
        "Could I get in to see Dr. Patel sometime this week?",
        "I need to make a booking for a physical.",
        "Can you fit me in on Friday?",
        "I'm calling to schedule a checkup for my son.",
        "Do you have anything available next Monday morning?",
        "I'd like to see a doctor about my back pain.",
        "Book me an appointment, please.",
        "I want to come in for a flu shot.",
        "Is there an opening tomorrow afternoon?",
        "Yeah hi, I was hoping to get an appointment with Dr. Chen.",
        "My daughter has a fever, can she be seen today?",
        "I'd like to schedule my annual physical.",
        "Can I get on the calendar for next week?",
        "I'm a new patient and I'd like to come in.",
        "Do you have any slots on Thursday?",
        "I need a follow-up visit.",
    ],
    "reschedule": [
        "I need to change the date of my appointment.",
        "Can I move my Tuesday visit to Thursday?",
        "Something came up, can we do a different day?",
        "I'd like to reschedule.",
        "Could you push my appointment to later in the week?",
        "I have an appointment on Monday but I need a different time.",
        "Is it possible to move my booking?",
        "I can't make Wednesday anymore, can I come another day?",
        "I need to move my appointment, I have a work thing.",
        "Can my appointment be changed to the afternoon?",
        "I booked for Friday but I need Monday instead.",
        "Could we do my appointment a week later?",
        "I'd like to switch my appointment to another time.",
    ],
    "cancel": [
        "I'd like to cancel my appointment.",
        "Please cancel my visit for tomorrow.",
        "I won't be able to make it, please take me off.",
        "Can you cancel the booking under my name?",
        "I need to cancel, I'm feeling better now.",
        "Cancel my Thursday appointment.",
        "I don't need to come in anymore, please cancel.",
        "Yeah, I have to cancel tomorrow's appointment.",
        "Please drop my appointment, I'm going out of town.",
        "I'm not going to make it on Thursday, just cancel it.",
        "Can you remove my booking?",
        "I want to call off my appointment.",
    ],
    "hours": [
        "What time do you guys open?",
        "Are you open on Sundays?",
        "When do you close today?",
        "What are your hours on Saturday?",
        "How late are you open on Friday?",
        "Are you open during lunch?",
        "What days is the clinic open?",
        "Until what time are you open?",
        "Are you guys open on the weekend?",
        "What time does the office open on Monday?",
        "Is the clinic open right now?",
        "What are your business hours?",
    ],
    "human": [
        "Can I speak to someone at the front desk?",
        "I'd like to talk to a real human, please.",
        "Get me a person.",
        "Operator.",
        "Transfer me to a nurse please.",
        "I want to talk to the receptionist.",
        "Representative.",
        "Can you connect me with someone who works there?",
        "Can you put me through to an actual person?",
        "I need to speak with the office manager.",
        "Let me talk to a live person.",
        "Is there someone I can talk to?",
        "Front desk, please.",
    ],
    "robot": [
        "Wait, am I talking to a machine?",
        "Is this a real person?",
        "Are you a bot?",
        "Am I speaking to a human or a computer?",
        "Are you artificial intelligence?",
        "Is this an automated voice?",
        "Are you a robot?",
        "Hold on, is this an AI?",
        "Am I talking to a real person right now?",
        "You sound like a computer, are you one?",
        "Is this an automated assistant?",
        "Are you a person or a program?",
    ],
    "goodbye": [
        "No, that's it, goodbye.",
        "Okay, thanks, bye.",
        "Sorry, I dialed the wrong number.",
        "I'll call back later.",
        "Nothing else, have a good day.",
        "That's all I needed, bye.",
        "Oh sorry, wrong number.",
        "Thanks, have a nice day, bye.",
    ],
}
OFF_TOPIC = [
    "All circuits are busy now.",
    "The conference is full.",
    "What's the weather like today?",
    "My cat is sleeping on the couch.",
    "Hmm.",
    "It was the best of times, it was the worst of times.",
]


class CountingEmbedder:
    """Wraps an embedder and counts how many sentences it embedded."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.sentences = 0

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        self.sentences += len(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def classifier(embedder: MiniLMEmbedder) -> IntentClassifier:
    spec = load_agent_spec(CLINIC)
    return IntentClassifier(
        embedder,
        {name: intent.examples for name, intent in spec.intents.items()},
        spec.thresholds.intent,
        keywords={name: intent.keywords for name, intent in spec.intents.items()},
    )


def test_paraphrases_are_held_out_of_the_agent_file() -> None:
    examples = {e.lower() for i in load_agent_spec(CLINIC).intents.values() for e in i.examples}
    assert not any(p.lower().rstrip(".?!") in examples for ps in PARAPHRASES.values() for p in ps)


def test_intent_accuracy_on_held_out_paraphrases_is_at_least_90_percent(
    classifier: IntentClassifier,
) -> None:
    results = [
        (phrase, intent, classifier.classify(phrase))
        for intent, phrases in PARAPHRASES.items()
        for phrase in phrases
    ]
    wrong = [(p, want, got) for p, want, got in results if got is None or got.name != want]
    accuracy = 1 - len(wrong) / len(results)
    print(f"intent accuracy {accuracy:.1%} on {len(results)} held-out paraphrases")
    assert accuracy >= 0.9, wrong


@pytest.mark.parametrize("text", OFF_TOPIC)
def test_off_topic_turns_match_no_intent(classifier: IntentClassifier, text: str) -> None:
    assert classifier.classify(text) is None


@pytest.mark.parametrize(
    "text",
    ["Am I talking to a robot?", "Are you a real person?", "Is this an AI?", "Are you human?"],
)
def test_robot_questions_are_not_requests_for_a_human(
    classifier: IntentClassifier, text: str
) -> None:
    match = classifier.classify(text)
    assert match is not None and match.name == "robot"


@pytest.mark.parametrize(
    "text",
    ["I want to speak to a human.", "Can I talk to someone, please?", "Get me the front desk."],
)
def test_requests_for_a_human(classifier: IntentClassifier, text: str) -> None:
    match = classifier.classify(text)
    assert match is not None and match.name == "human"


@pytest.mark.parametrize("text", ["Operator.", "Receptionist, please.", "Staff."])
def test_one_word_requests_for_a_human(classifier: IntentClassifier, text: str) -> None:
    match = classifier.classify(text)
    assert match is not None and match.name == "human"


def test_a_short_reply_no_example_matches_falls_back_on_its_keyword(
    classifier: IntentClassifier,
) -> None:
    assert max(classifier.scores("Representative!").values()) == 1.0
    assert classifier.classify("Representative!") == IntentMatch("human", 1.0)


def test_in_a_longer_sentence_a_keyword_only_breaks_near_ties(
    classifier: IntentClassifier,
) -> None:
    """ "human" is a keyword of the human intent, yet this stays a robot question."""
    scores = classifier.scores("Wait, am I actually talking to a human right now?")
    assert max(scores, key=lambda n: scores[n]) == "robot" and scores["human"] < 1.0


def test_rank_restricted_to_some_intents(classifier: IntentClassifier) -> None:
    ranked = classifier.rank("please cancel my visit", among=["book", "cancel", "nope"])
    assert [m.name for m in ranked] == ["cancel", "book"]
    assert ranked[0].score > ranked[1].score


def test_blank_text_matches_nothing_without_embedding(embedder: MiniLMEmbedder) -> None:
    counting = CountingEmbedder(embedder)
    classifier = IntentClassifier(counting, {"yes": ["yes"], "no": ["no"]})
    assert counting.sentences == 2  # the examples, once, when the agent loads
    assert classifier.classify("   ") is None
    assert counting.sentences == 2
    classifier.classify("yes please")
    classifier.classify("no thanks")
    assert counting.sentences == 4  # one per utterance, examples never again


def test_intents_need_examples_and_keywords_need_intents(embedder: MiniLMEmbedder) -> None:
    with pytest.raises(ValueError, match="'book' has no example phrases"):
        IntentClassifier(embedder, {"book": []})
    with pytest.raises(ValueError, match="unknown intent 'cancel'"):
        IntentClassifier(embedder, {"book": ["book"]}, keywords={"cancel": ["cancel"]})
