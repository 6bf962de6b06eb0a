"""The PCI pause's pure parts: the card entry, the local tokenizer, spoken-card redaction."""

from __future__ import annotations

import pytest

from voicerail.compliance.pci import (
    CARD_MARKER,
    DIGITS_MARKER,
    MAX_PAN_DIGITS,
    CardEntry,
    LocalTokenizer,
    redact_spoken_card,
)

CARD = "4111111111111111"


def keyed(keys: str) -> CardEntry:
    entry = CardEntry()
    for key in keys:
        entry.receive_key(key)
    return entry


def test_an_entry_finishes_on_pound_and_tokenizes_to_a_token_and_last_four():
    entry = keyed(CARD)
    assert not entry.finished
    assert entry.receive_key("#")
    card = entry.take(LocalTokenizer(b"k"))
    assert card.accepted and card.token.startswith("tok_") and card.last4 == "1111"
    assert card.num_digits == 16 and CARD not in card.token


def test_an_entry_finishes_by_itself_at_the_longest_pan():
    entry = keyed("1" * (MAX_PAN_DIGITS - 1))
    assert not entry.finished
    assert entry.receive_key("1")
    assert entry.receive_key("5")  # keys after the end change nothing
    assert entry.num_digits == MAX_PAN_DIGITS


def test_star_starts_the_entry_again():
    entry = keyed("99*" + CARD + "#")
    assert entry.take(LocalTokenizer(b"k")).accepted


def test_the_entry_never_shows_its_digits():
    entry = keyed(CARD)
    assert CARD not in repr(entry) and "1111" not in repr(entry)


def test_take_forgets_the_digits():
    entry = keyed(CARD + "#")
    entry.take(LocalTokenizer(b"k"))
    assert entry.num_digits == 0


@pytest.mark.parametrize("pan", ["4111111111111112", "41111", "", "1" * 20])
def test_a_number_failing_luhn_or_length_is_refused_without_a_token(pan):
    card = LocalTokenizer(b"k").tokenize(pan)
    assert not card.accepted and card.token == ""


def test_the_same_card_and_key_give_the_same_token_and_another_key_another():
    a, b, c = LocalTokenizer(b"k"), LocalTokenizer(b"k"), LocalTokenizer(b"other")
    assert a.tokenize(CARD).token == b.tokenize(CARD).token != c.tokenize(CARD).token


def test_the_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("VOICERAIL_PCI_KEY", "secret")
    assert LocalTokenizer().tokenize(CARD).token == LocalTokenizer(b"secret").tokenize(CARD).token


@pytest.mark.parametrize(
    "text",
    [
        "my card is 4111 1111 1111 1111",
        "my card is 4111-1111-1111-1111 thanks",
        "four one one one one one one one one one one one one one one one",
        "Four, one, one, one. One one one one, one one one one, one one one one",
        "it's 4111111111111111",
    ],
)
def test_a_spoken_card_is_redacted_outside_the_pause(text):
    out = redact_spoken_card(text, paused=False)
    assert CARD_MARKER in out and "1111" not in out and "one one one" not in out.lower()


@pytest.mark.parametrize(
    "text",
    ["book me at 10 am on the 4th", "call 555 010 9999", "I have one question", "order 4111"],
)
def test_other_numbers_stay_outside_the_pause(text):
    assert redact_spoken_card(text, paused=False) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("it's 4111 1111", f"it's {DIGITS_MARKER}"),
        ("four one one one", DIGITS_MARKER),
        ("um 4", f"um {DIGITS_MARKER}"),
        ("I have one question", "I have one question"),
    ],
)
def test_during_the_pause_any_spoken_digits_are_redacted(text, expected):
    assert redact_spoken_card(text, paused=True) == expected
