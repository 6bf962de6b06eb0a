"""Deadlines and the real-time rule of one inbound media stream. Pure: no I/O, the
caller passes every time in (monotonic seconds).

A Twilio Media Stream opens with ``connected`` and, "immediately after", ``start``,
then streams the call's audio "in near real-time" as ``media`` messages for as long
as the call lasts, silence included
(https://www.twilio.com/docs/voice/media-streams/websocket-messages and
https://www.twilio.com/docs/voice/twiml/stream, read 2026-12). A peer that does
otherwise is idle or abusive, and holds a socket, a session and a share of the
server's CPU.

Rules :class:`StreamGuard` keeps:

1. ``start`` arrives within ``start_deadline_s`` of the socket being accepted.
2. After ``start`` and until ``stop``, a gap between ``media`` messages (or
   between ``start`` and the first one) never exceeds ``media_silence_s``.
3. Inbound audio never runs more than ``media_burst_s`` ahead of real time: the
   audio received (μ-law at 8 kHz, one byte a sample) minus the time since the
   first ``media`` arrived stays within the tolerance. The payload length counts,
   not Twilio's ``timestamp``, because the payload is what the server has to
   process and a peer can write any timestamp.
4. After ``stop`` no deadline applies; the stream is over.
5. A broken rule is reported as :class:`~voicerail.errors.StreamLimitExceeded`
   naming the limit, with the figures in its message.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicerail.errors import StreamLimitExceeded

#: μ-law at 8 kHz: one byte per sample.
MULAW_BYTES_PER_S = 8000


@dataclass(frozen=True)
class StreamLimits:
    """How long a media stream may idle and how fast its audio may arrive.

    Attributes:
        start_deadline_s: seconds from accept to ``start`` (rule 1). Twilio sends
            ``start`` right after ``connected``, in well under a second; 10 s leaves
            room for a slow network and a cold TLS hand-off while bounding how long
            a socket that will never carry a call is held.
        media_silence_s: the longest gap between inbound ``media`` messages
            (rule 2). Twilio sends a 20 ms chunk every 20 ms, silence included; 5 s
            is 250 missing chunks, far beyond network jitter, and short enough that
            a dead peer frees its session quickly.
        media_burst_s: how far inbound audio may run ahead of its arrival time
            (rule 3). Audio delayed by the network and then delivered in a burst is
            never ahead of real time; only a first chunk that came late makes later
            on-time chunks look early, by that lateness. 2 s covers such a start.
    """

    start_deadline_s: float = 10.0
    media_silence_s: float = 5.0
    media_burst_s: float = 2.0


class StreamGuard:
    """Rules 1 to 5 for one stream.

    Args:
        limits: the limits.
        accepted_s: monotonic time the socket was accepted, seconds.
    """

    def __init__(self, limits: StreamLimits, accepted_s: float) -> None:
        self.limits = limits
        self._accepted_s = accepted_s
        self._started_s: float | None = None
        self._stopped = False
        self._last_media_s: float | None = None
        self._first_media_s: float | None = None
        self._audio_num_bytes = 0  # an integer, so the sum does not drift

    @property
    def audio_s(self) -> float:
        """Seconds of inbound audio received so far."""
        return self._audio_num_bytes / MULAW_BYTES_PER_S

    def receive_start(self, now_s: float) -> None:
        """Record ``start``; from now on rule 2 applies instead of rule 1."""
        if self._started_s is None:
            self._started_s = now_s

    def receive_stop(self) -> None:
        """Record ``stop``: no deadline applies any more (rule 4)."""
        self._stopped = True

    def receive_media(self, payload_num_bytes: int, now_s: float) -> None:
        """Record one inbound ``media`` message and check rule 3.

        Args:
            payload_num_bytes: length of the decoded μ-law payload (8 kHz, mono).
            now_s: arrival time, monotonic seconds.

        Raises:
            StreamLimitExceeded: ``limit="media_rate"``, the audio runs more than
                ``media_burst_s`` ahead of real time.
        """
        if self._first_media_s is None:
            self._first_media_s = now_s
        self._last_media_s = now_s
        self._audio_num_bytes += payload_num_bytes
        audio_s = self.audio_s
        elapsed_s = now_s - self._first_media_s
        ahead_s = audio_s - elapsed_s
        if ahead_s > self.limits.media_burst_s:
            raise StreamLimitExceeded(
                f"inbound media faster than real time: {audio_s:.2f} s of audio in "
                f"{elapsed_s:.2f} s, {ahead_s:.2f} s ahead (limit {self.limits.media_burst_s} s)",
                limit="media_rate",
                event="media",
            )

    def expired(self, now_s: float) -> StreamLimitExceeded | None:
        """The deadline that has passed at ``now_s`` (rules 1, 2 and 4), else None."""
        if self._stopped:
            return None
        if self._started_s is None:
            waited_s = now_s - self._accepted_s
            if waited_s > self.limits.start_deadline_s:
                return StreamLimitExceeded(
                    f"no 'start' within {self.limits.start_deadline_s} s of connecting "
                    f"(waited {waited_s:.1f} s)",
                    limit="start_deadline",
                )
            return None
        last_s = self._last_media_s if self._last_media_s is not None else self._started_s
        silent_s = now_s - last_s
        if silent_s > self.limits.media_silence_s:
            return StreamLimitExceeded(
                f"no media for {silent_s:.1f} s (limit {self.limits.media_silence_s} s)",
                limit="media_silence",
                event="media",
            )
        return None
