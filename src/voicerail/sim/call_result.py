"""What a simulated caller does (:class:`CallerTurn`) and what it measured
(:class:`CallResult`); the caller itself is :mod:`voicerail.sim.caller`, which
re-exports these names."""

from __future__ import annotations

import array
import functools
from dataclasses import dataclass, field
from pathlib import Path

from voicerail.audio.g711 import ULAW_FRAME_NUM_BYTES, pcm16_to_ulaw
from voicerail.audio.levels import ulaw_speech_num_frames
from voicerail.audio.resample import read_wav_mono, resample


@dataclass(frozen=True)
class CallerTurn:
    """One thing the caller does.

    Attributes:
        ulaw: the caller's speech, μ-law 8 kHz mono (empty for a silent or DTMF turn).
        label: what to call it in results (usually the WAV path).
        dtmf: digits to press instead of speaking.
        silence_s: stay silent this long instead of speaking.
        barge_in_after_s: start speaking this long after the agent's audio starts,
            instead of waiting for the agent to finish (a barge-in).
        hangup: hang up instead (send ``stop`` and close); with ``barge_in_after_s``,
            in the middle of the agent's next reply.
    """

    ulaw: bytes = b""
    label: str = ""
    dtmf: str = ""
    silence_s: float = 0.0
    barge_in_after_s: float | None = None
    hangup: bool = False

    @property
    def kind(self) -> str:
        """``speech``, ``dtmf``, ``silence`` or ``hangup``."""
        if self.hangup:
            return "hangup"
        if self.dtmf:
            return "dtmf"
        if self.silence_s:
            return "silence"
        return "speech"

    @functools.cached_property
    def speech_num_frames(self) -> int:
        """20 ms frames of ``ulaw`` up to the end of the caller's speech.

        The end of speech is the last audible frame (:mod:`voicerail.audio.levels`),
        not the end of the audio, which may carry trailing silence; computed once
        per turn. 0 when the audio has no audible frame.
        """
        return ulaw_speech_num_frames(self.ulaw)

    @property
    def trailing_silence_s(self) -> float:
        """Seconds of audio after the end of speech (whole frames)."""
        num_frames = -(-len(self.ulaw) // ULAW_FRAME_NUM_BYTES)
        return (num_frames - self.speech_num_frames) * 0.02

    @classmethod
    def from_wav(cls, path: str | Path, **kwargs: float | None) -> CallerTurn:
        """Load a mono WAV at any sample rate and convert it to 8 kHz μ-law."""
        pcm, rate_hz = read_wav_mono(path)
        return cls(ulaw=pcm16_to_ulaw(resample(pcm, rate_hz, 8000)), label=str(path), **kwargs)  # type: ignore[arg-type]


@dataclass
class TurnTiming:
    """What the caller measured for one turn (times are caller wall clock, seconds).

    Attributes:
        label: the turn's label.
        started_at: when the turn began (its first frame was queued).
        ended_at: when its last frame, trailing silence included, was sent.
        speech_ended_at: when its last audible frame was sent: the end of the
            caller's speech (DTMF: when the digits were sent). None until then.
        first_agent_audio_at: when the first agent media message after
            ``speech_ended_at`` was received, audible or not (a reply may start
            while the recording's trailing silence is still being sent).
        first_audible_at: when the first audible agent frame after
            ``speech_ended_at`` started playing at the caller (its 20 ms playback
            clock): what the caller hears.
        kind: ``speech``, ``dtmf``, ``silence`` or ``hangup``.
    """

    label: str
    started_at: float = 0.0
    ended_at: float = 0.0
    first_agent_audio_at: float | None = None
    kind: str = "speech"
    speech_ended_at: float | None = None
    first_audible_at: float | None = None

    @property
    def v2v_latency_s(self) -> float | None:
        """Voice-to-voice latency at the ear, seconds: end of the caller's speech to
        the first audible agent frame played. None without both."""
        if self.first_audible_at is None or self.speech_ended_at is None:
            return None
        return self.first_audible_at - self.speech_ended_at

    @property
    def v2v_received_latency_s(self) -> float | None:
        """The older, optimistic measure, seconds: end of the caller's audio (trailing
        silence included) to the first agent media message received (silent or not).
        It reads lower than what the caller hears by the trailing silence, the
        agent's leading silence and the playback clock, and is negative when the
        reply starts inside the recording's trailing silence."""
        if self.first_agent_audio_at is None:
            return None
        return self.first_agent_audio_at - self.ended_at


@dataclass
class ReplySpan:
    """One stretch of agent audio at the caller (wall clock seconds).

    Attributes:
        started_at: first frame received.
        ended_at: last frame received.
        num_frames: 20 ms frames received.
    """

    started_at: float
    ended_at: float
    num_frames: int = 0


@dataclass
class CallResult:
    """The caller's view of one call.

    Attributes beyond the turn timings (see the module docstring):
        replies: agent audio spans.
        clears_at: wall times of ``clear`` messages.
        audio_gaps_s: playback gaps inside replies (the buffer ran dry), seconds.
        arrival_gaps_s: arrival gaps over 40 ms inside replies, seconds.
        arrival_jitter_ms: |inter-arrival - 20 ms| of paced agent frames, ms.
        send_lag_ms: how late each inbound frame send woke up, ms.
        protocol_errors: messages from the server that broke the protocol.
        hung_up_mid_call: the caller hung up while the agent was speaking.
        connected_at: wall time the WebSocket opened; ended_at: when it closed.
        frames_sent: inbound media frames sent; frames_dropped: dropped by impairment.
        agent_media_messages: outbound ``media`` messages received from the server.
        refused: why the server refused the call (busy TwiML from the voice webhook,
            or the stream closed with 1013 "Try Again Later"); None when served.
    """

    call_sid: str
    stream_sid: str
    turns: list[TurnTiming] = field(default_factory=list)
    hung_up_by: str = "caller"
    clears_received: int = 0
    marks_echoed: int = 0
    agent_audio_s: float = 0.0
    agent_audio_after_clear_s: float = 0.0
    agent_ulaw: bytes = b""
    replies: list[ReplySpan] = field(default_factory=list)
    clears_at: list[float] = field(default_factory=list)
    audio_gaps_s: list[float] = field(default_factory=list)
    arrival_gaps_s: list[float] = field(default_factory=list)
    arrival_jitter_ms: array.array[float] = field(default_factory=lambda: array.array("f"))
    send_lag_ms: array.array[float] = field(default_factory=lambda: array.array("f"))
    protocol_errors: list[str] = field(default_factory=list)
    hung_up_mid_call: bool = False
    connected_at: float = 0.0
    ended_at: float = 0.0
    frames_sent: int = 0
    frames_dropped: int = 0
    agent_media_messages: int = 0
    refused: str | None = None
