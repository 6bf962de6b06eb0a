"""What the caller has heard of the agent's reply, from Twilio ``mark`` echoes.

Rules:

1. A reply is sent as segments (one per sentence); each segment's audio is
   followed by a ``mark``. Twilio echoes a mark when the audio before it has
   played, so an echoed mark means the caller heard that whole segment.
   (https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-mark-message)
2. When playback is cut (barge-in), the segment playing at that moment is
   estimated from the time since the previous echo, by word count in
   proportion to the segment's duration; the words are never rounded up.
3. Times are the driver's monotonic clock in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Segment:
    """One sentence of agent audio followed by a mark.

    Attributes:
        mark: the mark name sent after its audio.
        text: the sentence.
        duration_s: audio duration in seconds.
        heard: True once its mark came back.
    """

    mark: str
    text: str
    duration_s: float
    heard: bool = False


class PlaybackTracker:
    """Follows one reply's segments from queued to heard.

    Args:
        started_at_s: when the reply's first audio was sent (driver clock).
    """

    def __init__(self, started_at_s: float) -> None:
        self.segments: list[Segment] = []
        self._playing_since_s = started_at_s
        self.finished_queueing = False

    def add_segment(self, mark: str, text: str, duration_s: float) -> None:
        """Register a segment whose audio and mark have been queued."""
        self.segments.append(Segment(mark, text, duration_s))

    def on_mark(self, name: str, now_s: float) -> Segment | None:
        """Record a mark echo; returns its segment, or None for a name not of this reply."""
        for segment in self.segments:
            if segment.mark == name and not segment.heard:
                segment.heard = True
                self._playing_since_s = now_s
                return segment
        return None

    @property
    def all_heard(self) -> bool:
        """Every queued segment was heard and no more will be queued."""
        return self.finished_queueing and all(s.heard for s in self.segments)

    def heard_text(self, now_s: float) -> str:
        """The part of the reply the caller heard, if playback stopped at ``now_s``."""
        words: list[str] = [s.text for s in self.segments if s.heard]
        current = next((s for s in self.segments if not s.heard), None)
        if current is not None and current.duration_s > 0:
            fraction = min(1.0, max(0.0, (now_s - self._playing_since_s) / current.duration_s))
            current_words = current.text.split()
            num_heard = int(fraction * len(current_words))
            if num_heard:
                words.append(" ".join(current_words[:num_heard]))
        return " ".join(words)

    @property
    def full_text(self) -> str:
        """Everything queued for the caller."""
        return " ".join(s.text for s in self.segments)
