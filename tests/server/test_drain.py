"""SIGTERM drain: refuse new calls, let calls finish, end the rest at the deadline."""

from __future__ import annotations

from dataclasses import dataclass

from voicerail.server.drain import drain_calls
from voicerail.session.load import AdmissionConfig, LoadMonitor
from voicerail.testing.clock import FakeClock


@dataclass
class FakeCall:
    """A call in progress until ``ends_at_s`` on the fake clock, or until shut down."""

    call_id: str
    clock: FakeClock
    ends_at_s: float
    was_shut_down: bool = False

    @property
    def started(self) -> bool:
        return not self.was_shut_down and self.clock.monotonic() < self.ends_at_s

    def shut_down(self) -> None:
        self.was_shut_down = True


def monitor(clock: FakeClock) -> LoadMonitor:
    return LoadMonitor(
        AdmissionConfig(max_calls=4), monotonic=clock.monotonic, cpu_time=lambda: 0.0
    )


def sleeper(clock: FakeClock):
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    return sleep


async def test_calls_that_end_before_the_deadline_finish_and_none_is_cut():
    clock = FakeClock()
    load = monitor(clock)
    calls = [FakeCall("a", clock, 2.0), FakeCall("b", clock, 5.0)]
    result = await drain_calls(
        load, lambda: calls, deadline_s=30.0, monotonic=clock.monotonic, sleep=sleeper(clock)
    )
    assert result.shut_down == [] and result.finished == 2
    assert 5.0 <= result.waited_s < 5.2
    assert not any(c.was_shut_down for c in calls)


async def test_draining_turns_readiness_off_and_refuses_new_calls():
    clock = FakeClock()
    load = monitor(clock)
    await drain_calls(load, list, deadline_s=1.0, monotonic=clock.monotonic, sleep=sleeper(clock))
    ready, snapshot = load.ready()
    assert not ready and snapshot.draining
    assert load.admit(reservation="CA1").reason == "draining"


async def test_a_call_still_running_at_the_deadline_is_shut_down_by_the_worker():
    clock = FakeClock()
    calls = [FakeCall("short", clock, 1.0), FakeCall("long", clock, 600.0)]
    result = await drain_calls(
        monitor(clock),
        lambda: calls,
        deadline_s=10.0,
        monotonic=clock.monotonic,
        sleep=sleeper(clock),
    )
    assert result.shut_down == ["long"] and result.finished == 1
    assert calls[1].was_shut_down and not calls[0].was_shut_down
    assert 10.0 <= result.waited_s < 10.2


async def test_sockets_that_never_started_a_call_do_not_hold_the_drain():
    clock = FakeClock()
    pending = FakeCall("pending", clock, 0.0)  # not started: no call yet
    result = await drain_calls(
        monitor(clock), lambda: [pending], deadline_s=30.0, monotonic=clock.monotonic,
        sleep=sleeper(clock),
    )  # fmt: skip
    assert result.waited_s == 0.0 and result.shut_down == []
