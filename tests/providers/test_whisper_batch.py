"""Whisper utterances of concurrent calls decoded in batches on one worker thread."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from voicerail.providers.whisper import FasterWhisperSTT
from voicerail.providers.whisper_batch import Decoded, WhisperBatcher, window_frames
from voicerail.testing.speech_corpus import (
    CorpusUnavailable,
    asterisk_prompts,
    normalize_text,
    read_pcm,
)


def test_the_encoder_window_fits_the_utterance_within_the_floor_and_30_s():
    assert window_frames(16000 * 2, 15.0) == 1500  # 2 s of speech: the 15 s floor
    assert window_frames(16000 * 20, 15.0) == 2100  # 20 s + 1 s margin
    assert window_frames(16000 * 30, 15.0) == 3000  # never past Whisper's 30 s
    assert window_frames(16000 * 2, 30.0) == 3000


async def test_a_failed_batch_fails_each_request_and_the_worker_goes_on():
    loads = []

    def broken_model():
        loads.append(1)
        raise RuntimeError("no model")

    batcher = WhisperBatcher(broken_model)
    silence = np.zeros(16000, dtype=np.float32)
    for _ in range(2):  # the second request proves the worker survived the first
        with pytest.raises(RuntimeError, match="no model"):
            await asyncio.wait_for(batcher.decode(silence), 10)
    assert len(loads) == 2


async def test_over_30_s_is_refused_before_it_is_queued():
    batcher = WhisperBatcher(lambda: None)
    with pytest.raises(ValueError, match="at most 30 s"):
        await batcher.decode(np.zeros(16000 * 31, dtype=np.float32))


@pytest.mark.slow
async def test_concurrent_utterances_share_trips_and_read_as_alone(transcribe_pcm):
    try:
        samples = asterisk_prompts(["transfer", "agent-pass", "vm-dialout", "conf-onlyperson"])
    except CorpusUnavailable as missing:
        pytest.skip(str(missing))
    stt = FasterWhisperSTT()
    stt.preload()
    alone = [
        normalize_text((await transcribe_pcm(stt, read_pcm(s, 16000), 16000)).text) for s in samples
    ]
    assert stt._batcher is not None
    trips_before = stt._batcher.batches
    together = await asyncio.gather(
        *(transcribe_pcm(stt, read_pcm(s, 16000), 16000) for s in samples)
    )
    trips = stt._batcher.batches - trips_before
    assert trips < len(samples)  # queued utterances went together
    assert [normalize_text(t.text) for t in together] == alone
    references = [normalize_text(s.transcript) for s in samples]
    assert sum(a == r for a, r in zip(alone, references, strict=True)) >= 3


async def test_a_request_cancelled_in_the_queue_is_not_decoded():
    started = threading.Event()
    release = threading.Event()
    decoded: list[int] = []

    class SlowModel:
        pass

    batcher = WhisperBatcher(SlowModel)

    def decode_batch(model, utterances):
        started.set()
        release.wait(5)
        decoded.extend(u.size for u in utterances)
        return [Decoded("x", -0.1, 0.0) for _ in utterances]

    batcher._decode_batch = decode_batch  # type: ignore[method-assign]
    first = asyncio.ensure_future(batcher.decode(np.zeros(100, dtype=np.float32)))
    await asyncio.to_thread(started.wait, 5)
    second = asyncio.ensure_future(batcher.decode(np.zeros(200, dtype=np.float32)))
    third = asyncio.ensure_future(batcher.decode(np.zeros(300, dtype=np.float32)))
    await asyncio.sleep(0)
    second.cancel()
    release.set()
    assert (await first).text == "x" and (await third).text == "x"
    assert decoded == [100, 300]


def test_a_batch_takes_its_widest_member_and_under_load_the_narrower_window():
    short, long = np.zeros(16000 * 2, np.float32), np.zeros(16000 * 25, np.float32)
    batcher = WhisperBatcher(lambda: None, window_s=30.0, busy_window_s=20.0)
    assert batcher.frames_for([short]) == 3000  # alone: the full window
    assert batcher.frames_for([short, short]) == 2000  # two waiting: the busy window
    assert batcher.frames_for([short, long]) == 2600  # but never shorter than a member
    assert WhisperBatcher(lambda: None, window_s=15.0, busy_window_s=20.0).busy_window_s == 15.0
