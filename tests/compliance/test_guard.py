"""Disclosure and output-guard checks on what callers and agents say."""

from __future__ import annotations

import re

import pytest

from voicerail.compliance.guard import asks_if_human, check_reply, claims_human, discloses_ai


@pytest.mark.parametrize(
    "text",
    [
        "are you human?",
        "Am I talking to a real person",
        "is this a robot",
        "is this a recording or a person",
        "are you an AI",
        "you're a bot aren't you",
        "are you real",
    ],
)
def test_questions_about_the_agent_are_asks(text):
    assert asks_if_human(text)


@pytest.mark.parametrize(
    "text", ["I want to book", "are you open on Saturday", "is this the clinic"]
)
def test_other_questions_are_not(text):
    assert not asks_if_human(text)


@pytest.mark.parametrize(
    "text",
    [
        "Yes, I'm a real person.",
        "I am not a robot, I promise",
        "This isn't a recording.",
        "I'm a human being",
        "You're talking to a real person",
        "Don't worry, I'm not an AI.",
    ],
)
def test_claims_to_be_human_are_caught(text):
    assert claims_human(text)
    assert check_reply(text) is not None and check_reply(text).rule == "claims_human"


@pytest.mark.parametrize(
    "text",
    ["I'm an AI, not a person.", "No, I'm not a human. I'm an AI assistant.", "I'm happy to help"],
)
def test_truthful_replies_pass(text):
    assert not claims_human(text) and check_reply(text) is None


def test_disclosure_is_recognized_and_a_denial_is_not_one():
    assert discloses_ai("You're talking to the clinic's AI assistant.")
    assert discloses_ai("This is an automated assistant")
    assert not discloses_ai("I am not a robot")
    assert not discloses_ai("Hello, how can I help?")


def test_prohibited_phrases_name_their_index():
    rules = [re.compile(r"\bguarantee", re.I), re.compile(r"\bdiagnos", re.I)]
    hit = check_reply("Based on that, I'd diagnose a cold.", rules)
    assert hit is not None and hit.rule == "prohibited" and hit.index == 1
    assert check_reply("See you Monday.", rules) is None
