"""End-of-turn model checks: once per pause, after check_after_s, dropped when the pause ends."""

from __future__ import annotations

import asyncio

from voicerail.session.end_of_turn import EndOfTurnCheck


class _Model:
    """Answers each check with the next probability once released."""

    def __init__(self, *probabilities: float) -> None:
        self.probabilities = list(probabilities)
        self.asked: list[tuple[float, float]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def predict(self, speech_start_s: float, pause_start_s: float) -> float:
        self.asked.append((speech_start_s, pause_start_s))
        await self.release.wait()
        return self.probabilities.pop(0)


def _check(model: _Model, completed: list[tuple[float, float, float]]) -> EndOfTurnCheck:
    return EndOfTurnCheck(
        model.predict, lambda *args: completed.append(args), check_after_s=0.2, threshold=0.5
    )


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_finished_turn_is_reported_once_the_pause_lasts_check_after_s() -> None:
    model, completed = _Model(0.9), []
    check = _check(model, completed)
    check.observe(1.0, None, 2.0)  # speaking
    check.observe(1.0, 2.0, 2.1)  # pausing, too short
    await _settle()
    assert model.asked == []
    check.observe(1.0, 2.0, 2.2)
    await _settle()
    assert model.asked == [(1.0, 2.0)]
    assert completed == [(1.0, 2.0, 0.9)]
    assert check.ended_early == 1


async def test_an_unfinished_turn_is_left_to_the_window_and_not_asked_again() -> None:
    model, completed = _Model(0.2), []
    check = _check(model, completed)
    for now_s in (2.2, 2.3, 2.4):
        check.observe(1.0, 2.0, now_s)
        await _settle()
    assert model.asked == [(1.0, 2.0)]
    assert completed == []
    assert check.last_probability == 0.2


async def test_speaking_again_cancels_the_check_and_the_next_pause_is_asked() -> None:
    model, completed = _Model(0.9, 0.8), []
    model.release.clear()
    check = _check(model, completed)
    check.observe(1.0, 2.0, 2.2)
    await _settle()
    check.observe(1.0, None, 2.3)  # the caller speaks again: the first check is dropped
    model.release.set()
    await _settle()
    assert completed == []
    check.observe(1.0, 3.0, 3.2)
    await _settle()
    assert model.asked == [(1.0, 2.0), (1.0, 3.0)]
    assert completed == [(1.0, 3.0, 0.9)]


async def test_a_failing_model_leaves_the_turn_to_the_window() -> None:
    completed: list[tuple[float, float, float]] = []

    async def broken(speech_start_s: float, pause_start_s: float) -> float:
        raise RuntimeError("model crashed")

    check = EndOfTurnCheck(broken, lambda *a: completed.append(a), check_after_s=0.2)
    check.observe(1.0, 2.0, 2.2)
    await _settle()
    assert completed == []
    check.cancel()  # nothing under way: no error
