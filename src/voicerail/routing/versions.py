"""Model-version tracking: flag silent provider updates.

Rules:

1. The key is (provider, model): one provider may serve several models.
2. The first version seen for a key is a baseline, not a change.
3. A request that reports no version (None or "") changes nothing.
4. A change is reported once, when first seen; the new version becomes the baseline.

Why: providers update models behind the same name; a TTS voice that starts
mispronouncing or an STT whose WER moves is explained by this event
(see C16, output drift detection).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VersionChange:
    """A provider reported a model version other than the one it reported before.

    Attributes:
        provider: configured provider name.
        model: model name as configured.
        previous: the version reported before.
        current: the version reported now.
    """

    provider: str
    model: str
    previous: str
    current: str


class VersionTracker:
    """Rules 1-4, shared by every call of a router."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], str] = {}

    def current(self, provider: str, model: str) -> str | None:
        """The last version reported for ``(provider, model)``, or None."""
        return self._versions.get((provider, model))

    def observe(self, provider: str, model: str, version: str | None) -> VersionChange | None:
        """Record a reported version; return the change when it differs from the last one."""
        if not version:
            return None
        key = (provider, model)
        previous = self._versions.get(key)
        self._versions[key] = version
        if previous is None or previous == version:
            return None
        return VersionChange(provider, model, previous, version)
