"""Silero VAD windows of many concurrent calls run as one batch, off the event loop.

A 32 ms Silero window costs about 0.27 ms of CPU when run alone and about
0.05-0.07 ms when 32-128 windows run as one batch (measured here on onnxruntime
CPU, one intra-op thread), and the batched results are bit-identical to the
single-window ones: the v5 model takes ``input [batch, context + window]`` and
``state [2, batch, 128]`` and keeps the rows independent. At telephone rates each
call produces about 31 windows a second, so per-window inference is what limits
how many calls one process carries with the real VAD.

:class:`SileroBatcher` collects what the calls submit within ``max_delay_s`` of
the first submission (or until ``max_batch`` calls wait), runs it on a worker
thread (onnxruntime releases the GIL, so the event loop keeps serving sockets
meanwhile), and resolves each call's future. A call may submit several windows at
once: the recurrent state makes them sequential within the call, so the worker
runs step 0 of every call as one batch, then step 1 of the calls that have a
second window, and so on, all in one trip to the thread.

:class:`BatchedSileroVAD` is one call's detector on top of it: same windows,
context and state handling as :class:`~voicerail.audio.vad.SileroVAD`. Its
:meth:`~BatchedSileroVAD.feed` never waits: it queues the completed windows and
keeps at most one submission in flight, and the windows that complete meanwhile
go together in the next one. A call's reader therefore never waits for the
model, and a call that fell behind catches up in one trip instead of one trip
per window (awaiting each window, 100 calls here fell 1.5 s behind real time
with the process using under one core).

The delay a window waits is bounded by ``max_delay_s`` plus one batch run (a few
ms), against an endpointing window of hundreds of ms.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voicerail.audio.vad import Float32Array, SileroVAD, SileroVADModel


@dataclass
class _Pending:
    model_inputs: Float32Array  # [windows, context + window], oldest first
    state: Float32Array  # [2, 1, 128]
    future: asyncio.Future[tuple[Float32Array, Float32Array]]


class SileroBatcher:
    """Batches Silero windows across calls (see the module docstring).

    One instance per process, shared by every call, like the model. It binds to
    the event loop that first uses it; a later loop (tests run several) starts
    afresh.

    Args:
        model: the shared Silero model.
        max_delay_s: how long the first submission of a batch waits for others,
            seconds (> 0).
        max_batch: run at once when this many calls wait (>= 1).

    Raises:
        ValueError: ``max_delay_s`` is not positive or ``max_batch`` is below 1.
    """

    def __init__(
        self, model: SileroVADModel, *, max_delay_s: float = 0.004, max_batch: int = 128
    ) -> None:
        if max_delay_s <= 0:
            raise ValueError(f"max_delay_s must be positive, got {max_delay_s}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model
        self.max_delay_s = max_delay_s
        self.max_batch = max_batch
        self._pending: dict[int, list[_Pending]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.batches = 0
        """Trips to the worker thread so far."""
        self.windows = 0
        """Windows scored so far (``windows / batches`` is the mean per trip)."""

    def submit(
        self, model_inputs: Float32Array, state: Float32Array, sample_rate_hz: int
    ) -> asyncio.Future[tuple[Float32Array, Float32Array]]:
        """Queue consecutive windows of one call; call from the event loop.

        Args:
            model_inputs: float32 ``[windows, context + window]``, oldest first
                (rows as :meth:`SileroVADModel.run` takes them), at least one row.
            state: float32 ``[2, 1, 128]``, the call's state before the first row.
            sample_rate_hz: 8000 or 16000; calls batch only with their own rate.

        Returns:
            A future of ``(probabilities [windows], state after the last row
            [2, 1, 128])``; it fails with whatever onnxruntime raised for the
            trip. Cancelling it drops the call from a batch not yet run.

        Raises:
            ValueError: ``model_inputs`` has no rows.
            RuntimeError: no event loop is running in this thread.
        """
        if model_inputs.ndim != 2 or model_inputs.shape[0] == 0:
            raise ValueError(
                f"model_inputs must be [windows >= 1, samples], got shape {model_inputs.shape}"
            )
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._pending = {}
            self._timers = {}
        future: asyncio.Future[tuple[Float32Array, Float32Array]] = loop.create_future()
        waiting = self._pending.setdefault(sample_rate_hz, [])
        waiting.append(_Pending(model_inputs, state, future))
        if len(waiting) >= self.max_batch:
            self._flush(sample_rate_hz)
        elif len(waiting) == 1:
            self._timers[sample_rate_hz] = loop.call_later(
                self.max_delay_s, self._flush, sample_rate_hz
            )
        return future

    async def run(
        self, model_input: Float32Array, state: Float32Array, sample_rate_hz: int
    ) -> tuple[float, Float32Array]:
        """Score one window of one call, batched with the others waiting.

        Args:
            model_input: float32 ``[1, context + window]`` (see
                :meth:`SileroVADModel.run`).
            state: float32 ``[2, 1, 128]``, the call's recurrent state.
            sample_rate_hz: 8000 or 16000.

        Returns:
            ``(probability, new_state)``, as :meth:`SileroVADModel.run` returns.

        Raises:
            Exception: whatever onnxruntime raised for the batch this window was in.
        """
        probabilities, new_state = await self.submit(model_input, state, sample_rate_hz)
        return float(probabilities[0]), new_state

    def close(self) -> None:
        """Stop the worker thread (windows already submitted still complete)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _flush(self, sample_rate_hz: int) -> None:
        batch = self._pending.pop(sample_rate_hz, [])
        timer = self._timers.pop(sample_rate_hz, None)
        if timer is not None:
            timer.cancel()
        batch = [p for p in batch if not p.future.done()]  # callers that were cancelled
        if not batch:
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="silero-batch"
            )
        assert self._loop is not None
        done = self._loop.run_in_executor(
            self._executor,
            self._run_steps,
            [p.model_inputs for p in batch],
            [p.state for p in batch],
            sample_rate_hz,
        )
        done.add_done_callback(lambda finished: _resolve(batch, finished))
        self.batches += 1
        self.windows += sum(p.model_inputs.shape[0] for p in batch)

    def _run_steps(
        self, inputs: list[Float32Array], states: list[Float32Array], sample_rate_hz: int
    ) -> list[tuple[Float32Array, Float32Array]]:
        """On the worker thread: step ``t`` of every call with a ``t``-th window.

        A handful of numpy operations per step, none per call: the thread takes
        the GIL once per step, between runs that release it.
        """
        counts = np.array([rows.shape[0] for rows in inputs])
        steps = int(counts.max())
        if steps == 1:
            batch_inputs = np.concatenate(inputs, axis=0)
            batch_states = np.concatenate(states, axis=1)
            scores, new_states = self.model.run_batch(batch_inputs, batch_states, sample_rate_hz)
            return [
                (scores[i, :1].copy(), np.ascontiguousarray(new_states[:, i : i + 1]))
                for i in range(len(inputs))
            ]
        padded = np.zeros((len(inputs), steps, inputs[0].shape[1]), dtype=np.float32)
        for i, rows in enumerate(inputs):
            padded[i, : rows.shape[0]] = rows
        all_states = np.concatenate(states, axis=1)  # [2, calls, 128]
        probabilities = np.zeros((len(inputs), steps), dtype=np.float32)
        for step in range(steps):
            active = np.flatnonzero(counts > step)
            scores, new_states = self.model.run_batch(
                padded[active, step], all_states[:, active], sample_rate_hz
            )
            probabilities[active, step] = scores[:, 0]
            all_states[:, active] = new_states
        return [
            (probabilities[i, : counts[i]].copy(), np.ascontiguousarray(all_states[:, i : i + 1]))
            for i in range(len(inputs))
        ]


def _resolve(
    batch: list[_Pending],
    finished: asyncio.Future[list[tuple[Float32Array, Float32Array]]],
) -> None:
    error = finished.exception()
    if error is not None:
        for p in batch:
            if not p.future.done():
                p.future.set_exception(error)
        return
    for p, result in zip(batch, finished.result(), strict=True):
        if not p.future.done():
            p.future.set_result(result)


ScoresCallback = Callable[[list[tuple[float, float]]], None]
"""``on_scores(scores)``: ``(probability, stamp)`` per window, oldest first."""


class BatchedSileroVAD(SileroVAD):
    """One call's Silero VAD whose windows go through a shared :class:`SileroBatcher`.

    Gives the same probabilities as :class:`SileroVAD` on the same audio. Use
    either :meth:`feed` (the call path: never waits, results through
    ``on_scores``) or :meth:`process_async`, not both on one stream; the
    inherited synchronous :meth:`process` still scores windows one at a time on
    the calling thread.

    Args:
        batcher: the process's batcher.
        sample_rate_hz: 8000 or 16000.
        on_scores: called on the event loop with ``[(probability, stamp), ...]``
            for the windows :meth:`feed` completed, in order, each with the stamp
            of the chunk that completed it.
        on_error: called with the exception when a trip fails; the failed windows
            are dropped and later ones are scored from the state before them.

    Raises:
        ValueError: ``sample_rate_hz`` is not 8000 or 16000.
    """

    def __init__(
        self,
        batcher: SileroBatcher,
        sample_rate_hz: int = 8000,
        *,
        on_scores: ScoresCallback | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        super().__init__(batcher.model, sample_rate_hz=sample_rate_hz)
        self._batcher = batcher
        self._on_scores = on_scores
        self._on_error = on_error
        self._queued: list[tuple[Float32Array, float]] = []
        self._in_flight: asyncio.Future[tuple[Float32Array, Float32Array]] | None = None
        self._closed = False

    def feed(self, pcm: bytes, stamp: float) -> None:
        """Add audio; its completed windows are scored in the background.

        Call from the event loop. Scores arrive through ``on_scores`` in order;
        at most one submission per stream is in flight, and the windows completed
        meanwhile go in the next one.

        Args:
            pcm: signed 16-bit little-endian mono PCM at ``sample_rate_hz``, any
                length; a partial window waits for the next chunk.
            stamp: returned with each window this chunk completes (the driver
                passes the arrival time, monotonic seconds).

        Raises:
            RuntimeError: the detector was closed, or no ``on_scores`` was given.
        """
        if self._closed:
            raise RuntimeError("feed() after close()")
        if self._on_scores is None:
            raise RuntimeError("feed() needs an on_scores callback")
        for window in self._windows.push(pcm):
            self._queued.append((self._model_input(window), stamp))
        if self._queued and self._in_flight is None:
            self._submit()

    def close(self) -> None:
        """Drop queued windows and the result in flight; later :meth:`feed` fails."""
        self._closed = True
        self._queued = []
        if self._in_flight is not None:
            self._in_flight.cancel()
            self._in_flight = None

    def _submit(self) -> None:
        items, self._queued = self._queued, []
        inputs = np.concatenate([model_input for model_input, _ in items], axis=0)
        future = self._batcher.submit(inputs, self._state, self._sample_rate_hz)
        self._in_flight = future
        stamps = [stamp for _, stamp in items]
        future.add_done_callback(lambda done: self._scored(done, stamps))

    def _scored(
        self, done: asyncio.Future[tuple[Float32Array, Float32Array]], stamps: list[float]
    ) -> None:
        if done.cancelled() or self._closed:
            return
        self._in_flight = None
        error = done.exception()
        if error is not None:
            if self._on_error is not None:
                self._on_error(error)
        else:
            probabilities, self._state = done.result()
            assert self._on_scores is not None
            self._on_scores(
                [(float(p), stamp) for p, stamp in zip(probabilities, stamps, strict=True)]
            )
        if self._queued and not self._closed:
            self._submit()

    async def process_async(self, pcm: bytes) -> list[float]:
        """Add audio and score every window it completes, batched across calls.

        Args:
            pcm: signed 16-bit little-endian mono PCM at ``sample_rate_hz``, any
                length; a partial window waits for the next call.

        Returns:
            One probability per completed window, oldest first.

        Raises:
            Exception: whatever onnxruntime raised for the trip.
        """
        inputs = [self._model_input(window) for window in self._windows.push(pcm)]
        if not inputs:
            return []
        probabilities, self._state = await self._batcher.submit(
            np.concatenate(inputs, axis=0), self._state, self._sample_rate_hz
        )
        return [float(p) for p in probabilities]

    def _reset_state(self) -> None:
        super()._reset_state()
        self._queued = []
        if self._in_flight is not None:
            self._in_flight.cancel()
            self._in_flight = None


def shared_vad(kind: str, batch_ms: float = 4.0) -> SileroVADModel | SileroBatcher | None:
    """What a :class:`~voicerail.session.runtime.Runtime` takes as ``vad_model``.

    Args:
        kind: ``silero`` or ``energy`` (the energy VAD needs no shared part).
        batch_ms: with Silero, batch windows across calls waiting at most this many
            milliseconds (see :class:`SileroBatcher`); 0 scores each window alone on
            the event loop.

    Returns:
        A :class:`SileroBatcher`, a :class:`SileroVADModel`, or None for ``energy``.

    Raises:
        ValueError: ``kind`` is unknown or ``batch_ms`` is negative.
        ConfigError: the Silero model cannot be loaded.
    """
    if kind == "energy":
        return None
    if kind != "silero":
        raise ValueError(f"vad must be 'silero' or 'energy', got {kind!r}")
    if batch_ms < 0:
        raise ValueError(f"vad batch window must be >= 0 ms, got {batch_ms}")
    model = SileroVADModel()
    return SileroBatcher(model, max_delay_s=batch_ms / 1000) if batch_ms > 0 else model
