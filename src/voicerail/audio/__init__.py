"""Pure, frame-based audio: no asyncio, no sockets, no clocks.

Every PCM buffer in this package is signed 16-bit little-endian mono ("s16le");
each function names the sample rate it expects. Modules:

- :mod:`~voicerail.audio.g711` — μ-law codec and the Twilio frame constants.
- :mod:`~voicerail.audio.frames` — fixed-size framing and μ-law silence.
- :mod:`~voicerail.audio.resample` — streaming and one-shot resampling (soxr), WAV files.
- :mod:`~voicerail.audio.vad` — voice activity detection (Silero ONNX, energy).
- :mod:`~voicerail.audio.endpointing` — speech start/end from VAD probabilities.
- :mod:`~voicerail.audio.ring` — the recent inbound audio, addressed in stream seconds.

Submodules are not re-exported here, so that importing the light ones does not load
numpy, soxr or onnxruntime.
"""
