"""Model-version tracking, pure."""

from voicerail.routing.versions import VersionChange, VersionTracker


def test_first_version_is_a_baseline_and_a_change_is_reported_once():
    tracker = VersionTracker()
    assert tracker.observe("tts-a", "m", "v1") is None
    assert tracker.observe("tts-a", "m", "v1") is None
    assert tracker.observe("tts-a", "m", "v2") == VersionChange("tts-a", "m", "v1", "v2")
    assert tracker.observe("tts-a", "m", "v2") is None
    assert tracker.current("tts-a", "m") == "v2"


def test_missing_versions_change_nothing_and_keys_are_per_model():
    tracker = VersionTracker()
    tracker.observe("llm", "small", "1")
    assert tracker.observe("llm", "small", None) is None
    assert tracker.observe("llm", "small", "") is None
    assert tracker.observe("llm", "large", "2") is None
    assert tracker.current("llm", "small") == "1"
