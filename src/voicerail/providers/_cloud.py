"""Pieces every cloud TTS adapter shares: whole-sample framing of streamed PCM."""

from __future__ import annotations


class SampleAligner:
    """Cut a stream of s16le bytes into chunks of whole 2-byte samples.

    Network reads and base64 frames may split a sample between two pieces; a
    chunk with an odd number of bytes would shift every later sample by one byte
    and turn speech into noise. The odd byte is carried into the next piece.
    """

    def __init__(self) -> None:
        self._carry = b""
        self.num_bytes = 0  # whole-sample bytes handed out so far

    def receive(self, data: bytes) -> bytes:
        """Take the next piece; return the whole samples now available (maybe empty)."""
        data = self._carry + data
        even = len(data) - len(data) % 2
        self._carry = data[even:]
        self.num_bytes += even
        return data[:even]
