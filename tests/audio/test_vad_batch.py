"""Silero windows of concurrent calls batched across calls: same scores, fewer runs."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from voicerail.audio.resample import read_wav_mono
from voicerail.audio.vad import SileroVAD, SileroVADModel
from voicerail.audio.vad_batch import BatchedSileroVAD, SileroBatcher, shared_vad

ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en")
PROMPTS = ["vm-goodbye", "agent-pass", "all-circuits-busy-now", "conf-onlyperson"]
FRAME_NUM_BYTES = 320  # 20 ms at 8000 Hz

pytestmark = pytest.mark.slow  # loads the Silero ONNX model


@pytest.fixture(scope="module", params=["silero-vad", "faster-whisper-v6"])
def model(request: pytest.FixtureRequest) -> SileroVADModel:
    """Batching holds for both model files (faster-whisper's is run row by row)."""
    if request.param == "silero-vad":
        return SileroVADModel()
    spec = importlib.util.find_spec("faster_whisper")
    assert spec is not None and spec.submodule_search_locations
    assets = Path(next(iter(spec.submodule_search_locations))) / "assets"
    return SileroVADModel(assets / "silero_vad_v6.onnx")


def _speech(name: str) -> bytes:
    path = ASTERISK_DIR / f"{name}.wav"
    if not path.exists():
        pytest.skip(f"test speech {path} is not installed (see `make apt`)")
    pcm, rate_hz = read_wav_mono(path)
    assert rate_hz == 8000
    return bytes(3200) + pcm + bytes(3200)


async def _stream(vad: BatchedSileroVAD, pcm: bytes) -> list[float]:
    """One call: 20 ms frames, each awaited before the next."""
    scores: list[float] = []
    for start in range(0, len(pcm), FRAME_NUM_BYTES):
        scores += await vad.process_async(pcm[start : start + FRAME_NUM_BYTES])
        await asyncio.sleep(0)
    return scores


async def test_concurrent_calls_get_the_scores_they_get_alone(model: SileroVADModel) -> None:
    """Four calls with different speech, batched together: each call's scores equal its
    unbatched scores exactly, and windows did run several to a batch."""
    recordings = [_speech(name) for name in PROMPTS]
    alone = [SileroVAD(model).process(pcm) for pcm in recordings]
    batcher = SileroBatcher(model, max_delay_s=0.002)
    try:
        batched = await asyncio.gather(
            *(_stream(BatchedSileroVAD(batcher), pcm) for pcm in recordings)
        )
    finally:
        batcher.close()
    assert batched == alone
    assert max(alone[0]) > 0.5  # real speech was scored, not only silence
    assert batcher.windows == sum(len(scores) for scores in alone)
    assert batcher.windows / batcher.batches > 1.5


async def test_a_full_batch_runs_without_waiting_for_the_delay(model: SileroVADModel) -> None:
    """With max_batch windows waiting the batch runs at once, not after max_delay_s."""
    batcher = SileroBatcher(model, max_delay_s=30.0, max_batch=3)
    vads = [BatchedSileroVAD(batcher) for _ in range(3)]
    window = bytes(2 * vads[0].frame_num_samples)
    try:
        scores = await asyncio.wait_for(
            asyncio.gather(*(vad.process_async(window) for vad in vads)), timeout=5.0
        )
    finally:
        batcher.close()
    assert [len(s) for s in scores] == [1, 1, 1]
    assert batcher.batches == 1


async def test_a_failing_batch_fails_its_windows_and_the_next_batch_works(
    model: SileroVADModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inference error reaches every caller in that batch; the batcher keeps serving."""
    batcher = SileroBatcher(model, max_delay_s=0.001)
    vad = BatchedSileroVAD(batcher)
    window = bytes(2 * vad.frame_num_samples)
    real_run_batch = model.run_batch

    def broken(*args: object) -> tuple[np.ndarray, np.ndarray]:
        raise RuntimeError("onnxruntime failed")

    monkeypatch.setattr(model, "run_batch", broken)
    try:
        with pytest.raises(RuntimeError, match="onnxruntime failed"):
            await vad.process_async(window)
        monkeypatch.setattr(model, "run_batch", real_run_batch)
        assert len(await BatchedSileroVAD(batcher).process_async(window)) == 1
    finally:
        batcher.close()


class _Fed:
    """One call on the driver's path: frames fed without waiting, scores collected."""

    def __init__(self, batcher: SileroBatcher) -> None:
        self.scores: list[tuple[float, float]] = []
        self.errors: list[BaseException] = []
        self.vad = BatchedSileroVAD(
            batcher, on_scores=self.scores.extend, on_error=self.errors.append
        )

    async def stream(self, pcm: bytes, *, frames_per_tick: int = 1) -> None:
        frames = [pcm[i : i + FRAME_NUM_BYTES] for i in range(0, len(pcm), FRAME_NUM_BYTES)]
        for index, frame in enumerate(frames):
            self.vad.feed(frame, float(index))
            if (index + 1) % frames_per_tick == 0:
                await asyncio.sleep(0)

    async def settled(self, count: int) -> None:
        while len(self.scores) < count and not self.errors:
            await asyncio.sleep(0.001)


async def test_fed_calls_that_fall_behind_catch_up_with_the_same_scores(
    model: SileroVADModel,
) -> None:
    """Frames fed faster than a trip takes (the reader never waits): every window is
    scored once, in order, exactly as unbatched, each stamped with the frame that
    completed it, and a call's backlog goes in one trip instead of one per window."""
    recordings = [_speech(name) for name in PROMPTS]
    alone = [SileroVAD(model).process(pcm) for pcm in recordings]
    batcher = SileroBatcher(model, max_delay_s=0.002)
    calls = [_Fed(batcher) for _ in recordings]
    try:
        await asyncio.gather(
            *(
                call.stream(pcm, frames_per_tick=8)
                for call, pcm in zip(calls, recordings, strict=True)
            )
        )
        await asyncio.wait_for(
            asyncio.gather(*(c.settled(len(a)) for c, a in zip(calls, alone, strict=True))),
            timeout=10,
        )
    finally:
        batcher.close()
    for call, expected in zip(calls, alone, strict=True):
        assert not call.errors
        assert [p for p, _ in call.scores] == expected
        stamps = [stamp for _, stamp in call.scores]
        # window k (256 samples) completes in frame floor((k + 1) * 256 / 160 - eps)
        assert stamps == [float(((k + 1) * 256 - 1) // 160) for k in range(len(expected))]
    assert batcher.windows == sum(len(a) for a in alone)
    assert batcher.batches * 3 < batcher.windows  # several windows per call per trip


async def test_a_failed_trip_reports_the_error_and_the_stream_goes_on(
    model: SileroVADModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    batcher = SileroBatcher(model, max_delay_s=0.001)
    call = _Fed(batcher)
    window = bytes(2 * call.vad.frame_num_samples)
    real_run_batch = model.run_batch

    def broken(*args: object) -> tuple[np.ndarray, np.ndarray]:
        raise RuntimeError("onnxruntime failed")

    monkeypatch.setattr(model, "run_batch", broken)
    try:
        call.vad.feed(window, 1.0)
        await asyncio.wait_for(call.settled(1), timeout=5)
        assert [str(e) for e in call.errors] == ["onnxruntime failed"]
        monkeypatch.setattr(model, "run_batch", real_run_batch)
        call.errors.clear()
        call.vad.feed(window, 2.0)
        await asyncio.wait_for(call.settled(1), timeout=5)
    finally:
        batcher.close()
    assert not call.errors
    assert [stamp for _, stamp in call.scores] == [2.0]


async def test_a_closed_stream_gets_no_more_scores(model: SileroVADModel) -> None:
    batcher = SileroBatcher(model, max_delay_s=0.05)
    call = _Fed(batcher)
    window = bytes(2 * call.vad.frame_num_samples)
    try:
        call.vad.feed(window, 1.0)
        call.vad.close()
        await asyncio.sleep(0.2)
        with pytest.raises(RuntimeError, match="after close"):
            call.vad.feed(window, 2.0)
    finally:
        batcher.close()
    assert call.scores == []
    assert batcher.windows == 0  # the cancelled submission never ran


def test_bad_batcher_arguments_are_rejected(model: SileroVADModel) -> None:
    with pytest.raises(ValueError, match="max_delay_s"):
        SileroBatcher(model, max_delay_s=0)
    with pytest.raises(ValueError, match="max_batch"):
        SileroBatcher(model, max_batch=0)
    with pytest.raises(ValueError, match="windows >= 1"):
        SileroBatcher(model).submit(
            np.zeros((0, 288), dtype=np.float32), np.zeros((2, 1, 128)), 8000
        )
    with pytest.raises(ValueError, match="'silero' or 'energy'"):
        shared_vad("webrtc")
    with pytest.raises(ValueError, match=">= 0 ms"):
        shared_vad("silero", batch_ms=-1)


def test_shared_vad_builds_what_the_options_name() -> None:
    assert shared_vad("energy") is None
    assert isinstance(shared_vad("silero", batch_ms=0), SileroVADModel)
    batcher = shared_vad("silero", batch_ms=4)
    assert isinstance(batcher, SileroBatcher) and batcher.max_delay_s == pytest.approx(0.004)
