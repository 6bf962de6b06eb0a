"""Pronunciation lexicon: per-provider replacements of whole words, from data."""

from pathlib import Path

import pytest

from voicerail.errors import ConfigError
from voicerail.providers.lexicon import PronunciationLexicon

ENTRIES = {
    "Voicerail": {"*": "Voice Rail", "piper": "[[ vˈɔɪs ɹˈeɪl ]]"},
    "Okafor": "oh KAH for",
    "Dr. Nguyen": {"espeak-ng": "Doctor Win"},
}


def test_default_replacement_applies_case_insensitively_to_whole_words():
    lexicon = PronunciationLexicon(ENTRIES)
    text = "VOICERAIL and voicerail's app, not Voicerails."
    assert lexicon.apply(text, "espeak-ng") == "Voice Rail and Voice Rail's app, not Voicerails."


def test_provider_entry_wins_over_the_default():
    lexicon = PronunciationLexicon(ENTRIES)
    assert lexicon.apply("Welcome to Voicerail.", "piper") == "Welcome to [[ vˈɔɪs ɹˈeɪl ]]."


def test_term_without_entry_for_the_provider_is_left_alone():
    lexicon = PronunciationLexicon(ENTRIES)
    assert lexicon.apply("Dr. Nguyen will see you.", "piper") == "Dr. Nguyen will see you."
    assert lexicon.apply("Dr.  Nguyen will see you.", "espeak-ng") == "Doctor Win will see you."


def test_longest_term_wins_and_replacements_are_not_replaced_again():
    lexicon = PronunciationLexicon({"Dr": "Doctor", "Dr. Nguyen": "Doctor Win", "Win": "Vin"})
    assert lexicon.apply("Dr. Nguyen and Dr Smith", "x") == "Doctor Win and Doctor Smith"


def test_find_terms_lists_terms_in_order_of_appearance():
    lexicon = PronunciationLexicon(ENTRIES)
    assert lexicon.find_terms("Okafor uses VoiceRail") == ["okafor", "voicerail"]
    assert lexicon.terms == ("voicerail", "okafor", "dr. nguyen")
    assert len(lexicon) == 3
    assert lexicon.replacement("OKAFOR", "piper") == "oh KAH for"


def test_empty_lexicon_changes_nothing():
    assert PronunciationLexicon({}).apply("Voicerail", "piper") == "Voicerail"


def test_loads_the_documented_yaml_format(tmp_path: Path):
    path = tmp_path / "lexicon.yaml"
    path.write_text(
        'Voicerail:\n  "*": Voice Rail\n  piper: "[[ v ]]"\nOkafor: oh KAH for\n',
        encoding="utf-8",
    )
    lexicon = PronunciationLexicon.from_yaml(path)
    assert lexicon.apply("Voicerail, Okafor", "espeak-ng") == "Voice Rail, oh KAH for"
    assert lexicon.apply("Voicerail", "piper") == "[[ v ]]"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"": "x"}, "a term must be a non-empty string, got ''"),
        ({"Voicerail": ""}, r"replacement for provider '\*' must be a non-empty string"),
        ({"Voicerail": {"piper": 3}}, "replacement for provider 'piper' must be a non-empty"),
        ({"Voicerail": {}}, "expected a replacement or a mapping"),
        ({"Voicerail": "a", "VOICERAIL": "b"}, "term 'VOICERAIL' is listed twice"),
    ],
)
def test_invalid_entries_are_config_errors(entries, message):
    with pytest.raises(ConfigError, match=message):
        PronunciationLexicon(entries, source="lexicon.yaml")


def test_yaml_that_is_not_a_mapping_is_a_config_error(tmp_path: Path):
    path = tmp_path / "lexicon.yaml"
    path.write_text("- Voicerail\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="a lexicon is a mapping of terms, got list"):
        PronunciationLexicon.from_yaml(path)
    with pytest.raises(ConfigError, match="cannot read lexicon: FileNotFoundError"):
        PronunciationLexicon.from_yaml(tmp_path / "missing.yaml")


def test_empty_yaml_is_an_empty_lexicon(tmp_path: Path):
    path = tmp_path / "lexicon.yaml"
    path.write_text("", encoding="utf-8")
    assert len(PronunciationLexicon.from_yaml(path)) == 0
